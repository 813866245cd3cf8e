"""The XCS-CT simulators: coin cell phantom, XCT projections, XCS spectra, HEXITEC frames."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import astra
import numpy as np
import pytest
import xraylib
import xraylib_np

from simulators.coin_cell import CoinCellPhantom
from simulators.hexitec import HexitecSimulator
from simulators.xcs import HEXITEC_ENERGY_EDGES_KEV, XcsModel, sheet_column_atoms
from simulators.xct import XctScan, attenuation_per_m
from streaming.processing.compton import emf, profile_from_spectrum

R0_M = 2.8179403262e-15


@pytest.fixture(scope="module")
def phantom() -> CoinCellPhantom:
    return CoinCellPhantom(n_xy=80, n_z=64, rng=np.random.default_rng(2))


def fbp(sinogram: np.ndarray, angles_deg: np.ndarray, n: int) -> np.ndarray:
    volume = astra.create_vol_geom(n, n)
    geometry = astra.create_proj_geom("parallel", 1.0, sinogram.shape[1], np.radians(angles_deg))
    projector = astra.create_projector("linear", geometry, volume)
    sinogram_id = astra.data2d.create("-sino", geometry, sinogram)
    volume_id = astra.data2d.create("-vol", volume)
    config = astra.astra_dict("FBP")
    config.update(ProjectionDataId=sinogram_id, ReconstructionDataId=volume_id, ProjectorId=projector)
    algorithm = astra.algorithm.create(config)
    try:
        astra.algorithm.run(algorithm)
        return astra.data2d.get(volume_id)
    finally:
        astra.algorithm.delete(algorithm)
        astra.data2d.delete([sinogram_id, volume_id])
        astra.projector.delete(projector)


def test_xct_of_the_steel_spacer_reconstructs_to_xrayLibs_attenuation(phantom):
    scan = XctScan(phantom, n_projections=180, n_defective_columns=0, rng=np.random.default_rng(3))
    projections, flats, darks = scan.projections(0.5), scan.flats(20).mean(0), scan.darks(20).mean(0)
    absorbance = -np.log(np.clip((projections - darks) / (flats - darks), 1e-6, None))
    bottom, top = phantom.cell.layers_m["spacer"]
    row = int((bottom + top) / 2 / phantom.voxel_z_m)
    image = fbp(absorbance[:, row, :], scan.angles_deg, phantom.n_xy) / phantom.voxel_xy_m
    steel_mu = xraylib.CS_Total_CP("Fe0.70Cr0.18Ni0.10Mn0.02", 114.64) * 7.90 * 100
    centre = image[30:50, 30:50]
    assert centre.mean() == pytest.approx(steel_mu, rel=0.02)


def test_xct_flats_darks_and_a_defective_column(phantom):
    scan = XctScan(phantom, n_projections=8, n_defective_columns=2, rng=np.random.default_rng(4))
    assert scan.projections(0.0).shape == (8, phantom.n_z, scan.n_cols)
    assert scan.projections(0.0).dtype == np.uint16
    flat = scan.flats(50).mean(axis=(0, 1))
    np.testing.assert_allclose(flat, scan.incident_counts * scan.flat_profile + scan.dark_counts, rtol=0.01)
    assert np.all(scan.column_gain[scan.defective_columns] != 1.0)
    # the drifted columns survive flat correction: a ring's worth of error in every projection
    transmission = (scan.projections(0.0).mean(axis=(0, 1)) - scan.dark_counts) / (flat - scan.dark_counts)
    air = transmission[:3]
    np.testing.assert_allclose(air, scan.column_gain[:3], rtol=0.01)


def test_attenuation_of_lithium_metal(phantom):
    mu = attenuation_per_m(phantom.atoms_per_m3(0.0), 114.64)
    li = phantom.fractions["li_metal"] > 0.999
    assert np.median(mu[li]) == pytest.approx(xraylib.CS_Total(3, 114.64) * 0.534 * 100, rel=1e-3)


def test_lithium_field_follows_state_of_charge_with_a_through_thickness_gradient(phantom):
    discharged, charged = phantom.lithium_content(0.0), phantom.lithium_content(1.0)
    assert np.nanmean(discharged) == pytest.approx(1.0, abs=0.01)
    assert np.nanmean(charged) < np.nanmean(discharged) - 0.5
    bottom, top = phantom.cell.layers_m["cathode"]
    far = int((bottom + 0.15e-3) / phantom.voxel_z_m)
    middle = int((bottom + top) / 2 / phantom.voxel_z_m)
    assert np.nanmean(charged[far]) < np.nanmean(charged[middle])  # the paper: less Li far from the separator


def test_homogeneous_spectrum_gives_back_its_electron_count():
    model = XcsModel(acceptance_deg=0.0)
    composition = {6: 2, 9: 4}  # PTFE, the paper's flat-field reference
    fine = sum(n * model.element_source(z) for z, n in composition.items())
    spectrum = model.to_hexitec_bins(fine)  # resolution applied; counts conserved
    pz_edges, j_integral = profile_from_spectrum(spectrum, HEXITEC_ENERGY_EDGES_KEV, 114.64, math.pi / 2)
    centres = 0.5 * (pz_edges[1:] + pz_edges[:-1])
    inside = np.abs(centres) < 15
    electrons = j_integral[inside].sum() / (R0_M**2 / 2)
    pz = np.linspace(-15, 15, 30_001)
    expected = sum(
        n * np.trapezoid(xraylib_np.ComptonProfile(np.array([z]), np.abs(pz))[0], pz) for z, n in composition.items()
    )
    assert electrons == pytest.approx(expected, rel=5e-3)
    assert expected == pytest.approx(2 * 6 + 4 * 9, rel=0.01)  # nearly every electron lies within 15 a.u.


def test_emf_rises_with_lithium_content_of_nmc():
    model = XcsModel()
    sources = {z: model.element_source(z) for z in (3, 8, 25, 27, 28)}
    values = []
    for x in np.linspace(0.1, 1.0, 10):
        fine = x * sources[3] + 0.8 * sources[28] + 0.1 * sources[25] + 0.1 * sources[27] + 2 * sources[8]
        values.append(float(emf(model.to_hexitec_bins(model.escape(fine)[0]), HEXITEC_ENERGY_EDGES_KEV)))
    assert all(later > earlier for earlier, later in itertools.pairwise(values))
    assert 0.6 < values[0] < values[-1] < 0.9  # the paper measured 0.65-0.72 in a charged NMC811 cathode


@pytest.fixture(scope="module")
def hexitec(phantom) -> HexitecSimulator:
    bottom, top = phantom.cell.layers_m["cathode"]
    atoms = sheet_column_atoms(phantom, 1.0, (bottom + top) / 2, 0.25e-3)
    return HexitecSimulator(atoms, occupancy=0.01, rng=np.random.default_rng(9))


def test_hexitec_frames_are_sparse_calibrated_adc(hexitec):
    frames = hexitec.frames(2000)
    assert frames.shape == (2000, 80, 80) and frames.dtype == np.uint16
    signal_kev = (frames - hexitec.pedestal_adu) * hexitec.gradient_kev + hexitec.intercept_kev
    hits = signal_kev > 4.0
    truth = hexitec.truth
    lit_pixels = truth.single + 2 * truth.two_pixel + 3 * truth.three_pixel
    assert hits.sum() == pytest.approx(lit_pixels, rel=0.05)  # a few hits pile up or fall under threshold
    assert truth.photons / 2000 == pytest.approx(0.01 * 6400 + truth.fluorescence / 2000, rel=0.05)
    singles = signal_kev[hits]
    histogram, _ = np.histogram(singles, HEXITEC_ENERGY_EDGES_KEV)
    peak = HEXITEC_ENERGY_EDGES_KEV[np.argmax(histogram[300:]) + 300]
    assert peak == pytest.approx(93.6, abs=1.0)  # the Compton peak at 90°


def test_expected_spectra_hold_the_mean_photon_count(hexitec):
    expected = hexitec.expected_spectra()
    # every photon (plus the fluorescence caught elsewhere) is counted once
    per_frame = expected.sum()
    assert per_frame == pytest.approx(
        0.01 * 6400 * (1 + 0.5 * (hexitec.truth.escapes / max(hexitec.truth.photons, 1))), rel=0.03
    )
    assert expected.shape == (80, 80, 1000)


def test_same_seed_same_frames(phantom):
    atoms = sheet_column_atoms(phantom, 0.5, 0.75e-3, 0.25e-3)
    first = HexitecSimulator(atoms, rng=np.random.default_rng(11)).frames(50)
    second = HexitecSimulator(atoms, rng=np.random.default_rng(11)).frames(50)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, HexitecSimulator(atoms, rng=np.random.default_rng(12)).frames(50))


def test_calibration_files_round_trip(hexitec, tmp_path):
    paths = hexitec.write_calibration(tmp_path)
    np.testing.assert_allclose(np.loadtxt(paths["gradients"]), hexitec.gradient_kev, rtol=1e-6)
    np.testing.assert_allclose(np.loadtxt(paths["intercepts"]), hexitec.intercept_kev, atol=1e-6)


def test_dark_frames_give_the_pedestal_and_the_resolution(hexitec):
    darks = hexitec.dark_frames(512).astype(np.float64)
    np.testing.assert_allclose(darks.mean(axis=0), hexitec.pedestal_adu, atol=4.0)  # ~14 ADU noise / sqrt(512)
    noise_kev = (darks - hexitec.pedestal_adu).std(axis=0) * hexitec.gradient_kev
    assert np.median(noise_kev) * 2 * math.sqrt(2 * math.log(2)) == pytest.approx(0.93, rel=0.05)


def test_asking_the_phantom_for_its_atoms_again_and_again_holds_no_memory():
    """The simulated end station asks the cell for its atoms at every projection batch and
    acquisition: thousands of times in an operando run (xraylib's ``CompoundParser`` leaks
    what it returns, 2.6 kB per call of this phantom, unless parsed once)."""
    small = CoinCellPhantom(n_xy=8, n_z=4, rng=np.random.default_rng(0))
    small.atoms_per_m3(0.5)  # what is built once (parsed formulas, caches) is not growth
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for soc in np.linspace(0.0, 1.0, 500):
            small.atoms_per_m3(float(soc))
        grown_bytes = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown_bytes < 50_000  # 500 calls: 1.3 MB when every call parses its formulas
