"""The HEXITEC event chain: hand-made frames, the per-frame scipy reference, and the simulator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.benchmark_xcs_processing import reference_process_frames
from simulators.coin_cell import CoinCellPhantom
from simulators.hexitec import HexitecSimulator
from simulators.xcs import HEXITEC_ENERGY_EDGES_KEV, sheet_column_atoms
from streaming.errors import ConfigError
from streaming.processing.compton import emf
from streaming.processing.hexitec import (
    HEXITEC_ENERGY_EDGES_KEV as PROCESSING_EDGES_KEV,
)
from streaming.processing.hexitec import (
    EventCounters,
    HexitecCalibration,
    HexitecConfig,
    SpectrumAccumulator,
    pedestal_from_darks,
    process_frames,
)

GRADIENT_KEV_PER_ADU = 0.05
PEDESTAL_ADU = 1000


@pytest.fixture(scope="module")
def cathode_atoms() -> dict[int, np.ndarray]:
    phantom = CoinCellPhantom(n_xy=80, n_z=64, rng=np.random.default_rng(2))
    bottom, top = phantom.cell.layers_m["cathode"]
    return sheet_column_atoms(phantom, 1.0, (bottom + top) / 2, 0.25e-3)


def simulator_and_calibration(atoms, occupancy: float, seed: int) -> tuple[HexitecSimulator, HexitecCalibration]:
    simulator = HexitecSimulator(atoms, occupancy=occupancy, rng=np.random.default_rng(seed))
    pedestal = pedestal_from_darks(simulator.dark_frames(500))
    return simulator, HexitecCalibration(simulator.gradient_kev, simulator.intercept_kev, pedestal)


def flat_calibration() -> HexitecCalibration:
    return HexitecCalibration(
        np.full((80, 80), GRADIENT_KEV_PER_ADU), np.zeros((80, 80)), np.full((80, 80), float(PEDESTAL_ADU))
    )


def hand_made_frame() -> np.ndarray:
    """One frame: a single, a two-pixel pair, an L of three, a diagonal pair and a pair split
    across the end of one row and the start of the next (not neighbours)."""
    frame = np.full((80, 80), PEDESTAL_ADU, np.uint16)
    deposits_kev = {
        (10, 10): 60.0,
        (20, 20): 30.0,
        (20, 21): 50.0,
        (30, 30): 40.0,
        (30, 31): 20.0,
        (31, 30): 20.0,
        (40, 40): 70.0,
        (41, 41): 35.0,
        (5, 79): 44.0,
        (6, 0): 66.0,
    }
    for (row, col), energy_kev in deposits_kev.items():
        frame[row, col] += round(energy_kev / GRADIENT_KEV_PER_ADU)
    return frame


def bin_of(energy_kev: float) -> int:
    return int(energy_kev / 0.2)


# -- configuration and input checks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"threshold_kev": -1.0}, "threshold_kev"),
        ({"threshold_kev": float("nan")}, "threshold_kev"),
        ({"threshold_kev": None}, "threshold_kev"),
        ({"threshold_adu": 40.0}, "threshold_kev"),
        ({"threshold_kev": None, "threshold_adu": -3}, "threshold_adu"),
        ({"charge_sharing": "merge"}, "charge_sharing"),
        ({"max_event_pixels": 0}, "max_event_pixels"),
        ({"max_event_pixels": 2.0}, "max_event_pixels"),
        ({"n_bins": 0}, "n_bins"),
        ({"energy_max_kev": 0.0}, "energy_max_kev"),
        ({"energy_min_kev": float("inf")}, "energy_min_kev"),
    ],
)
def test_bad_config_names_its_key(settings, key):
    with pytest.raises(ConfigError, match=f"^hexitec.{key}: "):
        HexitecConfig(**settings)


def test_default_binning_is_the_hexitecs():
    np.testing.assert_array_equal(HexitecConfig().energy_edges_kev, HEXITEC_ENERGY_EDGES_KEV)
    np.testing.assert_array_equal(PROCESSING_EDGES_KEV, HEXITEC_ENERGY_EDGES_KEV)


def test_wrong_frames_and_cubes_are_refused_with_a_reason():
    calibration, config = flat_calibration(), HexitecConfig()
    cube = np.zeros((80, 80, 1000), np.uint32)
    with pytest.raises(ValueError, match="uint16"):
        process_frames(np.zeros((2, 80, 80), np.float32), calibration, config, cube)
    with pytest.raises(ValueError, match=r"shape \(n_frames, 80, 80\)"):
        process_frames(np.zeros((2, 80, 81), np.uint16), calibration, config, cube)
    with pytest.raises(ValueError, match="numpy array"):
        process_frames([[0]], calibration, config, cube)
    with pytest.raises(ValueError, match="uint32 or int64"):
        process_frames(np.zeros((2, 80, 80), np.uint16), calibration, config, cube.astype(np.float64))
    with pytest.raises(ValueError, match="shape"):
        process_frames(np.zeros((2, 80, 80), np.uint16), calibration, config, cube[..., :500])
    with pytest.raises(ValueError, match="uint16"):
        SpectrumAccumulator(calibration).add(np.zeros((1, 80, 80), np.int32))
    with pytest.raises(ValueError, match="gradient_kev_per_adu must be > 0"):
        HexitecCalibration(np.zeros((80, 80)), np.zeros((80, 80)), np.zeros((80, 80)))
    with pytest.raises(ValueError, match="one shape"):
        HexitecCalibration(np.ones((80, 80)), np.zeros((80, 79)), np.zeros((80, 80)))


# -- the chain on a hand-made frame --------------------------------------------------------------


def test_singles_kept_pairs_summed_into_the_larger_pixel_and_triplets_dropped():
    frame = hand_made_frame()
    before = frame.copy()
    cube = np.zeros((80, 80, 1000), np.uint32)
    counters = process_frames(frame, flat_calibration(), HexitecConfig(), cube)
    np.testing.assert_array_equal(frame, before)  # the input is not touched
    assert counters == EventCounters(frames=1, hit_pixels=10, single=5, merged=1, dropped=1, out_of_range=0)
    expected = {
        (10, 10, bin_of(60.0)),
        (20, 21, bin_of(80.0)),  # 30 + 50 keV, at the pixel that took the most charge
        (40, 40, bin_of(70.0)),  # diagonal neighbours are two events (4-connectivity)
        (41, 41, bin_of(35.0)),
        (5, 79, bin_of(44.0)),  # the end of one row does not touch the start of the next
        (6, 0, bin_of(66.0)),
    }
    assert set(zip(*np.nonzero(cube), strict=True)) == expected
    assert cube.sum() == len(expected)


def test_discard_and_off_modes_and_a_larger_event_limit():
    frame = hand_made_frame()
    calibration = flat_calibration()
    results = {}
    for config in (
        HexitecConfig(charge_sharing="discard"),
        HexitecConfig(charge_sharing="off"),
        HexitecConfig(max_event_pixels=3),
    ):
        cube = np.zeros((80, 80, 1000), np.int64)
        counters = process_frames(frame, calibration, config, cube)
        results[(config.charge_sharing, config.max_event_pixels)] = (counters, cube)
    discard, _ = results[("discard", 2)]
    assert (discard.single, discard.merged, discard.dropped) == (5, 0, 2)
    off, off_cube = results[("off", 2)]
    assert (off.single, off.merged, off.dropped) == (10, 0, 0)
    assert off_cube[20, 20, bin_of(30.0)] == 1 and off_cube[20, 21, bin_of(50.0)] == 1
    three, three_cube = results[("sum", 3)]
    assert (three.single, three.merged, three.dropped) == (5, 2, 0)
    assert three_cube[30, 30, bin_of(80.0)] == 1


def test_thresholds_in_kev_and_adu_and_the_energy_range():
    frame = np.full((80, 80), PEDESTAL_ADU, np.uint16)
    frame[0, 0] += 50  # 2.5 keV
    frame[0, 5] += 70  # 3.5 keV
    frame[0, 9] += 5000  # 250 keV: above the spectra's range
    calibration = flat_calibration()
    for config in (HexitecConfig(threshold_kev=3.0), HexitecConfig(threshold_kev=None, threshold_adu=60.0)):
        cube = np.zeros((80, 80, 1000), np.uint32)
        counters = process_frames(frame, calibration, config, cube)
        assert (counters.hit_pixels, counters.single, counters.out_of_range, counters.histogrammed) == (2, 2, 1, 1)
        assert cube[0, 5, bin_of(3.5)] == 1
    cube = np.zeros((80, 80, 1000), np.uint32)
    assert process_frames(frame, calibration, HexitecConfig(threshold_kev=2.0), cube).hit_pixels == 3


@pytest.mark.parametrize(
    "config",
    [
        HexitecConfig(),
        HexitecConfig(charge_sharing="discard"),
        HexitecConfig(charge_sharing="off"),
        HexitecConfig(threshold_kev=None, threshold_adu=120.0),
        HexitecConfig(max_event_pixels=3, energy_min_kev=20.0, energy_max_kev=120.0, n_bins=400),
    ],
    ids=["sum", "discard", "off", "adu", "three-pixels"],
)
def test_numba_kernel_matches_the_per_frame_scipy_reference_event_for_event(cathode_atoms, config):
    simulator, calibration = simulator_and_calibration(cathode_atoms, 0.01, seed=5)
    frames = simulator.frames(150)
    reference_cube = np.zeros((80, 80, config.n_bins), np.int64)
    reference = reference_process_frames(frames, calibration, config, reference_cube)
    cube = np.zeros((80, 80, config.n_bins), np.uint32)
    assert process_frames(frames, calibration, config, cube) == reference
    np.testing.assert_array_equal(cube, reference_cube)


def test_accumulator_over_batches_equals_one_batch_and_resets(cathode_atoms):
    simulator, calibration = simulator_and_calibration(cathode_atoms, 0.01, seed=6)
    frames = simulator.frames(400)
    whole = np.zeros((80, 80, 1000), np.uint32)
    whole_counters = process_frames(frames, calibration, HexitecConfig(), whole)
    accumulator = SpectrumAccumulator(calibration)
    batches = [accumulator.add(part) for part in np.array_split(frames, [1, 150, 151, 400])]  # one of them empty
    assert sum(batch.single for batch in batches) == whole_counters.single
    assert accumulator.counters == whole_counters and accumulator.n_frames == 400
    spectra = accumulator.spectra
    np.testing.assert_array_equal(spectra, whole)
    spectra[...] = 0  # a copy: the accumulator keeps its own
    assert accumulator.spectra.sum() == whole.sum() == whole_counters.histogrammed
    assert accumulator.counters.as_dict()["merged"] == whole_counters.merged
    accumulator.reset()
    assert accumulator.spectra.sum() == 0 and accumulator.counters == EventCounters()
    np.testing.assert_array_equal(accumulator.energy_edges_kev, HEXITEC_ENERGY_EDGES_KEV)


def test_calibration_from_the_simulators_files_and_dark_frames(cathode_atoms, tmp_path):
    simulator = HexitecSimulator(cathode_atoms, occupancy=0.01, rng=np.random.default_rng(7))
    paths = simulator.write_calibration(tmp_path)
    darks = simulator.dark_frames(300)
    darks[17, 3, 4] = 60000  # a stray photon in a dark frame must not lift the pedestal
    calibration = HexitecCalibration.from_files(paths["gradients"], paths["intercepts"], darks)
    np.testing.assert_allclose(calibration.gradient_kev_per_adu, simulator.gradient_kev, rtol=1e-6)
    np.testing.assert_allclose(calibration.intercept_kev, simulator.intercept_kev, atol=1e-6)
    error_adu = calibration.pedestal_adu - simulator.pedestal_adu
    assert np.abs(error_adu).mean() < 1.0 and np.abs(error_adu).max() < 5.0  # noise ~14 ADU / sqrt(300)
    assert abs(error_adu[3, 4]) < 3.0
    assert not calibration.pedestal_adu.flags.writeable


# -- against the simulator's physics ------------------------------------------------------------


def test_event_counts_match_the_simulators_truth_at_low_occupancy(cathode_atoms):
    # at 0.05 % occupancy two photons rarely land side by side, so events are photons
    simulator, calibration = simulator_and_calibration(cathode_atoms, 0.0005, seed=9)
    accumulator = SpectrumAccumulator(calibration)
    for _ in range(20):
        accumulator.add(simulator.frames(2000))
    counters, truth = accumulator.counters, simulator.truth
    assert truth.three_pixel > 4000  # enough photons for a 2 % check
    assert counters.single == pytest.approx(truth.single, rel=0.01)
    assert counters.merged == pytest.approx(truth.two_pixel, rel=0.01)
    assert counters.dropped == pytest.approx(truth.three_pixel, rel=0.05)
    assert counters.hit_pixels == pytest.approx(truth.single + 2 * truth.two_pixel + 3 * truth.three_pixel, rel=0.01)


@pytest.fixture(scope="module")
def accumulated(cathode_atoms) -> tuple[SpectrumAccumulator, np.ndarray]:
    """20 000 frames at 0.2 % occupancy and their expected spectra, scaled to what the chain
    keeps (three-pixel photons are dropped; the simulator counts them at their hit pixel)."""
    simulator, calibration = simulator_and_calibration(cathode_atoms, 0.002, seed=9)
    accumulator = SpectrumAccumulator(calibration)
    for _ in range(10):
        accumulator.add(simulator.frames(2000))
    truth = simulator.truth
    kept = (truth.single + truth.two_pixel) / truth.photons
    return accumulator, simulator.expected_spectra() * accumulator.n_frames * kept


def test_spectra_match_the_expected_counts_and_compton_peak(accumulated):
    accumulator, expected = accumulated
    edges = accumulator.energy_edges_kev
    centres = 0.5 * (edges[1:] + edges[:-1])
    measured = accumulator.spectra.astype(float)
    # 45-125 keV: the simulator's expectation puts the CdTe Kα lines (23, 27 keV) at 40 keV,
    # the bottom of its fine grid, so lower energies are left out
    band = (centres > 45) & (centres < 125)
    total, expected_total = measured[..., band].sum(), expected[..., band].sum()
    # 1-2 % of photons meet a neighbour's in the same frame at 0.2 % occupancy and are lost
    assert total == pytest.approx(expected_total, rel=0.025)
    assert total < expected_total
    spectrum, expected_spectrum = measured.sum(axis=(0, 1)), expected.sum(axis=(0, 1))
    peak = (centres > 90) & (centres < 97)
    centroid = (spectrum[peak] * centres[peak]).sum() / spectrum[peak].sum()
    expected_centroid = (expected_spectrum[peak] * centres[peak]).sum() / expected_spectrum[peak].sum()
    assert centroid == pytest.approx(expected_centroid, abs=0.03)
    assert centroid == pytest.approx(93.63, abs=0.1)  # the Compton peak at 90°
    # events land in the pixel the photon hit: per-pixel counts within Poisson of the expectation
    image, expected_image = measured[..., band].sum(axis=-1), expected[..., band].sum(axis=-1)
    expected_image *= total / expected_total
    lit = expected_image > 5
    chi2_per_dof = (((image - expected_image) ** 2 / expected_image)[lit]).mean()
    assert lit.sum() > 3000
    assert chi2_per_dof == pytest.approx(1.0, abs=0.1)


def test_emf_of_the_accumulated_cathode_matches_the_expected_within_its_poisson_sigma(accumulated, cathode_atoms):
    accumulator, expected = accumulated
    edges = accumulator.energy_edges_kev
    cathode = cathode_atoms[28] > 0.5 * cathode_atoms[28].max()  # Ni: the cathode's pixels
    value, sigma = emf(accumulator.spectra[cathode].sum(axis=0), edges, return_sigma=True)
    expected_value = emf(expected[cathode].sum(axis=0), edges)
    assert 0.6 < expected_value < 0.9
    # summed two-pixel events carry the noise of two pixels: their slightly broader Compton
    # peak lowers the EMF by ~1 % (~1.5 sigma here), which the expectation does not model
    assert abs(value - expected_value) < 3 * sigma
    emf_map = emf(accumulator.spectra, edges)
    assert emf_map.shape == (80, 80)
    assert np.nanmedian(emf_map[cathode]) == pytest.approx(expected_value, rel=0.1)
