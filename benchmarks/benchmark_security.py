"""What security and hostile input cost on the frame channel, each beside its baseline in one run.

- ``curve``: frames/s a subscriber in another process receives and validates over TCP
  loopback, plain and with CURVE (:mod:`streaming.wire.security`: every message encrypted and
  authenticated), for Pilatus3 X 2M frames (9.9 MB), single HEXITEC frames (12.8 kB) and
  HEXITEC batches of 1000 (12.8 MB, as the simulated detector sends them).
- ``flood``: a valid Pilatus run recorded (the recorder in its own process, writing SWMR
  HDF5) alone, and with 10^5 malformed messages interleaved on the same channel (each
  rejected by the field at fault and counted); every valid frame must be recorded. Twice:
  ``paced``, the run at the detector's 100 Hz as a beamline sends it (the run's recording
  time and each frame's latency from its time stamp to its receipt), and ``unpaced``, as fast
  as the recorder takes it (its throughput: what the flood costs per message).

Each figure is the median of ``--repeats`` runs; ratios are against the baseline of the same
run. Results go to ``benchmarks/results/security.json``.
Run: ``python -m benchmarks.benchmark_security``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from itertools import cycle
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from benchmarks._machine import machine_description, write_results
from benchmarks.benchmark_recorder import (
    LOOPBACK,
    PAPER_FRAME_RATE_HZ,
    _recorder_process,
    _subscriber_process,
    detector_frames,
)
from streaming.store.recorder import RecorderConfig
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import FrameHeader, encode_frame
from streaming.wire.security import Security, make_keys, use_security
from streaming.wire.transport import DocumentPublisher, FramePublisher

RESULTS = Path(__file__).parent / "results" / "security.json"
HEXITEC_BATCH = 1000


def _secured(security: Security, target: Any, *args: Any) -> None:
    use_security(security)
    target(*args)


def _send(frames: FramePublisher, detector: str, images: list[np.ndarray], n_messages: int, run_uid: str, *,
          batch: int) -> None:  # fmt: skip
    for i in range(n_messages):
        if batch == 1:
            frames.publish(detector, images[i % len(images)], run_uid=run_uid, indices={"i": i})
        else:
            stacked = np.stack([images[(i + k) % len(images)] for k in range(batch)])
            frames.publish(detector, stacked, run_uid=run_uid, timestamps=[time.time()] * batch, counter="i",
                           indices={"i": i * batch})  # fmt: skip


def bench_transport(security: Security, detector: str, images: list[np.ndarray], n_messages: int,
                    batch: int) -> float:  # fmt: skip
    """Frames/s (a batch counts its frames) a subscriber process receives."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    use_security(security)
    try:
        with FramePublisher(LOOPBACK, block_when_full=True) as frames:
            process = context.Process(target=_secured, args=(security, _subscriber_process, frames.address,
                                                             n_messages, queue))  # fmt: skip
            process.start()
            queue.get(timeout=60)
            frames.wait_for_subscribers(1, 60)
            _send(frames, detector, images, n_messages, "transport", batch=batch)
            received, elapsed = queue.get(timeout=600)
            process.join(60)
    finally:
        use_security(Security())
    assert received == n_messages, f"{received} of {n_messages} messages arrived"
    return (n_messages - 1) * batch / elapsed


def _malformed() -> cycle:
    header = FrameHeader(run_uid="r", stream="pilatus", seq=0, dtype="<u2", shape=(4, 4), timestamp=1.0)
    topic, packed = (bytes(part) for part in encode_frame(header, np.zeros((4, 4), "<u2"))[:2])
    return cycle([[topic], [topic, b"\xc1 not msgpack", b"\0" * 32], [topic, packed, b"\0" * 7],
                  [topic, msgpack.packb({"proto": 99}), b""]])  # fmt: skip


