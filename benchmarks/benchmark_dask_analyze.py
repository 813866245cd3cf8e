"""``operando analyze --dask`` with 1 and 2 worker processes beside plain ``operando analyze``,
the same recorded run, in one benchmark run; and a model of a paper-size scan on N cores.

The run is an operando XRD-CT run of the ``small`` preset made by the main job (or ``--run
FILE``). Each variant is the command as a user runs it (its own process; the Dask variants
start their LocalCluster, which the wall time includes), ``--repeats`` times in turn; the
medians are recorded as frames/s over the run's frames, with the scaling efficiency of 2
workers over 1.

The model of a paper-size scan (549 translations x 400 angles = 219 600 full Pilatus 2M
frames, measured in ~37 min at 10 ms per frame) takes the per-frame costs measured on this
machine class by the other benchmarks: the trimmed-mean kernel on a full frame, one thread
(``results/xrdct_processing.json``), and reading a recorded full frame from its file
(``results/recorder.json``, replay as fast as possible), and the reduction's tasks timed here
on the run's own first scan, one thread: its reconstruction (per line, pixel and radial
channel) and its maps (per voxel and radial channel), scaled to the paper's 549 x 549 voxels
x 2000 channels. It says how many single-thread worker processes reprocess the scan in less
time than it took to measure.

Results: ``benchmarks/results/dask_analyze.json``.
Run: ``python -m benchmarks.benchmark_dask_analyze [--run FILE] [--repeats N]`` (~10 min on
2 cores with the small preset's two scans).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (the results' filters)
import numba

from benchmarks._machine import machine_description, write_results

RESULTS = Path(__file__).parent / "results" / "dask_analyze.json"
OPERANDO = [sys.executable, "-m", "streaming.app.cli"]
PAPER_FRAMES = 549 * 400
PAPER_VOXELS, PAPER_CHANNELS = 549 * 549, 2000
MEASURED_IN_S = PAPER_FRAMES * 0.010  # the scan's exposures alone


def make_run(folder: Path, preset: str) -> Path:
    subprocess.run([*OPERANDO, "demo", "xrdct", "--preset", preset, "-q", "--out", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    (run,) = (path for path in folder.glob("*.h5") if path.suffixes == [".h5"])
    return run


def timed(args: list[str], out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([*OPERANDO, "analyze", *args, "-q", "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def reduction_costs(results: Path, preset: str) -> dict[str, float]:
    """Seconds of one thread per unit of the reduction's tasks, timed on the first scan of
    ``results`` (the run's analysis): FBP per line x pixel x channel, maps per voxel x channel."""
    from simulators.references import aaa_cell_maps_config
    from streaming.processing.fbp import reconstruct
    from streaming.processing.maps import compute_maps

    with h5py.File(results, "r") as file:
        group = file["entry/xrdct"]
        sinogram, radial = group["sinogram"][0], group["radial"][()]
        angles, wavelength = group["angles"][()], float(group.attrs["wavelength_angstrom"])
        centre = float(group["reconstruction_center_px"][0])
    maps_config = aaa_cell_maps_config(preset=preset)  # the main job's
    numba.set_num_threads(1)  # as a Dask worker of the LocalCluster runs it
    started = time.perf_counter()
    volume = reconstruct(sinogram, angles, center_px=centre)
    fbp_s = time.perf_counter() - started
    started = time.perf_counter()
    compute_maps(volume, radial, maps_config, wavelength_angstrom=wavelength)
    maps_s = time.perf_counter() - started
    n_angles, n_pixels, n_channels = sinogram.shape
    return {"fbp_s_per_line_pixel_channel": fbp_s / (n_angles * n_pixels**2 * n_channels),
            "maps_s_per_voxel_channel": maps_s / (n_pixels**2 * n_channels), "fbp_s": fbp_s, "maps_s": maps_s,
            "timed_on": f"{n_angles} angles x {n_pixels}^2 voxels x {n_channels} channels, 1 thread"}  # fmt: skip


def paper_model(efficiency: float, reduction: dict[str, float]) -> dict[str, float]:
    """Cores that reprocess a paper-size scan within the time it took to measure."""
    here = Path(__file__).parent / "results"
    kernel = json.loads((here / "xrdct_processing.json").read_text())
    recorder = json.loads((here / "recorder.json").read_text())
    integrate_fps = float(kernel["integration"]["frames_per_s"]["ours_1_threads"])
    read_fps = float(recorder["detectors"]["pilatus"]["frames_per_s"]["replay"])
    per_frame_s = 1 / integrate_fps + 1 / read_fps  # a worker reads and integrates its frames
    fbp_s = reduction["fbp_s_per_line_pixel_channel"] * 400 * PAPER_VOXELS * PAPER_CHANNELS
    maps_s = reduction["maps_s_per_voxel_channel"] * PAPER_VOXELS * PAPER_CHANNELS
    core_seconds = (PAPER_FRAMES * per_frame_s + fbp_s + maps_s) / efficiency
    return {
        "integrate_full_frame_1_thread_fps": integrate_fps,
        "read_full_frame_fps": read_fps,
        "worker_seconds_per_frame": per_frame_s,
        "integration_core_hours": PAPER_FRAMES * per_frame_s / 3600,
        "reconstruction_core_hours": fbp_s / 3600,
        "maps_core_hours": maps_s / 3600,
        "core_hours_per_scan": core_seconds / 3600,
        "measurement_minutes": MEASURED_IN_S / 60,
        "workers_to_keep_up": core_seconds / MEASURED_IN_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a recorded XRD-CT run (default: made with the main job)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    variants = {"analyze": [], "dask_1_worker": ["--dask", "--dask-workers", "1"],
                "dask_2_workers": ["--dask", "--dask-workers", "2"]}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        run = args.run or make_run(Path(folder) / "run", args.preset)
        summary = subprocess.run([*OPERANDO, "info", "--json", str(run)], check=True, capture_output=True, text=True)
        n_frames = sum(stream["n_frames"] for stream in json.loads(summary.stdout)[0]["streams"])
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for repeat in range(args.repeats):
            for name, extra in variants.items():
                seconds[name].append(timed([str(run), *extra], Path(folder) / f"{name}{repeat}"))
                print(name, f"{seconds[name][-1]:.1f} s", flush=True)
        (results_file,) = (Path(folder) / "dask_2_workers0").glob("*.xrdct.h5")
        reduction = reduction_costs(results_file, args.preset)
    fps = {name: n_frames / statistics.median(values) for name, values in seconds.items()}
    efficiency = fps["dask_2_workers"] / (2 * fps["dask_1_worker"])
    results = {
        "benchmark": "dask_analyze",
        "machine": machine_description(),
        "run": str(run),
        "frames": n_frames,
        "seconds": seconds,
        "frames_per_s": fps,
        "ratio_dask_2_workers_over_analyze": fps["dask_2_workers"] / fps["analyze"],
        "ratio_dask_1_worker_over_analyze": fps["dask_1_worker"] / fps["analyze"],
        "scaling_efficiency_2_over_1": efficiency,
        "reduction_task_costs": reduction,
        "paper_scan_model": paper_model(min(1.0, efficiency), reduction),
    }
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    write_results(args.out, results)


if __name__ == "__main__":
    main()
