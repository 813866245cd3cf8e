"""Live XRD-CT analysis behind a non-blocking publisher: frames lost before and after the
receive thread and the back-fill, peak buffer, and the time from the last frame to the volume.

One zigzag scan of the ``small`` preset (19 200 frames of 419 x 368 int32) is run by a
RunEngine in a process of its own with default publishers, which drop frames for a receiver
that falls 100 frames behind, at the simulator's full rate; ``operando record`` records it in
another process, and the XRD-CT analysis consumes it here, twice, in the same way:

- ``inline``: as before (a frame received only when the analysis takes it, no back-fill):
  ``Consumer(max_buffer_bytes=1, backfill=False)``;
- ``buffered``: the defaults: a receive thread into a 2 GiB buffer, and the frames still
  dropped fetched from the recorder's file.

Recorded: frames dropped at the analysis' socket (sequence gaps), patterns interpolated in
the result, frames fetched from the file, the buffer's peak (frames, MB), the scan's frame
rate, and the seconds from the scan's last frame to the final volume on disk.

Results: ``benchmarks/results/live_analysis.json``.
Run: ``python -m benchmarks.benchmark_live_analysis [--preset small]`` (about 6 minutes).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from benchmarks._machine import machine_description, write_results

RESULTS = Path(__file__).parent / "results" / "live_analysis.json"


def scan(preset: str, run_directory: str) -> None:
    """The user's script: a RunEngine, default publishers, one zigzag scan (a subprocess)."""
    from bluesky import RunEngine

    from devices import FrameSink, sim_xrdct_beamline
    from plans import xrdct_zigzag
    from streaming import DocumentPublisher, FramePublisher

    RE = RunEngine({})  # noqa: N806
    with DocumentPublisher("tcp://127.0.0.1:0") as documents, FramePublisher("tcp://127.0.0.1:0") as frames:
        print(documents.address, frames.address, flush=True)
        RE.subscribe(documents)
        documents.wait_for_subscribers(2, timeout_s=120)
        frames.wait_for_subscribers(2, timeout_s=120)
        xrd = sim_xrdct_beamline(preset=preset, sink=FrameSink(frames, run_directory=run_directory))
        RE.subscribe(xrd.sink)
        started = time.time()
        RE(xrdct_zigzag(xrd.pilatus, xrd.translation, xrd.rotation, **xrd.zigzag_kwargs()))
        print(f"{started} {time.time()} {frames.n_sent}", flush=True)  # first and last frame (s), frames


def live_run(preset: str, mode: str, folder: Path) -> dict:
    from streaming.analysis.consumer import Consumer, ConsumerThread
    from streaming.app.analyses import default_analyses
    from streaming.app.config import load_config

    runs, results = folder / "runs", folder / "results"
    runs.mkdir(parents=True)
    config = load_config(None, [f"xrdct.preset={preset!r}", f"out_dir={str(results)!r}"])
    options = {"max_buffer_bytes": 1, "backfill": False} if mode == "inline" else config.live.consumer_options()
    script = subprocess.Popen([sys.executable, "-m", "benchmarks.benchmark_live_analysis", "--scan", preset,
                               str(runs)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    documents, frames = script.stdout.readline().split()
    recorder = subprocess.Popen([sys.executable, "-m", "streaming.app.cli", "record", "--docs", documents,
                                 "--frames", frames, "--out", str(runs)], stdout=subprocess.DEVNULL)  # fmt: skip
    consumer = ConsumerThread(Consumer(default_analyses(config)["xrdct"], document_address=documents,
                                       frame_address=frames, **options))  # fmt: skip
    try:
        first_s, last_s, n_sent = (float(x) for x in script.stdout.readline().split())
        script.wait(timeout=60)
        while not consumer.consumer.finished:
            time.sleep(0.05)
        volume_s = time.time() - last_s
    finally:
        done = consumer.stop(timeout_s=600)
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=120)
    analysis = done.finished[0]
    gaps = done.frames.sequences.counts[(analysis.start["uid"], "pilatus")]
    with h5py.File(analysis.path, "r") as file:
        interpolated = int(file["entry/xrdct"].attrs["patterns_interpolated"])
    delivery = analysis.delivery
    return {
        "frames_sent": int(n_sent),
        "scan_frames_per_s": n_sent / (last_s - first_s),
        "frames_dropped_at_the_socket": int(gaps.missing),
        "frames_from_the_recorders_file": int(sum(delivery.backfilled.values())),
        "patterns_interpolated": interpolated,
        "peak_buffer_frames": int(delivery.peak_backlog_frames),
        "peak_buffer_MB": delivery.peak_buffer_bytes / 1e6,
        "last_frame_to_volume_s": volume_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scan", nargs=2, metavar=("PRESET", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan:
        scan(*args.scan)
        return
    results = {"benchmark": "live_analysis", "machine": machine_description(), "preset": args.preset}
    for mode in ("inline", "buffered"):
        with tempfile.TemporaryDirectory() as folder:
            results[mode] = live_run(args.preset, mode, Path(folder))
        print(mode, {k: round(v, 2) if isinstance(v, float) else v for k, v in results[mode].items()}, flush=True)
    before, after = results["inline"], results["buffered"]
    results["dropped_before_after"] = [before["frames_dropped_at_the_socket"], after["frames_dropped_at_the_socket"]]
    results["interpolated_before_after"] = [before["patterns_interpolated"], after["patterns_interpolated"]]
    results["volume_s_ratio_after_over_before"] = float(np.float64(after["last_frame_to_volume_s"])
                                                        / before["last_frame_to_volume_s"])  # fmt: skip
    write_results(args.out, results)


if __name__ == "__main__":
    main()
