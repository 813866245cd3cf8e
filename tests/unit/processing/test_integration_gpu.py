"""The whole-array trimmed mean (the GPU backend's code), run with numpy here: it equals the
numba backend; on a CUDA machine with CuPy, the same against the GPU."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.xrdct import XrdctSimulation
from streaming.processing.integration import AzimuthalReducer, GpuTrimmedMean, IntegrationConfig


@pytest.fixture(scope="module")
def reducer_and_frames():
    simulation = XrdctSimulation("tiny", soc=0.5)
    config = IntegrationConfig(n_radial=300, percentiles=(10.0, 90.0), polarization_factor=0.99)
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    frames = [simulation.frame(5, t) for t in (10, 30, 50)]
    return reducer, frames


def backend(reducer, xp):
    return GpuTrimmedMean(reducer._indptr, reducer._pixel_index, reducer._normalization,
                          percentiles=(10.0, 90.0), xp=xp)  # fmt: skip


def test_the_array_code_equals_the_numba_backend_on_raw_counts_and_floats(reducer_and_frames, rng):
    reducer, frames = reducer_and_frames
    array_backend = backend(reducer, np)
    populated = reducer.pixels_per_bin >= 10
    for frame in frames:
        tie_free = np.where(frame >= 0, frame + rng.random(frame.shape) * 0.01, frame)
        for data in (frame, tie_free):
            expected = reducer.integrate(data)
            np.testing.assert_allclose(array_backend.integrate(data)[populated], expected[populated], rtol=1e-6)


def test_on_a_gpu_the_same_code_gives_the_same_result(reducer_and_frames):
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.runtime.getDeviceCount() == 0:
        pytest.skip("no CUDA device")
    reducer, frames = reducer_and_frames
    gpu = backend(reducer, cupy)
    populated = reducer.pixels_per_bin >= 10
    for frame in frames:
        np.testing.assert_allclose(gpu.integrate(frame)[populated], reducer.integrate(frame)[populated], rtol=1e-6)
