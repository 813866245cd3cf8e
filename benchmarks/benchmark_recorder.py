"""Recorder and replay throughput, side by side with their ceilings, in one run.

For each detector (Pilatus3 X CdTe 2M: 1679 x 1475 int32 Poisson counts on powder rings;
HEXITEC: 80 x 80 uint16 at 1 % occupancy, one frame per message, and ``hexitec_batches``: the
same frames 1000 per message, as the simulated HEXITEC and its IOC send them) it measures, over
TCP loopback:

- ``transport``: frames/s a plain subscriber receives and validates (the socket ceiling);
- ``h5py_direct``: frames/s h5py + hdf5plugin write the same frames, same filter, one frame
  per chunk, with no transport (the reference tool: the disk and compression ceiling);
- ``recorder``: frames/s the recorder sustains end to end (a separate process receiving,
  validating and writing SWMR HDF5), with the publisher waiting at the high-water mark so
  nothing is dropped;
- ``replay``: frames/s ``replay`` re-emits the recorded file as fast as possible.

Each figure is the median of ``--repeats`` runs; ratios are recorder / reference. Results go
to ``benchmarks/results/recorder.json``. Run: ``python -m benchmarks.benchmark_recorder``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from benchmarks._machine import machine_description, write_results
from simulators.synthetic import ring_pattern_frames
from streaming.store.chunks import compression_filter
from streaming.store.recorder import Recorder, RecorderConfig
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentPublisher, FramePublisher, FrameSubscriber

LOOPBACK = "tcp://127.0.0.1:0"
RESULTS = Path(__file__).parent / "results" / "recorder.json"
PILATUS_2M = (1679, 1475)
HEXITEC = (80, 80)
PAPER_FRAME_RATE_HZ = {"pilatus": 100.0, "hexitec": 9118.87}  # 10 ms exposure; HEXITEC frame rate
BATCH = {"hexitec_batches": ("hexitec", 1000)}  # a configuration: (its detector, frames per message)


def detector_frames(detector: str, n_distinct: int = 8) -> list[np.ndarray]:
    """A few distinct realistic frames, cycled by the senders (generation is not measured)."""
    rng = np.random.default_rng(123)
    if detector == "pilatus":
        rings = ring_pattern_frames(PILATUS_2M, np.array([250.0, 410.0, 520.0, 700.0]), width_px=2.0)
        expected = 0.5 + 20.0 * rings.sum(axis=0)
        return [rng.poisson(expected).astype("<i4") for _ in range(n_distinct)]
    frames = []
    for _ in range(n_distinct):
        frame = np.zeros(HEXITEC, "<u2")
        hits = rng.random(HEXITEC) < 0.01
        frame[hits] = rng.integers(200, 4000, hits.sum())
        frames.append(frame)
    return frames


def _subscriber_process(address: str, n_frames: int, out: mp.Queue) -> None:
    with FrameSubscriber(address) as subscriber:
        out.put("ready")
        first = subscriber.recv(timeout_s=60)
        started = time.perf_counter()
        received = first.header.n_frames if first is not None else 0
        while received < n_frames and (frame := subscriber.recv(timeout_s=10)) is not None:
            received += frame.header.n_frames
        out.put((received, time.perf_counter() - started))


def _recorder_process(config: RecorderConfig, out: mp.Queue) -> None:
    recorder = Recorder(config)
    out.put("ready")
    while not (recorder.closed_runs and recorder.idle):  # the run's stop came and lingered
        recorder.poll(0.1)
    recorder.close()
    out.put([str(path) for path in recorder.files.values()])


def send_frames(frames: FramePublisher, detector: str, images: list[np.ndarray], n_frames: int, run_uid: str, *,
                batch: int = 1) -> None:  # fmt: skip
    """``n_frames`` of ``images`` cycled, ``batch`` per message (the first axis, counted by ``i``)."""
    if batch == 1:
        for i in range(n_frames):
            frames.publish(detector, images[i % len(images)], run_uid=run_uid, indices={"i": i})
        return
    stack = np.stack([images[i % len(images)] for i in range(batch)])  # made once: generation is not measured
    for first in range(0, n_frames, batch):
        n = min(batch, n_frames - first)
        frames.publish(detector, stack[:n], run_uid=run_uid, indices={"i": first}, counter="i",
                       timestamps=(time.time() + np.arange(n) / PAPER_FRAME_RATE_HZ[detector]).tolist())  # fmt: skip


def bench_transport(detector: str, images: list[np.ndarray], n_frames: int, batch: int = 1) -> float:
    context = mp.get_context("spawn")
    queue = context.Queue()
    with FramePublisher(LOOPBACK, block_when_full=True) as frames:
        process = context.Process(target=_subscriber_process, args=(frames.address, n_frames, queue))
        process.start()
        queue.get(timeout=60)
        frames.wait_for_subscribers(1, 60)
        send_frames(frames, detector, images, n_frames, "transport", batch=batch)
        received, elapsed = queue.get(timeout=600)
        process.join(60)
    assert received == n_frames, f"{received} of {n_frames} frames arrived"
    return (n_frames - batch) / elapsed  # timed from the first message's arrival


def bench_h5py_direct(detector: str, images: list[np.ndarray], n_frames: int, tmp: Path, batch: int = 1) -> float:
    shape = images[0].shape
    path = tmp / f"direct_{detector}.h5"
    with h5py.File(path, "w", libver="latest") as file:
        dataset = file.create_dataset(
            "data",
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(1, *shape),
            dtype=images[0].dtype,
            **compression_filter("bitshuffle-lz4"),
        )
        file.swmr_mode = True
        stack = np.stack([images[i % len(images)] for i in range(batch)])
        started = time.perf_counter()
        for first in range(0, n_frames, batch):  # a batch's rows in one write, as the recorder's
            n = min(batch, n_frames - first)
            dataset.resize(first + n, axis=0)
            dataset[first : first + n] = stack[:n] if batch > 1 else images[first % len(images)]
        file.flush()
        elapsed = time.perf_counter() - started
    path.unlink()
    return n_frames / elapsed


def bench_recorder(detector: str, images: list[np.ndarray], n_frames: int, tmp: Path,
                   batch: int = 1) -> tuple[float, float, Path]:  # fmt: skip
    context = mp.get_context("spawn")
    queue = context.Queue()
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        config = RecorderConfig(
            out_dir=tmp, document_address=documents.address, frame_address=frames.address, linger_s=0.5
        )
        process = context.Process(target=_recorder_process, args=(config, queue))
        process.start()
        queue.get(timeout=60)
        documents.wait_for_subscribers(1, 60)
        frames.wait_for_subscribers(1, 60)
        run_uid = f"bench-{detector}-{time.time_ns()}"
        documents("start", {"uid": run_uid, "time": time.time(), "plan_name": "benchmark"})
        send_frames(frames, detector, images, n_frames, run_uid, batch=batch)
        documents(
            "stop", {"uid": f"{run_uid}-stop", "run_start": run_uid, "time": time.time(), "exit_status": "success"}
        )
        (path,) = queue.get(timeout=600)
        process.join(60)
    with RunFileReader(path) as reader:
        (stream,) = reader.summary().streams
        recv_time = reader.entry[f"instrument/{detector}/recv_time"][:]
    assert stream.n_frames == n_frames and stream.missing == 0, stream
    # a batch's frames share their message's receipt time: from the first message's to the last's
    return (n_frames - batch) / float(recv_time[-1] - recv_time[0]), stream.compression_ratio, Path(path)


def bench_replay(path: Path, n_frames: int) -> float:
    context = mp.get_context("spawn")
    queue = context.Queue()
    with (
        RunFileReader(path) as reader,
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        process = context.Process(target=_subscriber_process, args=(frames.address, n_frames, queue))
        process.start()
        queue.get(timeout=60)
        frames.wait_for_subscribers(1, 60)
        stats = replay(reader, documents, frames, ReplayConfig(speed=None))
        received, _ = queue.get(timeout=600)
        process.join(60)
    assert received == n_frames
    return stats.frames_sent / stats.elapsed_s


def run(detectors: dict[str, int], repeats: int) -> dict:
    results: dict = {
        "benchmark": "recorder",
        "machine": machine_description(),
        "repeats": repeats,
        "statistic": "median",
        "detectors": {},
    }
    for configuration, n_frames in detectors.items():
        detector, batch = BATCH.get(configuration, (configuration, 1))
        images = detector_frames(detector)
        frame_mb = images[0].nbytes / 1e6
        samples: dict[str, list[float]] = {"transport": [], "h5py_direct": [], "recorder": [], "replay": []}
        ratios = []
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            for _ in range(repeats):
                samples["transport"].append(bench_transport(detector, images, n_frames, batch))
                samples["h5py_direct"].append(bench_h5py_direct(detector, images, n_frames, tmp, batch))
                fps, ratio, path = bench_recorder(detector, images, n_frames, tmp, batch)
                samples["recorder"].append(fps)
                ratios.append(ratio)
                samples["replay"].append(bench_replay(path, n_frames))
                path.unlink()
        fps = {name: statistics.median(values) for name, values in samples.items()}
        results["detectors"][configuration] = {
            "frames_per_message": batch,
            "frame_shape": list(images[0].shape),
            "dtype": images[0].dtype.str,
            "frame_MB": frame_mb,
            "n_frames": n_frames,
            "frames_per_s": fps,
            "raw_MB_per_s": {name: value * frame_mb for name, value in fps.items()},
            "samples_frames_per_s": samples,
            "compression_ratio": statistics.median(ratios),
            "recorder_over_h5py_direct": fps["recorder"] / fps["h5py_direct"],
            "recorder_over_transport": fps["recorder"] / fps["transport"],
            "recorder_over_detector_rate": fps["recorder"] / PAPER_FRAME_RATE_HZ[detector],
            "detector_rate_hz": PAPER_FRAME_RATE_HZ[detector],
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pilatus-frames", type=int, default=300)
    parser.add_argument("--hexitec-frames", type=int, default=20000)
    parser.add_argument("--hexitec-batch-frames", type=int, default=300_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = run({"pilatus": args.pilatus_frames, "hexitec": args.hexitec_frames,
                   "hexitec_batches": args.hexitec_batch_frames}, args.repeats)  # fmt: skip
    for detector, figures in results["detectors"].items():
        fps = figures["frames_per_s"]
        print(
            f"{detector:15s} transport {fps['transport']:8.0f}  h5py direct {fps['h5py_direct']:8.0f}  "
            f"recorder {fps['recorder']:8.0f}  replay {fps['replay']:8.0f} frames/s  "
            f"recorder/h5py {figures['recorder_over_h5py_direct']:.2f}  "
            f"recorder/detector rate {figures['recorder_over_detector_rate']:.2f}  "
            f"compression {figures['compression_ratio']:.1f}x"
        )
    write_results(args.out, results)


if __name__ == "__main__":
    main()
