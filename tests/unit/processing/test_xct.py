"""XCT reduction, reconstruction, ring removal and segmentation of the simulated coin cell."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import xraylib
from skimage.transform import iradon

from simulators.coin_cell import MATERIALS, CoinCellPhantom
from simulators.xcs import sheet_column_atoms
from simulators.xct import XctScan
from streaming.errors import ConfigError
from streaming.processing.rings import remove_rings
from streaming.processing.segmentation import SegmentationConfig, mask_on_xcs_grid, segment_coin_cell
from streaming.processing.xct import (
    absorbance,
    centre_sinogram,
    flat_dark_correct,
    minus_log,
    reconstruct,
)

ENERGY_KEV = 114.64


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def mu_per_m(material: str) -> float:
    formula, density_g_cm3 = MATERIALS[material]
    return xraylib.CS_Total_CP(formula, ENERGY_KEV) * density_g_cm3 * 100


@pytest.fixture(scope="module")
def phantom() -> CoinCellPhantom:
    return CoinCellPhantom(n_xy=80, n_z=64, rng=np.random.default_rng(2))


@pytest.fixture(scope="module")
def scan(phantom) -> XctScan:
    # seed 3 puts a drifted column (gain 0.92) right at the cathode's edge, where the object's
    # own structure makes a stripe hardest to tell apart
    return XctScan(phantom, n_projections=180, n_defective_columns=3, rng=np.random.default_rng(3))


@pytest.fixture(scope="module")
def measured(scan, phantom):
    """Raw projections, flats, darks, and the same projections with the drifted columns'
    gain divided out (the ring-free truth with the same noise)."""
    projections, flats, darks = scan.projections(0.5), scan.flats(20), scan.darks(20)
    ring_free = (projections - scan.dark_counts) / scan.column_gain + scan.dark_counts
    return projections, flats, darks, ring_free


@pytest.fixture(scope="module")
def volume(scan, measured, phantom) -> np.ndarray:
    projections, flats, darks, _ = measured
    theta_rad = np.radians(scan.angles_deg)
    sinograms = remove_rings(absorbance(projections, flats, darks), theta_rad)
    return reconstruct(sinograms, theta_rad, n_pixels=phantom.n_xy, pixel_size_m=phantom.voxel_xy_m)


# -- flat, dark, -log ---------------------------------------------------------------------------


def test_absorbance_is_the_line_integral(phantom):
    scan = XctScan(phantom, n_projections=12, n_defective_columns=0, rng=np.random.default_rng(4))
    projections, flats, darks = scan.projections(0.5), scan.flats(20), scan.darks(20)
    before = projections.copy()
    measured = absorbance(projections, flats, darks)
    np.testing.assert_array_equal(projections, before)
    truth = scan.line_integrals(0.5)
    assert measured.dtype == np.float32 and measured.shape == truth.shape
    assert np.abs(measured - truth).mean() < 0.03  # photon noise: ~2e4 counts in air, fewer through steel
    assert abs(float((measured - truth).mean())) < 2e-3
    transmission = flat_dark_correct(projections, flats.mean(axis=0), darks.mean(axis=0))
    assert float(transmission.mean()) == pytest.approx(float(np.exp(-truth).mean()), rel=0.01)


def test_minus_log_stays_finite_on_dead_pixels():
    transmission = np.array([1.0, 0.5, 0.0, -0.2], np.float32)
    values = minus_log(transmission, min_transmission=1e-4)
    np.testing.assert_allclose(values, [0.0, np.log(2), np.log(1e4), np.log(1e4)], rtol=1e-6)
    with pytest.raises(ValueError, match="min_transmission"):
        minus_log(transmission, min_transmission=0.0)
    with pytest.raises(ValueError, match="flats"):
        flat_dark_correct(np.zeros((2, 4, 5)), np.zeros((4, 4)), np.zeros((4, 5)))


# -- reconstruction -----------------------------------------------------------------------------


def test_reconstruction_gives_xraylibs_attenuation_of_steel_and_lithium(volume, phantom):
    steel = phantom.fractions["steel"] > 0.999
    lithium = phantom.fractions["li_metal"] > 0.999
    spacer_rows = [int((sum(phantom.cell.layers_m["spacer"]) / 2) / phantom.voxel_z_m)]
    centre = np.zeros_like(steel)
    centre[spacer_rows, 30:50, 30:50] = True
    assert float(volume[centre & steel].mean()) == pytest.approx(mu_per_m("steel"), rel=0.02)
    assert float(np.median(volume[steel])) == pytest.approx(mu_per_m("steel"), rel=0.02)
    # Li metal: 6.7 /m, 30 times less than steel; a few per cent from 12 000 voxels
    assert float(np.median(volume[lithium])) == pytest.approx(mu_per_m("li_metal"), rel=0.05)


def disc_sinogram(n_det: int, n_angles: int, axis_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact parallel projections of two concentric discs (μ 0.02 to radius 30 px, plus 0.03
    inside radius 12 px) about an axis at column ``axis_px``; each detector value is the
    average over its pixel width (5 samples)."""
    theta_rad = np.linspace(0, np.pi, n_angles, endpoint=False)
    samples = (np.arange(n_det)[:, None] + (np.arange(5) - 2)[None] / 5 - axis_px).ravel()

    def chord(radius: float) -> np.ndarray:
        return 2 * np.sqrt(np.clip(radius**2 - samples**2, 0, None))

    row = (0.02 * chord(30.0) + 0.03 * chord(12.0)).reshape(n_det, 5).mean(axis=1)
    return np.tile(row, (n_angles, 1)).astype(np.float32), theta_rad


