"""The demo job: a simulated run streamed, recorded to HDF5, replayed and recorded again.

Everything runs in this process on loopback ports chosen at run time: no server, no
hardware. It shows the foundation end to end and checks its own promise (the replayed
recording is bit-identical to the original) before reporting success.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulators.synthetic import SyntheticDocument, SyntheticRun
from streaming.errors import OperandoStreamError
from streaming.store.recorder import RecorderConfig, RecorderThread
from streaming.store.replay import ReplayConfig, ReplayStats, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentPublisher, FramePublisher

__all__ = ["DemoResult", "publish_synthetic_run", "run_demo"]

logger = logging.getLogger(__name__)

_LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"


@dataclass(frozen=True)
class DemoResult:
    recorded: Path
    rerecorded: Path
    replay_stats: ReplayStats
    stream_s: float


def publish_synthetic_run(
    run: SyntheticRun, documents: DocumentPublisher, frames: FramePublisher,
    after_frame: Callable[[int], None] | None = None,
) -> str:  # fmt: skip
    """Send a synthetic run's documents and frames; returns its run uid. ``after_frame(n)`` is
    called after the n-th frame is sent (a test's hook to act mid-run)."""
    run_uid, n_sent = "", 0
    for message in run.messages():
        if isinstance(message, SyntheticDocument):
            documents(message.name, message.doc)
            if message.name == "start":
                run_uid = message.doc["uid"]
        else:
            frames.publish(
                message.stream,
                message.data,
                run_uid=message.run_uid,
                positions=message.positions,
                indices=message.indices,
                timestamp=message.timestamp,
            )
            n_sent += 1
            if after_frame is not None:
                after_frame(n_sent)
    return run_uid


def _record(out_dir: Path, send) -> tuple[Path, object]:
    with (
        DocumentPublisher(_LOOPBACK_ANY_PORT, block_when_full=True) as documents,
        FramePublisher(_LOOPBACK_ANY_PORT, block_when_full=True) as frames,
    ):
        recorder_thread = RecorderThread(
            RecorderConfig(
                out_dir=out_dir, document_address=documents.address, frame_address=frames.address, linger_s=0.2
            )
        )
        try:
            documents.wait_for_subscribers(1, timeout_s=10)
            frames.wait_for_subscribers(1, timeout_s=10)
            result = send(documents, frames)
            _wait_for_close(recorder_thread, timeout_s=30)
        finally:
            recorder = recorder_thread.stop()
    if len(recorder.files) != 1:
        raise OperandoStreamError(f"expected one run file in {out_dir}, the recorder wrote {len(recorder.files)}")
    return next(iter(recorder.files.values())), result


def _wait_for_close(recorder_thread: RecorderThread, timeout_s: float) -> None:
    # the recorder closes a run once its stop document has lingered; poll for that
    deadline = time.monotonic() + timeout_s
    recorder = recorder_thread.recorder
    while time.monotonic() < deadline:
        if recorder.closed_runs and recorder.idle:
            return
        time.sleep(0.05)
    raise OperandoStreamError(f"the recorder did not close the run within {timeout_s} s")


def run_demo(out_dir: Path, run: SyntheticRun | None = None) -> DemoResult:
    """Stream a synthetic run into a recorder, replay the file into a second recorder, and
    check that both files hold the same documents and bit-identical frames."""
    run = run or SyntheticRun(n_angles=20, n_translations=32, frame_shape=(256, 256))
    out_dir = Path(out_dir)
    started = time.monotonic()
    recorded, _ = _record(out_dir / "recorded", lambda d, f: publish_synthetic_run(run, d, f))
    stream_s = time.monotonic() - started

    def send_replay(documents: DocumentPublisher, frames: FramePublisher) -> ReplayStats:
        with RunFileReader(recorded) as reader:
            return replay(reader, documents, frames, ReplayConfig(speed=None))

    rerecorded, stats = _record(out_dir / "replayed", send_replay)
    _check_identical(recorded, rerecorded)
    return DemoResult(recorded, rerecorded, stats, stream_s)


def _check_identical(first: Path, second: Path) -> None:
    with RunFileReader(first) as a, RunFileReader(second) as b:
        if [d[:2] for d in a.documents()] != [d[:2] for d in b.documents()]:
            raise OperandoStreamError(f"documents of {second} differ from {first}")
        for stream in a.streams:
            if a.n_frames(stream) != b.n_frames(stream):
                raise OperandoStreamError(
                    f"{stream}: {a.n_frames(stream)} frames recorded, {b.n_frames(stream)} replayed"
                )
            for (header_a, data_a, *_), (header_b, data_b, *_) in zip(a.frames(stream), b.frames(stream), strict=True):
                if header_a != header_b or not np.array_equal(data_a, data_b):
                    raise OperandoStreamError(f"frame {header_a.seq} of {stream} differs after replay")
