"""Trimmed-mean integration on a GPU (CuPy) against the CPU backend and pyFAI.

Two steps, because the GPU machine has CuPy but neither pyFAI nor the simulators:

- ``--prepare DIR`` (here): full Pilatus2MCdTe frames of the ``paper`` preset, the CSR table of
  :class:`~streaming.processing.integration.AzimuthalReducer` (2000 bins, (5, 95) %), the CPU
  backend's and pyFAI ``medfilt1d_ng``'s results and their times, into ``DIR/inputs.npz``.
- ``--run DIR`` (on the GPU machine): :class:`~streaming.processing.integration.gpu.GpuTrimmedMean`
  on those frames: frames/s (frame already on the device, and from the host), agreement
  with both references; JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

N_RADIAL = 2000
PERCENTILES = (5.0, 95.0)


def prepare(folder: Path, n_frames: int = 4) -> None:
    import numba
    from threadpoolctl import threadpool_limits

    from simulators.xrdct import XrdctSimulation
    from streaming.processing.integration import AzimuthalReducer, IntegrationConfig

    from ._machine import machine_description, median_seconds

    simulation = XrdctSimulation("paper", soc=0.5)
    n_t = simulation.preset.n_translations
    frames = np.stack([simulation.frame(100 + i, (n_t // 4 + 37 * i) % n_t) for i in range(n_frames)])
    config = IntegrationConfig(n_radial=N_RADIAL, percentiles=PERCENTILES, polarization_factor=0.99)
    reducer = AzimuthalReducer.from_integrator(simulation.integrator, None, simulation.mask, config)
    numba.set_num_threads(1)
    cpu = np.stack([reducer.integrate(frame) for frame in frames])
    cpu_s = median_seconds(lambda: reducer.integrate(frames[0]), 5)

    def pyfai(frame):
        return simulation.integrator.medfilt1d_ng(
            frame, N_RADIAL, percentile=PERCENTILES, unit="2th_deg", mask=simulation.mask, polarization_factor=0.99,
            method=("no", "csr", "cython"),
        ).intensity  # fmt: skip

    pyfai(frames[0])
    with threadpool_limits(limits=1):
        reference = np.stack([pyfai(frame) for frame in frames])
        pyfai_s = median_seconds(lambda: pyfai(frames[0]), 3)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / "inputs.npz", frames=frames, indptr=reducer._indptr, pixel_index=reducer._pixel_index,
        normalization=reducer._normalization, cpu=cpu, pyfai=reference, pixels_per_bin=reducer.pixels_per_bin,
        cpu_s=cpu_s, pyfai_s=pyfai_s, machine=json.dumps(machine_description()),
    )  # fmt: skip
    print(f"prepared {folder / 'inputs.npz'}: CPU 1 thread {1 / cpu_s:.1f} frames/s, pyFAI {1 / pyfai_s:.1f}")


def run(folder: Path, out: Path) -> dict:
    import importlib.util

    import cupy

    # the module alone: the package's __init__ needs pyzmq, h5py ..., absent on a bare GPU machine
    path = Path(__file__).parents[1] / "streaming" / "processing" / "integration" / "gpu.py"
    spec = importlib.util.spec_from_file_location("integration_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    GpuTrimmedMean = module.GpuTrimmedMean  # noqa: N806

    data = np.load(folder / "inputs.npz")
    gpu = GpuTrimmedMean(data["indptr"], data["pixel_index"], data["normalization"], percentiles=PERCENTILES)
    frames = data["frames"]
    results = np.stack([gpu.integrate(frame) for frame in frames])
    on_device = cupy.asarray(frames[0])
    timings = {}
    for label, source in (("device_frame", on_device), ("host_frame", frames[0])):
        gpu.integrate(source)
        cupy.cuda.Stream.null.synchronize()
        durations = []
        for _ in range(50):
            started = time.perf_counter()
            gpu.integrate(source)  # returns to the host: synchronised
            durations.append(time.perf_counter() - started)
        timings[label] = 1.0 / float(np.median(durations))
    populated = data["pixels_per_bin"] >= 10

    def agreement(reference: np.ndarray) -> dict:
        relative = np.abs(results - reference)[:, populated] / np.maximum(np.abs(reference)[:, populated], 1e-30)
        return {"bins_within_1e-4": float(np.mean(relative <= 1e-4)), "median_relative": float(np.median(relative)),
                "max_relative": float(relative.max())}  # fmt: skip

    cpu_fps, pyfai_fps = 1 / float(data["cpu_s"]), 1 / float(data["pyfai_s"])
    report = {
        "benchmark": "integration_gpu",
        "cpu_machine": json.loads(str(data["machine"])),
        "gpu": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
        "frame_shape": list(frames.shape[1:]),
        "n_radial": N_RADIAL,
        "percentiles": list(PERCENTILES),
        "frames_per_s": {"gpu_" + k: v for k, v in timings.items()} | {"cpu_numba_1_thread": cpu_fps,
                                                                      "pyfai_medfilt1d_ng_1_thread": pyfai_fps},
        "gpu_ratio_vs_pyfai_1_thread": timings["host_frame"] / pyfai_fps,
        "gpu_ratio_vs_cpu_1_thread": timings["host_frame"] / cpu_fps,
        "agreement_with_cpu_backend": agreement(data["cpu"]),
        "agreement_with_pyfai": agreement(data["pyfai"]),
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", type=Path, metavar="DIR")
    parser.add_argument("--run", type=Path, metavar="DIR")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "integration_gpu.json")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
    elif args.run:
        run(args.run, args.out)
    else:
        print("nothing to do: --prepare DIR here, then --run DIR on a GPU machine (see the module docstring)")


if __name__ == "__main__":
    main()