def bench_recorder(images: list[np.ndarray], n_frames: int, n_malformed: int, tmp: Path, *,
                   rate_hz: float | None) -> dict[str, float]:  # fmt: skip
    """A Pilatus run recorded with ``n_malformed`` messages between its frames, sent at
    ``rate_hz`` (None: as fast as the recorder takes them): its frames/s from the first frame's
    receipt to the last's, and the frames' latency (median, 99th percentile), s."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    flood, per_frame = _malformed(), n_malformed // n_frames
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        config = RecorderConfig(out_dir=tmp, document_address=documents.address, frame_address=frames.address,
                                linger_s=0.5)  # fmt: skip
        process = context.Process(target=_recorder_process, args=(config, queue))
        process.start()
        queue.get(timeout=60)
        documents.wait_for_subscribers(1, 60)
        frames.wait_for_subscribers(1, 60)
        run_uid = f"flood-{time.time_ns()}"
        documents("start", {"uid": run_uid, "time": time.time(), "plan_name": "benchmark"})
        started = time.perf_counter()
        for i in range(n_frames):
            if rate_hz is not None:
                time.sleep(max(0.0, started + i / rate_hz - time.perf_counter()))
            frames.publish("pilatus", images[i % len(images)], run_uid=run_uid, indices={"i": i})
            for _ in range(per_frame):
                frames.socket.send_multipart(next(flood))
        documents("stop", {"uid": f"{run_uid}-stop", "run_start": run_uid, "time": time.time(),
                           "exit_status": "success"})  # fmt: skip
        (path,) = queue.get(timeout=600)
        process.join(60)
    with RunFileReader(path) as reader:
        (stream,) = reader.summary().streams
        recv_time = reader.entry["instrument/pilatus/recv_time"][:]
        latency_s = recv_time - reader.entry["instrument/pilatus/timestamp"][:]
        rejected = sum(reader.summary().invalid_messages.values())
    Path(path).unlink()
    assert stream.n_frames == n_frames and stream.missing == 0, stream
    assert rejected == per_frame * n_frames, f"{rejected} rejections counted of {per_frame * n_frames}"
    return {
        "frames_per_s": (n_frames - 1) / float(recv_time[-1] - recv_time[0]),
        "latency_median_s": float(np.median(latency_s)),
        "latency_p99_s": float(np.percentile(latency_s, 99)),
    }


def run(repeats: int, pilatus_frames: int, hexitec_frames: int, n_malformed: int) -> dict:
    results: dict = {"benchmark": "security", "machine": machine_description(), "repeats": repeats,
                     "statistic": "median", "curve": {}, "flood": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_keys(tmp / "keys")
        curve = Security(keys=tmp / "keys")
        cases = {"pilatus": ("pilatus", pilatus_frames, 1), "hexitec": ("hexitec", hexitec_frames, 1),
                 "hexitec_batch_1000": ("hexitec", hexitec_frames // HEXITEC_BATCH * 5, HEXITEC_BATCH)}  # fmt: skip
        for name, (detector, n_messages, batch) in cases.items():
            images = detector_frames(detector)
            samples: dict[str, list[float]] = {"plain": [], "curve": []}
            for _ in range(repeats):  # alternated, so that the machine's drift touches both
                samples["plain"].append(bench_transport(Security(), detector, images, n_messages, batch))
                samples["curve"].append(bench_transport(curve, detector, images, n_messages, batch))
            fps = {key: statistics.median(values) for key, values in samples.items()}
            mb = images[0].nbytes * batch / 1e6
            results["curve"][name] = {
                "message_MB": mb, "frames_per_message": batch, "n_messages": n_messages, "frames_per_s": fps,
                "MB_per_s": {key: value / batch * mb for key, value in fps.items()},
                "samples_frames_per_s": samples, "ratio_curve_over_plain": fps["curve"] / fps["plain"],
                "ratio_curve_over_detector_rate": fps["curve"] / PAPER_FRAME_RATE_HZ[detector],
            }  # fmt: skip
        images = detector_frames("pilatus")
        results["flood"] = {"detector": "pilatus", "n_frames": pilatus_frames, "n_malformed": n_malformed}
        for pace, rate_hz in (("paced", PAPER_FRAME_RATE_HZ["pilatus"]), ("unpaced", None)):
            runs: dict[str, list[dict[str, float]]] = {"clean": [], "flooded": []}
            for _ in range(repeats):
                runs["clean"].append(bench_recorder(images, pilatus_frames, 0, tmp, rate_hz=rate_hz))
                runs["flooded"].append(bench_recorder(images, pilatus_frames, n_malformed, tmp, rate_hz=rate_hz))
            medians = {key: {figure: statistics.median(run[figure] for run in values) for figure in values[0]}
                       for key, values in runs.items()}  # fmt: skip
            clean, flooded = medians["clean"]["frames_per_s"], medians["flooded"]["frames_per_s"]
            results["flood"][pace] = {
                "sent_at_hz": rate_hz, "median": medians, "samples": runs, "slowdown": 1 - flooded / clean,
                "ratio_flooded_over_clean": flooded / clean,
            }  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pilatus-frames", type=int, default=300)
    parser.add_argument("--hexitec-frames", type=int, default=20000)
    parser.add_argument("--malformed", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = run(args.repeats, args.pilatus_frames, args.hexitec_frames, args.malformed)
    for name, figures in results["curve"].items():
        fps = figures["frames_per_s"]
        print(f"{name:20s} plain {fps['plain']:9.0f}  CURVE {fps['curve']:9.0f} frames/s  "
              f"CURVE/plain {figures['ratio_curve_over_plain']:.2f}")  # fmt: skip
    flood = results["flood"]
    for pace in ("paced", "unpaced"):
        figures = flood[pace]["median"]
        print(f"recorder, Pilatus {pace}: clean {figures['clean']['frames_per_s']:.0f} frames/s (latency "
              f"{figures['clean']['latency_median_s'] * 1e3:.1f} ms), with {flood['n_malformed']} malformed "
              f"{figures['flooded']['frames_per_s']:.0f} frames/s ({figures['flooded']['latency_median_s'] * 1e3:.1f}"
              f" ms): slowdown {flood[pace]['slowdown']:.1%}")  # fmt: skip
    write_results(args.out, results)


if __name__ == "__main__":
    main()