def test_astra_fbp_agrees_with_skimage_iradon_and_the_analytic_discs():
    n = 101  # odd: skimage's axis (n // 2) and astra's ((n - 1) / 2) are the same column
    sinogram, theta_rad = disc_sinogram(n, 180, (n - 1) / 2)
    image = reconstruct(sinogram, theta_rad)
    reference = iradon(sinogram.T, theta=np.degrees(theta_rad), filter_name="ramp", circle=True)
    assert image.shape == reference.shape == (n, n)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    radius = np.hypot(yy, xx)
    inner, outer = radius < 9, (radius > 16) & (radius < 27)
    assert float(image[inner].mean()) == pytest.approx(0.05, rel=0.01)
    assert float(image[outer].mean()) == pytest.approx(0.02, rel=0.01)
    assert float(reference[inner].mean()) == pytest.approx(0.05, rel=0.01)
    interior = radius < 28
    assert np.abs(image - reference)[interior].mean() < 0.02 * 0.05


def test_an_off_centre_axis_is_shifted_back_before_fbp():
    n = 100
    centred, theta_rad = disc_sinogram(n, 180, (n - 1) / 2)
    shifted, _ = disc_sinogram(n, 180, (n - 1) / 2 + 3.3)
    columns = np.arange(n)
    moved = centre_sinogram(shifted, (n - 1) / 2 + 3.3)
    assert (moved[0] * columns).sum() / moved[0].sum() == pytest.approx((n - 1) / 2, abs=0.01)
    expected = reconstruct(centred, theta_rad)
    fixed = reconstruct(shifted, theta_rad, center_px=(n - 1) / 2 + 3.3)
    blurred = reconstruct(shifted, theta_rad)
    inside = np.hypot(*(np.mgrid[:n, :n] - (n - 1) / 2)) < 28
    assert np.abs(fixed - expected)[inside].mean() < 0.05 * np.abs(blurred - expected)[inside].mean()
    assert float(fixed[np.hypot(*(np.mgrid[:n, :n] - (n - 1) / 2)) < 9].mean()) == pytest.approx(0.05, rel=0.01)


def test_reconstruct_checks_its_arguments():
    sinogram = np.zeros((10, 16), np.float32)
    theta_rad = np.linspace(0, np.pi, 10, endpoint=False)
    with pytest.raises(ValueError, match="theta_rad"):
        reconstruct(sinogram, theta_rad[:5])
    with pytest.raises(ValueError, match="filter_name"):
        reconstruct(sinogram, theta_rad, filter_name="ramp")
    with pytest.raises(ValueError, match="backend"):
        reconstruct(sinogram, theta_rad, backend="gpu")
    with pytest.raises(ValueError, match="shape"):
        reconstruct(np.zeros(10), theta_rad)
    assert reconstruct(sinogram, theta_rad, n_pixels=12, filter_name="hann").shape == (12, 12)


