"""The XRD-CT simulator: phantom geometry, state-of-charge coupling, ray patterns, Pilatus
frames through pyFAI geometry, the zigzag scan, presets, calibrant and ground truth."""

from __future__ import annotations

import json
import math

import fabio
import h5py
import numpy as np
import pyFAI
import pytest
import xraylib
from pyFAI.calibrant import get_calibrant

from simulators.cell_phantom import CylindricalCell, material_fractions
from simulators.phases import NMC532_LATTICE_CHARGED, NMC532_LATTICE_DISCHARGED
from simulators.xrdct import XrdctSimulation
from simulators.xrdct_presets import PRESETS, pilatus_detector


@pytest.fixture(scope="module")
def discharged() -> XrdctSimulation:
    return XrdctSimulation("tiny", soc=0.0, seed=3)


@pytest.fixture(scope="module")
def charged() -> XrdctSimulation:
    return XrdctSimulation("tiny", soc=1.0, seed=3)


def integrate(simulation: XrdctSimulation, image: np.ndarray, *, integrator=None) -> np.ndarray:
    edges = simulation.radial_edges_deg
    result = (integrator or simulation.integrator).integrate1d(
        image,
        simulation.preset.n_radial,
        radial_range=(edges[0], edges[-1]),
        unit="2th_deg",
        method=("no", "histogram", "cython"),
        correctSolidAngle=True,
        polarization_factor=0.99,
        mask=simulation.mask,
    )
    return result.intensity


def test_casing_area_matches_the_annulus():
    cell = CylindricalCell()
    for n_px, pixel_m in ((64, 10.98e-3 / 64), (300, 10.98e-3 / 300)):
        area_mm2 = material_fractions(cell, n_px, pixel_m)["casing"].sum() * (pixel_m * 1e3) ** 2
        outer, inner = cell.diameter_m / 2 * 1e3, (cell.diameter_m / 2 - cell.casing_thickness_m) * 1e3
        assert area_mm2 == pytest.approx(math.pi * (outer**2 - inner**2), rel=2e-3)


def test_foils_keep_their_share_of_the_roll_at_any_pixel_size():
    cell = CylindricalCell()
    coarse = material_fractions(cell, 64, 10.98e-3 / 64)
    fine = material_fractions(cell, 400, 10.98e-3 / 400)
    for name in ("cu", "al", "separator"):
        coarse_area = coarse[name].sum() * (10.98 / 64) ** 2
        fine_area = fine[name].sum() * (10.98 / 400) ** 2
        assert coarse_area == pytest.approx(fine_area, rel=0.02), name
    total = sum(fine.values())
    assert total.max() <= 1.0 + 1e-6


def test_state_of_charge_moves_the_anode_stages_and_lags_near_casing_core_and_tab(discharged, charged):
    lag = discharged._lag
    anode = discharged._materials["anode"] > 0.3
    bulk, lagging = anode & (lag < 0.05), anode & (lag > 0.8)
    assert bulk.sum() > 20 and lagging.sum() > 5

    def share(sim, phase, where):
        return sim.state.fractions[phase][where].sum() / sum(
            sim.state.fractions[p][where].sum() for p in ("graphite", "LiC30", "LiC12", "LiC6")
        )

    assert share(discharged, "graphite", bulk) > 0.9 and share(discharged, "LiC30", lagging) > 0.5
    assert share(charged, "LiC6", bulk) > 0.9 and share(charged, "LiC12", lagging) > 0.3


def test_nmc_lattice_stays_in_the_papers_window_and_shrinks_in_c_on_discharge(discharged, charged):
    for sim in (discharged, charged):
        a, c = sim.state.nmc_a_angstrom, sim.state.nmc_c_angstrom
        assert np.nanmin(a) >= NMC532_LATTICE_CHARGED[0] - 1e-6 and np.nanmax(a) <= NMC532_LATTICE_DISCHARGED[0] + 1e-6
        assert np.nanmin(c) >= NMC532_LATTICE_DISCHARGED[1] - 1e-6 and np.nanmax(c) <= NMC532_LATTICE_CHARGED[1] + 1e-6
    assert np.nanmean(discharged.state.nmc_c_angstrom) < np.nanmean(charged.state.nmc_c_angstrom) - 0.1
    assert np.nanmean(discharged.state.nmc_a_angstrom) > np.nanmean(charged.state.nmc_a_angstrom) + 0.02


