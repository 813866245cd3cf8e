"""The recorder: the system of record, one HDF5 file per run.

- :class:`RecorderConfig`: validated settings (defined in :mod:`.recorderconfig`).
- :class:`Recorder`: subscribes to the document and frame channels and writes every valid
  message that reaches it into its run's file (:class:`~streaming.store.runfile.RunFileWriter`),
  in arrival order. Invalid messages and sequence gaps are counted into
  ``/entry/diagnostics`` and logged; they never stop it.
- :class:`RecorderThread`: runs a recorder in a background thread (demo, tests).
- :func:`run_file_name`: the name of a run's file (defined in :mod:`.filenames`).

Routing (:class:`~streaming.store.routing.RunRouter`): a start document opens its run's file;
descriptors, resources and stream resources are routed by their ``run_start``; events, datums
and stream datums by the document they point to; frames by ``run_uid`` in their header.
Frames that arrive before their start document wait (bounded by time and by their total
bytes) and are written once it comes, or into a file of their own. After a stop document the
file stays open ``linger_s`` seconds for late frames; a frame or document that arrives later
still reopens the file and is appended, never dropped (a frame waits ``pending_timeout_s``
first, in case its run is being sent again and its start document is still on its way). A
start document for a run already recorded and closed (a replay of it) starts a new file. A
message that cannot be written is logged and counted (``write_errors``); it does not end the
recording. When the storage is full (no space, a quota, a file-size limit) a run's file is
closed where it stands, readable up to its last flush, and what comes for the run afterwards
is counted as lost (``storage_full``), not written; other runs go on. When a run's file
closes, the recorder confirms to the publishers what it recorded of the run (documents,
frames per stream; :mod:`streaming.wire.receipts`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from streaming.wire.diagnostics import SequenceTracker
from streaming.wire.protocol import Frame
from streaming.wire.receipts import receiver_name
from streaming.wire.receiver import Receiver
from streaming.wire.transport import DocumentSubscriber, FrameSubscriber

from .filenames import run_file_name
from .recorderconfig import RecorderConfig
from .routing import RunRouter
from .runfile import RunFileWriter
from .storage import StorageFull, is_storage_full, readable

__all__ = ["Recorder", "RecorderConfig", "RecorderThread", "StorageFull", "run_file_name"]

logger = logging.getLogger(__name__)

_PER_POLL = 1000  # messages recorded per poll at most


@dataclass(frozen=True)
class _Rejections:
    """Rejected-message counts: by channel and field, and frames by the stream they name."""

    by_field: Counter[str]
    by_stream: Counter[str]

    def __sub__(self, earlier: _Rejections) -> _Rejections:
        return _Rejections(self.by_field - earlier.by_field, self.by_stream - earlier.by_stream)


@dataclass
class _Recorded:
    """What a run's file holds, for the run's receipt (continued when a file is reopened)."""

    documents: int = 0
    frames: Counter[str] = field(default_factory=Counter)


@dataclass
class _OpenRun:
    writer: RunFileWriter
    rejections_at_open: _Rejections
    last_activity: float
    stopped: bool = False


class Recorder:
    """Record documents and frames into one SWMR HDF5 file per run.

    Parameters
    ----------
    config : RecorderConfig
    context : zmq.Context, optional
    clock : callable
        Receipt time stamps, seconds since the epoch.
    monotonic : callable
        Clock of the timers (flush, linger, pending), seconds.

    The sockets connect and subscribe in the constructor, so once it returns (and the
    publishers' ``wait_for_subscribers`` does) no message is lost to a slow join. Call
    :meth:`poll` in a loop, or :meth:`run`, then :meth:`close`.
    """

    def __init__(
        self,
        config: RecorderConfig,
        *,
        context: zmq.Context | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        config.out_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock  # receipt time stamps (s since the epoch)
        self._monotonic = monotonic  # timers: linger, pending, flush (immune to clock steps)
        name = receiver_name("recorder")
        self.documents = DocumentSubscriber(config.document_address, context=context, receiver=name)
        # sequence gaps are counted here, in the order messages are recorded (a run sent again
        # restarts its count when its start document is handled, not when it is received)
        self.frames = FrameSubscriber(config.frame_address, context=context, hwm=config.frame_hwm,
                                      max_frame_bytes=config.max_frame_bytes, receiver=name,
                                      track_sequence=False)  # fmt: skip
        self.sequences = SequenceTracker()
        self._gap_events = 0
        # a thread keeps the sockets empty while this one compresses and writes: a burst (the
        # PCO's projections between HEXITEC batches) costs buffer, not frames
        self.receiver = Receiver(self.documents, self.frames, max_bytes=config.buffer_bytes, clock=clock).start()
        self._runs: dict[str, _OpenRun] = {}
        self._router = RunRouter()
        self._arrival = 0
        self._last_flush = monotonic()
        self.write_errors = 0
        #: Runs whose storage filled up, by uid (:class:`StorageFull`).
        self.storage_full: dict[str, StorageFull] = {}
        self._arrived: defaultdict[str, Counter[str]] = defaultdict(Counter)  # frames, documents: per run
        self._writing: str | None = None  # the run whose file is being written
        #: Every run seen, by uid, and the path of its file.
        self.files: dict[str, Path] = {}
        #: uids of the runs whose files are closed (complete on disk).
        self.closed_runs: set[str] = set()
        # rejected-message counts when each run opened; kept (with the sequence counters) after
        # a run closes, so that a reopened file's diagnostics continue rather than restart
        self._rejections_at_open: dict[str, _Rejections] = {}
        self._recorded: dict[str, _Recorded] = {}
        self.unroutable_documents = 0
        self.closed = False
        self.failure: BaseException | None = None

    # -- main loop ------------------------------------------------------------------------

    def poll(self, timeout_s: float = 0.1) -> int:
        """Wait up to ``timeout_s`` for messages, record those received; return how many."""
        if self.receiver.failure is not None:
            raise RuntimeError("the recorder's receive thread failed") from self.receiver.failure
        n = 0
        received = self.receiver.get(timeout_s)
        while received is not None:
            n += 1
            kind, item, recv_time = received
            try:
                if kind == "frame":
                    self._on_frame(item, recv_time)
                else:
                    self._on_document(*item, recv_time)
            except OSError as error:
                if not self._storage_is_full(error):
                    self._count_write_error(error)
            except Exception as error:  # one message that cannot be written must not end the recording
                self._count_write_error(error)
            if n >= _PER_POLL:  # the flushes and closes of housekeeping come too
                break
            received = self.receiver.get(0)
        self._when_storage_fills(self._housekeeping)
        return n

    def _count_write_error(self, error: Exception) -> None:
        self.write_errors += 1
        if self.write_errors in (1, 10, 100) or self.write_errors % 1000 == 0:
            logger.error("could not record a message (#%d)", self.write_errors, exc_info=error)

    def _storage_is_full(self, error: OSError) -> bool:
        """If ``error`` says the storage is full, the run whose file was being written can grow
        no more: close its file where it stands, count from now on what comes for it (True)."""
        run_uid = self._writing
        if not is_storage_full(error) or run_uid is None:
            return False
        run = self._runs.pop(run_uid, None)
        if run is not None:
            run.writer.abandon()
        self.closed_runs.add(run_uid)
        path = self.files.get(run_uid)
        self.storage_full[run_uid] = StorageFull(path, os.strerror(error.errno), *readable(path))
        self.write_errors += 1
        logger.error("run %s: storage full writing %s (%s); recording of this run stopped, what comes for it is "
                     "counted as lost", run_uid, path, os.strerror(error.errno))  # fmt: skip
        return True

    def _when_storage_fills(self, action: Callable[..., object], *args: object) -> None:
        """``action(*args)``, a full storage under it ending the recording of one run only."""
        try:
            action(*args)
        except OSError as error:
            if not self._storage_is_full(error):
                raise

    def storage_full_lines(self) -> list[str]:
        """One line per run whose storage filled: where, why, and what of the run was lost."""
        return [full.line(uid, self._arrived[uid]) for uid, full in self.storage_full.items()]

    def run(self, stop: threading.Event) -> None:
        """Record until ``stop`` is set, then record what already arrived and :meth:`close`."""
        try:
            while not stop.is_set():
                self.poll(0.1)
            self.receiver.stop()  # nothing more comes in; what came is recorded below
            while self.poll(0.0):
                pass
        finally:
            self.close()

    @property
    def idle(self) -> bool:
        """True when every run seen has its file closed and no frames wait for a start."""
        return not self._runs and not self._router.pending

    def _next_arrival(self) -> int:
        self._arrival += 1
        return self._arrival - 1

    # -- documents ------------------------------------------------------------------------

    def _on_document(self, name: str, doc: dict[str, Any], now: float) -> None:
        run_uid = self._writing = self._router.route(name, doc)
        if run_uid is not None:
            self._arrived[run_uid]["documents"] += 1
            if run_uid in self.storage_full:
                return  # counted: its file is closed
        if run_uid is None:
            self.unroutable_documents += 1
            logger.warning("%s document %s belongs to no run this recorder saw start", name, doc.get("uid"))
            return
        if name == "start" and run_uid in self.closed_runs and run_uid not in self._runs:
            # the run is being sent again (a replay): a new recording, in a new file
            logger.info("run %s starts again: recording it to a new file", run_uid)
            del self.files[run_uid]
            self.closed_runs.discard(run_uid)
            self._rejections_at_open.pop(run_uid, None)
            self._recorded.pop(run_uid, None)
            self.sequences.restart(run_uid)
            held = self._router.pending.get(run_uid)
            for frame, _ in held.frames if held is not None else ():  # its frames that came first
                self.sequences.observe(run_uid, frame.header.stream, frame.header.seq, frame.header.n_frames)
        if name == "start" and run_uid not in self.files:
            run = self._open_run(run_uid, now, start=doc)
        else:
            run = self._open_run(run_uid, now)
            run.writer.add_document(name, doc, recv_time=now, arrival=self._next_arrival())
            self._recorded[run_uid].documents += 1
        run.last_activity = self._monotonic()
        if name == "stop":
            run.stopped = True

    # -- frames ---------------------------------------------------------------------------

    def _on_frame(self, frame: Frame, now: float) -> None:
        header = frame.header
        if self.sequences.observe(header.run_uid, header.stream, header.seq, header.n_frames):
            self._gap_events += 1
            if self._gap_events in (1, 10, 100) or self._gap_events % 1000 == 0:
                missing = self.sequences.counts[(header.run_uid, header.stream)].missing
                logger.warning("gap #%d in %s: %d frames missing so far", self._gap_events, header.stream, missing)
        run_uid = self._writing = header.run_uid
        self._arrived[run_uid]["frames"] += header.n_frames
        if run_uid in self.storage_full:
            return  # counted: its file is closed
        if run_uid not in self._runs:
            # arrival indices are given when written, after the start document; a closed run's
            # frame waits too: it may be the first of the run sent again (a replay), whose
            # start document travels on the other socket and can come second
            if self._router.hold(frame, now, since=self._monotonic()) > self.config.max_pending_bytes:
                self._open_run(run_uid, now)  # memory is bounded: these frames get their file now
            return
        run = self._open_run(run_uid, now)
        run.writer.add_frame(frame.header, frame.data, recv_time=now, arrival=self._next_arrival())
        self._recorded[run_uid].frames[frame.header.stream] += frame.header.n_frames
        run.last_activity = self._monotonic()

    # -- runs -----------------------------------------------------------------------------

    def _open_run(self, run_uid: str, now: float, *, start: dict[str, Any] | None = None) -> _OpenRun:
        """The open run ``run_uid``; opened (or reopened) if need be.

        A start document given here is written first, then any frames that waited for it,
        so the file's arrival order begins with the start as the run did at its source.
        """
        run = self._runs.get(run_uid)
        if run is not None:
            return run
        path = self.files.get(run_uid)
        if path is None:
            path = self.config.out_dir / run_file_name(run_uid, start)
            suffix = 1
            while path.exists():
                path = path.with_name(f"{path.name.split('.')[0]}.{suffix}.h5")
                suffix += 1
            logger.info("recording run %s to %s", run_uid, path)
        else:
            logger.warning("late message for run %s: reopening %s", run_uid, path)
        self._writing = run_uid
        try:
            writer = RunFileWriter(path, run_uid, compression=self.config.compression)
        except OSError:
            self.files[run_uid] = path  # a file that cannot be made (a full storage's): named in the report
            raise
        # a reopened run closes again after the linger, as it did the first time
        at_open = self._rejections_at_open.setdefault(run_uid, self._rejections())
        run = self._runs[run_uid] = _OpenRun(writer, at_open, self._monotonic(), stopped=run_uid in self.closed_runs)
        self.files[run_uid] = path
        self.closed_runs.discard(run_uid)
        recorded = self._recorded.setdefault(run_uid, _Recorded())
        if start is not None:
            writer.add_document("start", start, recv_time=now, arrival=self._next_arrival())
            recorded.documents += 1
        for frame, recv_time in self._router.release(run_uid):
            writer.add_frame(frame.header, frame.data, recv_time=recv_time, arrival=self._next_arrival())
            recorded.frames[frame.header.stream] += frame.header.n_frames
        return run

    def _rejections(self) -> _Rejections:
        by_field: Counter[str] = Counter()
        for channel, rejections in (("document", self.documents.rejections), ("frame", self.frames.rejections)):
            for name, count in rejections.by_field.items():
                by_field[f"{channel}_{name}"] = count
        return _Rejections(by_field, Counter(self.frames.rejections.by_stream))

    def _flush_run(self, run_uid: str, run: _OpenRun) -> None:
        self._writing = run_uid
        counts = {stream: c for (uid, stream), c in self.sequences.counts.items() if uid == run_uid}
        since_open = self._rejections() - run.rejections_at_open
        run.writer.update_diagnostics(counts, since_open.by_field, since_open.by_stream)
        run.writer.flush()

    def _close_run(self, run_uid: str) -> None:
        self._writing = run_uid
        run = self._runs[run_uid]
        self._flush_run(run_uid, run)
        run.writer.close(end_time=self._clock())
        del self._runs[run_uid]
        self.closed_runs.add(run_uid)
        recorded = self._recorded[run_uid]
        self.receiver.confirm(self.documents, run_uid, documents=recorded.documents)
        self.receiver.confirm(self.frames, run_uid, frames=dict(recorded.frames))

    def _housekeeping(self) -> None:
        now = self._monotonic()
        for run_uid in self._router.overdue(now, self.config.pending_timeout_s):
            if run_uid not in self.files:  # (a closed run's late frames reopen its file)
                logger.warning("frames of run %s arrived without its start document", run_uid)
            self._when_storage_fills(self._open_run, run_uid, self._clock())
        if now - self._last_flush >= self.config.flush_interval_s:
            self.flush()
        for run_uid, run in list(self._runs.items()):
            if run.stopped and now - run.last_activity > self.config.linger_s:
                self._when_storage_fills(self._close_run, run_uid)

    def flush(self) -> None:
        """Flush every open run now."""
        for run_uid, run in list(self._runs.items()):
            self._when_storage_fills(self._flush_run, run_uid, run)
        self._last_flush = self._monotonic()

    def close(self) -> None:
        """Write out waiting frames, close every run file cleanly and the sockets.

        Each run is closed on its own: one that fails is logged and the others still close.
        """
        if self.closed:
            return
        try:
            now = self._clock()
            for run_uid in list(self._router.pending):
                self._guarded(self._open_run, run_uid, now)
            for run_uid in list(self._runs):
                self._guarded(self._close_run, run_uid)
        finally:
            self.receiver.stop()
            self.documents.close()
            self.frames.close()
            self.closed = True
        if self.documents.rejections.total or self.frames.rejections.total:
            logger.warning(
                "rejected %d document and %d frame messages",
                self.documents.rejections.total,
                self.frames.rejections.total,
            )

    def _guarded(self, action: Callable[..., object], run_uid: str, *args: object) -> None:
        try:
            self._when_storage_fills(action, run_uid, *args)
        except Exception:
            self.write_errors += 1
            logger.exception("could not finish the file of run %s", run_uid)
            self._runs.pop(run_uid, None)


class RecorderThread:
    """Run a :class:`Recorder` in a background thread; a context manager.

    The recorder is built (and subscribed) in the calling thread, then handed to the
    background thread, which alone uses it until :meth:`stop` joins it.
    """

    def __init__(self, config: RecorderConfig, *, context: zmq.Context | None = None) -> None:
        self.recorder = Recorder(config, context=context)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.recorder.run(self._stop)
        except BaseException as exc:  # handed to the thread that calls stop()
            self.recorder.failure = exc

    def stop(self, timeout_s: float = 30.0) -> Recorder:
        """Stop recording, close every file, and return the recorder for inspection."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"recorder thread did not stop within {timeout_s} s")
        if self.recorder.failure is not None:
            raise RuntimeError("the recorder thread failed") from self.recorder.failure
        return self.recorder

    def __enter__(self) -> RecorderThread:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