@pytest.mark.skipif(importlib.util.find_spec("tomopy") is not None, reason="tomopy is installed")
def test_the_tomopy_backend_is_never_chosen_silently():
    with pytest.raises(ImportError):
        reconstruct(np.zeros((10, 16), np.float32), np.linspace(0, np.pi, 10, endpoint=False), backend="tomopy")


# -- rings --------------------------------------------------------------------------------------


def ring_profile(volume: np.ndarray) -> np.ndarray:
    """Mean over rows and angles at each integer radius from the axis (radii 1-39 px): a ring
    artefact is a bump at the drifted column's distance from the axis."""
    n = volume.shape[-1]
    radius = np.rint(np.hypot(*(np.mgrid[:n, :n] - (n - 1) / 2))).astype(int)
    return np.array([volume[:, radius == r].mean() for r in range(1, n // 2)])


def test_ring_removal_takes_out_the_drifted_columns_rings_and_leaves_the_rest(scan, measured, phantom):
    projections, flats, darks, ring_free = measured
    theta_rad = np.radians(scan.angles_deg)

    def slices(images: np.ndarray, rings: bool) -> np.ndarray:
        sinograms = absorbance(images, flats, darks)
        if rings:
            sinograms = remove_rings(sinograms, theta_rad)
        return reconstruct(sinograms, theta_rad, n_pixels=phantom.n_xy, pixel_size_m=phantom.voxel_xy_m)

    truth = slices(ring_free, rings=False)
    before = np.abs(ring_profile(slices(projections, rings=False) - truth)).max()
    after = np.abs(ring_profile(slices(projections, rings=True) - truth)).max()
    untouched = np.abs(ring_profile(slices(ring_free, rings=True) - truth)).max()
    assert before > 5.0  # /m: a ring worth 2 % of steel
    assert after < before / 5
    assert untouched < 0.01 * mu_per_m("steel")  # the can's wall and the cathode's edge survive


def test_mirror_ring_removal_keeps_a_thin_shell_that_the_median_method_flattens():
    n, n_angles = 101, 360
    theta_rad = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
    objects, _ = disc_sinogram(n, n_angles, (n - 1) / 2)
    s = np.arange(n) - (n - 1) / 2
    shell = 0.5 * 2 * (np.sqrt(np.clip(41.0**2 - s**2, 0, None)) - np.sqrt(np.clip(40.0**2 - s**2, 0, None)))
    clean = objects + shell[None].astype(np.float32)  # a coin cell's can: a thin shell about the axis
    stripes = np.zeros(n, np.float32)
    stripes[[30, 75]] = [0.05, -0.03]  # -log of drifted gains
    noise = np.random.default_rng(0).normal(0, 1e-3, (n_angles, n)).astype(np.float32)
    sinogram = clean + stripes[None] + noise
    # the median method where the object is flat (stripes in the air beside the discs); on the
    # discs' slopes its estimate is off by about the slope over a column
    in_air = np.zeros(n, np.float32)
    in_air[[5, 94]] = [0.05, -0.03]
    cleaned = remove_rings(objects + in_air[None] + noise, theta_rad, method="median", size_px=11)
    np.testing.assert_allclose(cleaned.mean(axis=0)[[5, 94]], (objects + noise).mean(axis=0)[[5, 94]], atol=3e-4)
    cleaned = remove_rings(sinogram, theta_rad, method="mirror")
    np.testing.assert_allclose(cleaned.mean(axis=0), (clean + noise).mean(axis=0), atol=3e-4)
    np.testing.assert_array_equal(cleaned[:, np.abs(np.abs(s) - 40) < 3], sinogram[:, np.abs(np.abs(s) - 40) < 3])
    # the median method's limit: a symmetric feature is constant over angles, like a stripe
    flattened = remove_rings(sinogram, theta_rad, method="median", size_px=11)
    assert np.abs(flattened - sinogram).mean(axis=0)[np.abs(np.abs(s) - 40) < 3].max() > 1.0
    with pytest.raises(ValueError, match="evenly spread over 2π"):
        remove_rings(sinogram[:180], theta_rad[:180])  # half a turn: no mirror columns
    with pytest.raises(ValueError, match="size_px"):
        remove_rings(sinogram, theta_rad, method="median", size_px=4)
    with pytest.raises(ValueError, match="method"):
        remove_rings(sinogram, theta_rad, method="wavelet")


# -- segmentation -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def segmentation(volume):
    return segment_coin_cell(volume)


def test_segmentation_finds_the_cathode_casing_spacer_and_anode(segmentation, phantom):
    masks = segmentation.masks
    assert dice(masks["cathode"], phantom.cathode_mask) >= 0.9
    assert dice(masks["casing"] | masks["spacer"], phantom.fractions["steel"] > 0.5) >= 0.85
    lithium = phantom.fractions["li_metal"] > 0.5
    assert dice(masks["anode"], lithium) >= 0.8
    # the layer order: cathode, separator (thinner than a row), anode, spacer
    cathode, separator = segmentation.rows["cathode"], segmentation.rows["separator"]
    anode, spacer = segmentation.rows["anode"], segmentation.rows["spacer"]
    assert cathode[1] < separator[0] <= anode[0] <= anode[1] < spacer[0]
    bottom, top = phantom.cell.layers_m["separator"]
    assert separator[0] == int((bottom + top) / 2 / phantom.voxel_z_m)
    assert segmentation.thresholds_per_m[0] < mu_per_m("steel") / 2 < segmentation.thresholds_per_m[-1]
    assert segmentation.electrolyte_per_m == pytest.approx(mu_per_m("electrolyte"), rel=0.2)
    # pores: the gas (Ar bubbles, the gap at the separator's rim) beside the cathode
    material = sum(phantom.fractions.values())
    assert masks["pores"].sum() > 20
    assert (material[masks["pores"]] < 0.5).mean() > 0.9


def test_segmentation_does_not_depend_on_which_way_up_the_cell_is(volume, segmentation):
    flipped = segment_coin_cell(volume[::-1])
    for name, mask in segmentation.masks.items():
        np.testing.assert_array_equal(flipped.masks[name][::-1], mask, err_msg=name)


def test_the_cathode_mask_on_the_xcs_grid_matches_the_sheet_beams_cathode(segmentation, phantom):
    bottom, top = phantom.cell.layers_m["cathode"]
    sheet = {"z_centre_m": (bottom + top) / 2, "thickness_m": 0.25e-3}
    fraction = mask_on_xcs_grid(segmentation.masks["cathode"], voxel_z_m=phantom.voxel_z_m, **sheet)
    assert fraction.shape == (80, 80) and 0 <= fraction.min() and fraction.max() <= 1
    nickel = sheet_column_atoms(phantom, 1.0, **sheet)[28]
    assert dice(fraction >= 0.5, nickel > 0.5 * nickel.max()) >= 0.95
    # the sheet through the spacer sees no cathode
    spacer = phantom.cell.layers_m["spacer"]
    above = mask_on_xcs_grid(
        segmentation.masks["cathode"], voxel_z_m=phantom.voxel_z_m, z_centre_m=sum(spacer) / 2, thickness_m=0.25e-3
    )
    assert above.max() == 0
    # a finer XCT grid (160 voxels across) averages 2 x 2 blocks into each pixel
    fine = np.repeat(np.repeat(segmentation.masks["cathode"], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(mask_on_xcs_grid(fine, voxel_z_m=phantom.voxel_z_m, **sheet), fraction)
    with pytest.raises(ValueError, match="multiple"):
        mask_on_xcs_grid(fine[:, :90, :90], voxel_z_m=phantom.voxel_z_m, **sheet)
    with pytest.raises(ValueError, match="does not cross"):
        mask_on_xcs_grid(fine, voxel_z_m=phantom.voxel_z_m, z_centre_m=1.0, thickness_m=1e-4)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"median_size_px": 2}, "median_size_px"),
        ({"median_size_px": 0}, "median_size_px"),
        ({"opening_radius_px": -1}, "opening_radius_px"),
        ({"n_classes": 2}, "n_classes"),
        ({"pore_fraction": 1.5}, "pore_fraction"),
        ({"min_component_voxels": 0}, "min_component_voxels"),
    ],
)
def test_bad_segmentation_config_names_its_key(settings, key):
    with pytest.raises(ConfigError, match=f"^xct.{key}: "):
        SegmentationConfig(**settings)
    with pytest.raises(ValueError, match="shape"):
        segment_coin_cell(np.zeros((4, 4)))
