"""Azimuthal trimmed mean, mean and sigma clipping against pyFAI's own CSR integrators,
on the XRD-CT simulator's real Pilatus geometry (binned), mask and corrections."""

from __future__ import annotations

import numpy as np
import pyFAI
import pytest

from simulators.xrdct import XrdctSimulation
from streaming.errors import ConfigError
from streaming.processing.integration import AzimuthalReducer, IntegrationConfig

PYFAI_METHOD = ("no", "csr", "cython")


@pytest.fixture(scope="module")
def simulation() -> XrdctSimulation:
    return XrdctSimulation("tiny", soc=0.5, seed=5)


@pytest.fixture(scope="module")
def frames(simulation) -> dict[str, np.ndarray]:
    """A raw frame (int32, -1 in gaps) and a tie-free float copy of it."""
    raw = simulation.frame(7, 30)
    offset = np.random.default_rng(11).random(raw.shape, dtype=np.float32)
    tie_free = raw.astype(np.float32) + 0.5 * offset
    tie_free[simulation.gaps] = -1
    return {"raw": raw, "tie_free": tie_free}


def relative_difference(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-12)


@pytest.mark.parametrize(
    ("n_radial", "percentiles"),
    [(400, (5, 95)), (40, (5, 95)), (40, (10, 90)), (120, (1, 99.5)), (40, (0, 90))],
)
def test_trimmed_mean_equals_pyfai_medfilt(simulation, frames, n_radial, percentiles):
    # 400 bins of ~100 pixels use the exact selection; 40 bins of ~900 the sampled bracket
    config = IntegrationConfig(n_radial=n_radial, percentiles=percentiles, polarization_factor=0.99)
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    frame = frames["tie_free"]
    before = frame.copy()
    ours = reducer.integrate_full(frame)
    np.testing.assert_array_equal(frame, before)
    reference = simulation.integrator.medfilt1d_ng(
        frame, n_radial, percentile=percentiles, unit="2th_deg", mask=simulation.mask, polarization_factor=0.99,
        method=PYFAI_METHOD,
    )  # fmt: skip
    np.testing.assert_allclose(ours.radial_deg, reference.radial, rtol=1e-9)
    populated = reducer.pixels_per_bin >= 10
    assert populated.sum() > 0.8 * n_radial
    assert relative_difference(ours.intensity, reference.intensity)[populated].max() <= 1e-4
    np.testing.assert_array_equal(ours.count[populated], reference.count[populated])


def test_trimmed_mean_equals_the_pyfai_engine_medfilt(simulation, frames):
    shape, n_radial = simulation.detector.shape, 60
    engine = simulation.integrator.setup_sparse_integrator(
        shape, n_radial, mask=simulation.mask, unit="2th_deg", split="no", algo="CSR", empty=0.0, scale=False
    )
    config = IntegrationConfig(n_radial=n_radial, polarization_factor=0.99)
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    frame = frames["tie_free"]
    reference = engine.medfilt(
        frame, solidangle=simulation.integrator.solidAngleArray(shape, True),
        polarization=simulation.integrator.polarization(shape, 0.99), quant_min=0.05, quant_max=0.95,
    )  # fmt: skip
    populated = reducer.pixels_per_bin >= 10
    assert relative_difference(reducer.integrate(frame), reference.intensity)[populated].max() <= 1e-4


def test_raw_counts_differ_from_pyfai_only_by_ties(simulation, frames):
    """On integer counts equal values are ordered arbitrarily by both sorts: a bin moves by
    at most a few pixels' worth of its mean."""
    config = IntegrationConfig(n_radial=100)
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    ours = reducer.integrate_full(frames["raw"])
    reference = simulation.integrator.medfilt1d_ng(
        frames["raw"], 100, percentile=(5, 95), unit="2th_deg", mask=simulation.mask, polarization_factor=0.99,
        method=PYFAI_METHOD,
    )  # fmt: skip
    populated = ours.count >= 10
    bound = 3.0 / ours.count[populated]
    assert np.all(relative_difference(ours.intensity, reference.intensity)[populated] <= bound)


def test_mean_equals_pyfai_integrate1d_ng(simulation, frames):
    config = IntegrationConfig(n_radial=300, method="mean", polarization_factor=0.99)
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    for frame in frames.values():
        reference = simulation.integrator.integrate1d_ng(
            frame, 300, unit="2th_deg", mask=simulation.mask, polarization_factor=0.99, method=PYFAI_METHOD
        )
        populated = reducer.pixels_per_bin >= 10
        assert relative_difference(reducer.integrate(frame), reference.intensity)[populated].max() <= 1e-5