def test_a_point_on_the_rotation_axis_projects_onto_the_true_centre(discharged):
    n = discharged.n_px
    point = np.zeros((n, n), np.float32)
    point[n // 2 - 1 : n // 2 + 1, n // 2 - 1 : n // 2 + 1] = 1.0
    sinogram = discharged._project(point)
    centroids = (sinogram * np.arange(n)).sum(axis=1) / sinogram.sum(axis=1)
    np.testing.assert_allclose(centroids, discharged.center_of_rotation_px, atol=0.05)


def test_the_pyfai_integrated_frame_recovers_the_pattern_it_was_made_from(discharged):
    pattern = discharged.ray_pattern(10, discharged.n_px // 2)
    recovered = integrate(discharged, discharged.expected_frame(pattern)) / discharged._scale
    relative = np.abs(recovered - pattern) / pattern
    assert np.linalg.norm(recovered - pattern) / np.linalg.norm(pattern) < 1e-3
    assert np.percentile(relative, 99) < 1e-3


def test_frames_are_pilatus_like(discharged):
    frame = discharged.frame(5, discharged.n_px // 2)
    assert frame.dtype == np.int32 and frame.shape == discharged.detector.shape
    assert np.all(frame[discharged.gaps] == -1)  # module gaps, as Pilatus writes them
    assert np.all(frame[~discharged.gaps] >= 0)  # and nowhere else
    valid = frame[~discharged.mask]
    assert valid.min() >= 0 and np.count_nonzero(valid == 2**20 - 1) >= 1  # hot pixels
    expected = discharged.expected_frame(discharged.ray_pattern(5, discharged.n_px // 2))[~discharged.mask]
    # Poisson: mean matches and variance ~ mean over the frame (away from the hot pixels)
    ordinary = valid < 2**19
    assert valid[ordinary].sum() == pytest.approx(expected[ordinary].sum(), rel=0.02)


def test_the_same_seed_gives_identical_frames_and_another_seed_does_not(discharged):
    twin = XrdctSimulation("tiny", soc=0.0, seed=3)
    other = XrdctSimulation("tiny", soc=0.0, seed=4)
    np.testing.assert_array_equal(twin.frame(7, 20), discharged.frame(7, 20))
    assert not np.array_equal(other.frame(7, 20), discharged.frame(7, 20))


def test_zigzag_runs_even_lines_forward_odd_lines_back_and_covers_every_point_once():
    simulation = XrdctSimulation("tiny", soc=0.5)
    points = [(f.angle_index, f.translation_index, f.angle_deg, f.translation_mm) for f in simulation.zigzag()]
    n_t, n_a = simulation.preset.n_translations, simulation.preset.n_angles
    assert len(points) == n_t * n_a == len({(a, t) for a, t, *_ in points})
    first, second = points[:n_t], points[n_t : 2 * n_t]
    assert [t for _, t, *_ in first] == list(range(n_t))
    assert [t for _, t, *_ in second] == list(reversed(range(n_t)))
    assert [mm for *_, mm in first] == sorted(mm for *_, mm in first)
    angles = sorted({deg for _, _, deg, _ in points})
    assert angles[0] == 0.0 and angles[-1] == pytest.approx(180.0 - 180.0 / n_a)


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_presets_produce_their_stated_shapes(name):
    preset = PRESETS[name]
    simulation = XrdctSimulation(name, soc=0.5)
    assert simulation.sinogram(slice(0, 2)).shape == (2, preset.n_translations, preset.n_radial)
    assert simulation.frame(0, 0).shape == (1679 // preset.detector_binning, 1475 // preset.detector_binning)
    assert simulation.state.fractions["Fe"].shape == (preset.n_translations, preset.n_translations)


def test_paper_preset_is_the_papers_scan():
    paper = PRESETS["paper"]
    assert (paper.n_translations, paper.n_angles, paper.translation_step_m) == (549, 400, 20e-6)
    assert pilatus_detector(1).shape == (1679, 1475)
    cell_px = CylindricalCell().diameter_m / paper.translation_step_m
    assert round(cell_px) == 508 or round(cell_px) == 509


def test_calibrant_frame_and_poni_let_pyfai_find_ceo2_where_it_should(discharged, tmp_path):
    poni = discharged.write_poni(tmp_path / "geometry.poni")
    loaded = pyFAI.load(str(poni))
    assert loaded.dist == pytest.approx(discharged.integrator.dist)
    assert loaded.wavelength == pytest.approx(discharged.integrator.wavelength)
    profile = integrate(discharged, discharged.calibrant_frame().astype(np.float32), integrator=loaded)
    calibrant = get_calibrant("CeO2")
    calibrant.wavelength = loaded.wavelength
    expected_deg = np.degrees(calibrant.get_2th())[:3]
    step = np.diff(discharged.radial_edges_deg[:2])[0]
    for tth in expected_deg:
        window = np.abs(discharged.radial_deg - tth) < 2 * discharged.preset.fwhm_deg
        peak = discharged.radial_deg[window][np.argmax(profile[window])]
        assert abs(peak - tth) <= 1.5 * step


def test_ground_truth_file_holds_maps_sinogram_and_geometry(discharged, tmp_path):
    path = discharged.write_ground_truth(tmp_path / "truth.h5")
    preset = discharged.preset
    with h5py.File(path, "r") as file:
        truth = file["truth"]
        assert truth["sinogram"].shape == (preset.n_angles, preset.n_translations, preset.n_radial)
        np.testing.assert_allclose(truth["sinogram"][3, 20], discharged.sinogram(slice(3, 4))[0, 20], rtol=1e-6)
        assert truth.attrs["center_of_rotation_px"] == pytest.approx(discharged.center_of_rotation_px)
        assert set(truth["phase_fractions"]) >= {"Fe", "Cu", "Al", "graphite", "LiC30", "NMC532", "separator"}
        assert truth["nmc_c_angstrom"].shape == (preset.n_translations, preset.n_translations)
        geometry = json.loads(truth["poni"][()])
        assert geometry["dist"] == pytest.approx(discharged.integrator.dist)


def test_attenuation_follows_beer_lambert_through_the_casing():
    attenuated = XrdctSimulation("tiny", soc=0.0, seed=3, attenuation=True)
    mu = attenuated.attenuation_map_per_m()
    casing = attenuated._materials["casing"] > 0.99
    assert np.median(mu[casing]) == pytest.approx(xraylib.CS_Total_CP("Fe", 103.5) * 7.87 * 100, rel=0.01)
    # the central ray crosses the casing twice and the roll once: transmission well below 1
    centre = round(attenuated.center_of_rotation_px)
    assert 0.05 < attenuated.transmission[0, centre] < 0.6
    assert attenuated.transmission[0, 0] == pytest.approx(1.0)  # air beside the cell
    plain = XrdctSimulation("tiny", soc=0.0, seed=3)
    seen = attenuated.ray_pattern(0, centre) - attenuated.air_pattern
    unattenuated = plain.ray_pattern(0, centre) - plain.air_pattern
    expected = unattenuated * attenuated.transmission[0, centre]
    np.testing.assert_allclose(seen, expected, rtol=1e-4, atol=1e-3 * expected.max())


def test_calibration_files_are_what_pyfai_calib2_reads(discharged, tmp_path):
    paths = discharged.write_calibration(tmp_path)
    image = fabio.open(str(paths["calibrant"])).data
    np.testing.assert_array_equal(image, discharged.calibrant_frame())
    assert fabio.open(str(paths["mask"])).data.sum() == discharged.mask.sum()
    assert pyFAI.load(str(paths["poni"])).detector.shape == discharged.detector.shape


@pytest.mark.parametrize("mean", [0.02, 0.8, 4.5, 12.0, 29.5, 30.5, 45.0, 81.0, 400.0, 25_600.0])
def test_frame_noise_is_poisson(mean):
    """The frames' counting noise against scipy's Poisson distribution (chi-square over the
    counts with an expectation of 5 or more), the same draws on 1 or 2 threads: CDF inversion
    up to a mean of 30, transformed rejection above (the tiny preset's peak is 25 600)."""
    import numba
    from scipy import stats

    from simulators.noise import poisson_counts

    means = np.full(200_000, mean)
    counts = poisson_counts(np.random.default_rng(7), means)
    values = np.arange(counts.max() + 1)
    observed = np.bincount(counts, minlength=values.size)
    expected = stats.poisson.pmf(values, mean) * counts.size
    kept = expected >= 5
    chi2 = float(np.sum((observed[kept] - expected[kept]) ** 2 / expected[kept]))
    assert stats.chi2.sf(chi2, max(1, kept.sum() - 1)) > 1e-3
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(poisson_counts(np.random.default_rng(7), means), counts)
    finally:
        numba.set_num_threads(previous)
