"""Per-voxel maps: window intensities, the batched peak fit, the batched NNLS, and the whole
chain on the simulated cell's noise-free sinogram against its ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from simulators.crystal import pseudo_voigt
from simulators.xrdct import XrdctSimulation
from simulators.xrdct_presets import WAVELENGTH_ANGSTROM
from streaming.errors import ConfigError
from streaming.processing.fbp import reconstruct
from streaming.processing.maps import (
    LatticePeak,
    MapsConfig,
    PeakWindow,
    PhaseReference,
    compute_maps,
    compute_voxel_maps,
    decompose_phases,
    fit_peak,
    join_maps,
    lattice_from_center,
    window_intensity,
)
from tests.xrdct_truth import RESOLVED_PHASES, cathode_lattice_errors, maps_config, phase_correlations

RADIAL_DEG = np.linspace(1.0, 3.0, 201)  # 0.01° bins


@pytest.fixture(scope="module")
def simulation() -> XrdctSimulation:
    return XrdctSimulation("tiny", soc=0.0, seed=0)


@pytest.fixture(scope="module")
def reconstruction(simulation):
    return reconstruct(simulation.sinogram(), simulation.angles_deg, center_px=simulation.center_of_rotation_px)


@pytest.fixture(scope="module")
def maps(simulation, reconstruction):
    return compute_maps(reconstruction, simulation.radial_deg, maps_config(simulation),
                        wavelength_angstrom=WAVELENGTH_ANGSTROM)  # fmt: skip


def peaks_on_background(rng, centers_deg, fwhm_deg, areas, eta=0.5):
    """(n, 1, 201) volume of one pseudo-Voigt per voxel on a sloping background."""
    volume = np.stack(
        [a * pseudo_voigt(RADIAL_DEG, c, w, eta) for c, w, a in zip(centers_deg, fwhm_deg, areas, strict=True)]
    )
    background = rng.uniform(0, 2, (len(areas), 1)) + rng.uniform(-0.5, 0.5, (len(areas), 1)) * (RADIAL_DEG - 2)
    return (volume + background)[:, None, :], background


# -- the parts -------------------------------------------------------------------------------


def test_window_intensity_is_the_peak_area_above_a_sloping_background(rng):
    n = 20
    areas = rng.uniform(1, 10, n)
    volume, _ = peaks_on_background(rng, rng.uniform(1.9, 2.1, n), np.full(n, 0.05), areas, eta=0.0)
    window = PeakWindow(name="p", window_deg=(1.6, 2.4), background_width_deg=0.2)
    ours = window_intensity(volume, RADIAL_DEG, window)[:, 0]
    # a Gaussian is gone 0.3° from its centre: the side windows see the straight background
    # alone, so what is left is the peak's area
    np.testing.assert_allclose(ours, areas, rtol=1e-3)


def test_peak_fit_recovers_positions_widths_and_areas(rng):
    n = 300
    centers = rng.uniform(1.85, 2.15, n)
    widths = rng.uniform(0.04, 0.1, n)
    areas = rng.uniform(0.5, 5, n)
    volume, _ = peaks_on_background(rng, centers, widths, areas)
    fit = fit_peak(volume, RADIAL_DEG, (1.6, 2.4), fwhm_guess_deg=0.07)
    assert fit.valid.all() and fit.center_deg.shape == (n, 1)
    np.testing.assert_allclose(fit.center_deg[:, 0], centers, atol=1e-4)
    np.testing.assert_allclose(fit.fwhm_deg[:, 0], widths, rtol=1e-3)
    np.testing.assert_allclose(fit.area[:, 0], areas, rtol=1e-3)


def test_peak_fit_marks_empty_voxels_invalid(rng):
    volume, _ = peaks_on_background(rng, [2.0, 2.0], [0.05, 0.05], [3.0, 0.0])
    fit = fit_peak(volume, RADIAL_DEG, (1.6, 2.4))
    assert fit.valid[:, 0].tolist() == [True, False]
    assert np.isnan(fit.center_deg[1, 0])


def test_lattice_from_center_is_bragg():
    d_angstrom = 4.8
    two_theta_deg = np.degrees(2 * np.arcsin(WAVELENGTH_ANGSTROM / (2 * d_angstrom)))
    assert lattice_from_center(np.array(two_theta_deg), WAVELENGTH_ANGSTROM, 3.0) == pytest.approx(14.4, abs=1e-9)


def test_phase_decomposition_is_the_exact_nnls(rng):
    basis = np.stack([pseudo_voigt(RADIAL_DEG, c, 0.05, 0.5) for c in (1.5, 1.8, 1.82, 2.3, 2.6)])
    true_weights = rng.uniform(0, 1, (50, 5)) * (rng.uniform(size=(50, 5)) > 0.3)
    patterns = true_weights @ basis + rng.normal(0, 0.05, (50, RADIAL_DEG.size))
    references = [PhaseReference("a", RADIAL_DEG, basis[0]), PhaseReference("b", RADIAL_DEG, basis[1:3]),
                  PhaseReference("c", RADIAL_DEG, basis[3:])]  # fmt: skip
    result = decompose_phases(patterns[:, None, :], RADIAL_DEG, references)
    expected = np.stack([scipy.optimize.nnls(basis.T, p)[0] for p in patterns])
    assert (expected == 0).any()  # the constrained path is exercised
    np.testing.assert_allclose(result.component_weights[:, 0], expected, atol=1e-4)
    np.testing.assert_allclose(result.weights["b"][:, 0], expected[:, 1:3].sum(axis=1), atol=1e-4)
    assert result.components == ["a[0]", "b[0]", "b[1]", "c[0]", "c[1]"]
    np.testing.assert_allclose(result.fitted[:, 0], expected @ basis, atol=1e-3)
    np.testing.assert_allclose(result.fitted_without("b")[:, 0], expected[:, [0, 3, 4]] @ basis[[0, 3, 4]], atol=1e-3)


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: PeakWindow(name="w", window_deg=(2.0, 1.0)), "maps.windows.w"),
        (lambda: LatticePeak(name="c", window_deg=(1, 2), lattice_per_d=0), "maps.lattice_peaks.c"),
        (lambda: PhaseReference("p", RADIAL_DEG, np.ones(3)), "maps.phases.p"),
        (lambda: MapsConfig(lattice_peaks=(LatticePeak(name="c", window_deg=(1, 2), lattice_per_d=3, phase="x"),)),
         "maps.lattice_peaks.c"),
    ],
)  # fmt: skip
def test_bad_configs_name_their_key(make, key):
    with pytest.raises(ConfigError, match=key):
        make()


# -- the simulated cell ------------------------------------------------------------------------


def test_phase_maps_follow_the_ground_truth(maps, simulation):
    correlations = phase_correlations(maps.phases.weights, simulation)
    assert set(correlations) == set(RESOLVED_PHASES)
    assert min(correlations.values()) >= 0.9, correlations


def test_nmc_c_lattice_within_a_hundredth_of_an_angstrom(maps, simulation):
    errors, without_secondary = cathode_lattice_errors(maps.lattices["NMC532_c"], simulation)
    assert np.isfinite(errors).all()
    assert np.nanmax(without_secondary) < 0.01
    assert np.mean(errors < 0.01) >= 0.95 and np.median(errors) < 0.002


def test_maps_leave_the_reconstruction_untouched(simulation):
    volume = np.random.default_rng(0).uniform(0, 1, (4, 5, simulation.preset.n_radial)).astype(np.float32)
    before = volume.copy()
    compute_maps(volume, simulation.radial_deg, maps_config(simulation), wavelength_angstrom=WAVELENGTH_ANGSTROM)
    np.testing.assert_array_equal(volume, before)


def test_maps_of_blocks_of_rows_joined_are_the_whole_images(simulation, reconstruction, maps):
    """What the Dask reduction relies on: every map a voxel's own, but the lattice fits' area
    threshold, which is the whole image's (a block of weak voxels alone would pass it)."""
    config = maps_config(simulation)
    rows = [slice(0, 5), slice(5, 6), slice(6, reconstruction.shape[0])]
    parts = [compute_voxel_maps(reconstruction[block], simulation.radial_deg, config,
                                wavelength_angstrom=WAVELENGTH_ANGSTROM) for block in rows]  # fmt: skip
    joined = join_maps(parts, config)
    for name, image in maps.intensities.items():
        np.testing.assert_array_equal(joined.intensities[name], image, err_msg=name)
    for name, image in maps.phases.weights.items():  # LAPACK solves a block's voxels together
        np.testing.assert_allclose(joined.phases.weights[name], image, rtol=1e-6, atol=1e-6 * np.abs(image).max())
    np.testing.assert_allclose(joined.phases.relative_residual, maps.phases.relative_residual, rtol=1e-5)
    (peak,) = config.lattice_peaks
    np.testing.assert_array_equal(joined.peak_fits[peak.name].valid, maps.peak_fits[peak.name].valid)
    np.testing.assert_allclose(joined.lattices[peak.name], maps.lattices[peak.name], rtol=1e-6)
    # the threshold is the whole image's: in a block alone, some of its weak voxels would pass
    alone = parts[0].peak_fits[peak.name].thresholded(peak.min_area_fraction).valid
    weak = alone & ~joined.peak_fits[peak.name].valid[rows[0]]
    assert weak.any() and np.isnan(joined.lattices[peak.name][rows[0]][weak]).all()