def test_sigma_clip_equals_pyfai_sigma_clip_ng(simulation, frames):
    config = IntegrationConfig(
        n_radial=80, method="sigma_clip", sigma_clip_threshold=3.0, sigma_clip_max_iter=5, polarization_factor=0.99
    )
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    frame = frames["tie_free"]
    reference = simulation.integrator.sigma_clip_ng(
        frame, 80, unit="2th_deg", mask=simulation.mask, polarization_factor=0.99, thres=3.0, max_iter=5,
        error_model="azimuthal", method=PYFAI_METHOD,
    )  # fmt: skip
    populated = reducer.pixels_per_bin >= 10
    assert relative_difference(reducer.integrate(frame), reference.intensity)[populated].max() <= 1e-4
    # clipping removed the hot pixels a plain mean keeps; elsewhere it moves a bin little
    mean = AzimuthalReducer.from_integrator(
        simulation.integrator, None, simulation.mask, IntegrationConfig(n_radial=80, method="mean")
    ).integrate(frame)
    ratio = reducer.integrate(frame) / mean
    bin_of_entry = np.repeat(np.arange(80), reducer.pixels_per_bin)
    hot = np.isin(reducer._pixel_index, np.flatnonzero(frame.reshape(-1) >= 2**20 - 1))
    hot_bins = np.unique(bin_of_entry[hot])
    assert hot_bins.size and np.all(ratio[hot_bins] < 0.5)
    assert np.all(ratio[populated] <= 1.005)


def test_dark_and_flat_match_pyfai(simulation, frames):
    rng = np.random.default_rng(3)
    shape = simulation.detector.shape
    dark = rng.uniform(0.0, 0.3, shape).astype(np.float32)
    flat = rng.uniform(0.9, 1.1, shape).astype(np.float32)
    config = IntegrationConfig(n_radial=50, polarization_factor=0.99)
    reducer = AzimuthalReducer.from_integrator(
        simulation.integrator, None, simulation.mask, config, flat=flat, dark=dark
    )
    frame = frames["tie_free"]
    reference = simulation.integrator.medfilt1d_ng(
        frame, 50, percentile=(5, 95), unit="2th_deg", mask=simulation.mask, polarization_factor=0.99, dark=dark,
        flat=flat, method=PYFAI_METHOD,
    )  # fmt: skip
    populated = reducer.pixels_per_bin >= 10
    assert relative_difference(reducer.integrate(frame), reference.intensity)[populated].max() <= 1e-4


def test_poni_file_gives_the_same_reducer(simulation, frames, tmp_path):
    config = IntegrationConfig(n_radial=64)
    poni = simulation.write_poni(tmp_path / "geometry.poni")
    from_file = AzimuthalReducer.from_poni(poni, simulation.detector.shape, simulation.mask, config)
    direct = AzimuthalReducer.from_integrator(pyFAI.load(str(poni)), None, simulation.mask, config)
    np.testing.assert_array_equal(from_file.integrate(frames["raw"]), direct.integrate(frames["raw"]))
    np.testing.assert_allclose(from_file.radial_deg, direct.radial_deg)


def test_negative_pixels_are_skipped_like_masked_ones(simulation, frames):
    frame = frames["tie_free"].copy()
    dead = np.zeros_like(simulation.mask)
    dead[100, 20:40] = True
    dead &= ~simulation.mask
    frame[dead] = -2
    config = IntegrationConfig(n_radial=40)
    skipped = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config).integrate(frame)
    masked = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask | dead, config)
    np.testing.assert_allclose(skipped, masked.integrate(frame), rtol=1e-12)


def test_radial_range_restricts_the_bins(simulation, frames):
    config = IntegrationConfig(n_radial=30, radial_range_deg=(2.0, 5.0), method="mean")
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    assert reducer.radial_deg[0] > 2.0 and reducer.radial_deg[-1] < 5.0
    reference = simulation.integrator.integrate1d_ng(
        frames["raw"], 30, unit="2th_deg", radial_range=(2.0, 5.0), mask=simulation.mask, polarization_factor=0.99,
        method=PYFAI_METHOD,
    )  # fmt: skip
    np.testing.assert_allclose(reducer.integrate(frames["raw"]), reference.intensity, rtol=1e-5)


def test_wrong_frames_are_refused(simulation):
    reducer = AzimuthalReducer.from_integrator(
        simulation.integrator, None, simulation.mask, IntegrationConfig(n_radial=10)
    )
    with pytest.raises(ValueError, match="shape"):
        reducer.integrate(np.zeros((3, 3), np.int32))
    with pytest.raises(TypeError, match="dtype"):
        reducer.integrate(np.zeros(simulation.detector.shape, bool))


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"n_radial": 0}, "n_radial"),
        ({"n_radial": 2.5}, "n_radial"),
        ({"n_radial": 10, "method": "median"}, "method"),
        ({"n_radial": 10, "percentiles": (95, 5)}, "percentiles"),
        ({"n_radial": 10, "percentiles": (5, 101)}, "percentiles"),
        ({"n_radial": 10, "percentiles": "5-95"}, "percentiles"),
        ({"n_radial": 10, "polarization_factor": 1.5}, "polarization_factor"),
        ({"n_radial": 10, "unit": "q_nm^-1"}, "unit"),
        ({"n_radial": 10, "radial_range_deg": (5.0, 2.0)}, "radial_range_deg"),
        ({"n_radial": 10, "sigma_clip_threshold": 0}, "sigma_clip_threshold"),
        ({"n_radial": 10, "sigma_clip_max_iter": -1}, "sigma_clip_max_iter"),
    ],
)
def test_config_refuses_bad_values(settings, key):
    with pytest.raises(ConfigError, match=f"^integration.{key}:"):
        IntegrationConfig(**settings)
