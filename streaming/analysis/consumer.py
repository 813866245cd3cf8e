"""Live consumers: a thin loop that feeds one run's documents and frames to an analysis.

An :class:`Analysis` is the per-run state around pure functions of
:mod:`streaming.processing`; a :class:`Consumer` receives both channels, makes an analysis
for each run whose start document it accepts (``make_analysis(start)`` returns one or
``None``), hands it every later document and every frame of its streams, and finishes it
once the run is over: after the stop document *and* after every frame the StreamDatum
documents announced has arrived (frames and documents travel on separate sockets, in
either order), or ``linger_s`` after the stop document if frames were lost on the way.

Frames that arrive before their run's start document wait (bounded by ``max_pending``).
Once a run is over, the consumer confirms to the publishers what it received of it (documents,
frames per stream; :mod:`streaming.wire.receipts`), or at its start that it takes no part
in it, so that a replay can tell that everything it sent arrived.
Replays (:mod:`streaming.store.replay`) go through the same sockets, so a replayed run gives the
same results as the live one. An analysis that raises is logged and counted; the consumer
goes on with the next message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Protocol

from streaming.wire.protocol import Frame
from streaming.wire.receipts import receiver_name
from streaming.wire.transport import (
    DEFAULT_DOCUMENT_ADDRESS,
    DEFAULT_FRAME_ADDRESS,
    DocumentSubscriber,
    FrameSubscriber,
)

__all__ = ["Analysis", "Consumer", "ConsumerThread"]

logger = logging.getLogger(__name__)


class Analysis(Protocol):
    """What a consumer runs for one run (see the module docstring)."""

    streams: tuple[str, ...]
    """Frame streams it wants (the detectors' names)."""

    def document(self, name: str, doc: dict[str, Any]) -> None:
        """Every document of the run after its start (events, stream datums, ...)."""

    def frame(self, frame: Frame) -> None:
        """One frame of the run, of one of :attr:`streams`, in arrival order."""

    def finish(self, stop: dict[str, Any] | None) -> None:
        """The run is over: write the results (``stop`` is None when the consumer closes first)."""


class _Run:
    def __init__(self, analysis: Analysis, start: dict[str, Any]) -> None:
        self.analysis = analysis
        self.start = start
        self.stop: dict[str, Any] | None = None
        self.stopped_at: float | None = None
        self.last_frame_at = 0.0
        self.descriptors: set[str] = set()
        self.resources: dict[str, str] = {}  # stream resource uid -> frame stream
        self.expected: Counter[str] = Counter()  # frames announced per stream
        self.received: Counter[str] = Counter()
        self.n_documents = 1  # the start
        self.frames_by_stream: Counter[str] = Counter()  # as received, for the run's receipt

    @property
    def all_frames_in(self) -> bool:
        return all(self.received[stream] >= n for stream, n in self.expected.items())


class Consumer:
    """Feed runs from the document and frame channels to analyses.

    Parameters
    ----------
    make_analysis : callable
        ``make_analysis(start_doc)`` returns an :class:`Analysis` for the run, or ``None`` to
        ignore it.
    document_address, frame_address : str
        Publishers to connect to.
    frame_pattern : {"sub", "pull"}
        ``"pull"`` to take a share of the frames from a PUSH publisher (a worker).
    frame_bind : bool
        Bind the frame socket instead of connecting: a ``"pull"`` consumer that many
        workers' PUSH publishers connect to (fan-in of their results).
    linger_s : float
        How long after the stop document, and after the run's last frame, to wait for
        announced frames still on their way (frames still arriving keep the run open).
    max_pending : int
        Frames of not-yet-started runs held in memory.
    max_per_poll : int
        Messages handled per :meth:`poll` at most (a backlog of frames does not starve the
        documents or the end-of-run checks).
    """

    def __init__(
        self,
        make_analysis: Callable[[dict[str, Any]], Analysis | None],
        *,
        document_address: str = DEFAULT_DOCUMENT_ADDRESS,
        frame_address: str = DEFAULT_FRAME_ADDRESS,
        frame_pattern: str = "sub",
        frame_bind: bool = False,
        streams: tuple[str, ...] | None = None,
        linger_s: float = 5.0,
        max_pending: int = 10_000,
        max_per_poll: int = 10_000,
    ) -> None:
        self.make_analysis = make_analysis
        self.name = receiver_name("consumer")
        self.documents = DocumentSubscriber(document_address, receiver=self.name)
        self.frames = FrameSubscriber(frame_address, pattern=frame_pattern, streams=streams, bind=frame_bind,
                                      receiver=self.name)  # fmt: skip
        # a PULL that connects is a worker taking a share: the announced counts are not its own
        self._takes_a_share = frame_pattern == "pull" and not frame_bind
        self.linger_s = linger_s
        self.max_per_poll = max_per_poll
        self._pending: deque[Frame] = deque(maxlen=max_pending)
        self._runs: dict[str, _Run] = {}
        self._ignored: set[str] = set()
        self.finished: list[Analysis] = []
        self.runs_seen = 0
        self.errors = 0

    # -- the loop ----------------------------------------------------------------------------

    def poll(self, timeout_s: float = 0.05) -> int:
        """Handle what has arrived (waiting up to ``timeout_s`` for the first); returns the
        number of messages handled."""
        handled = 0
        received = self.documents.recv(timeout_s=0)
        while received is not None:
            self._guard(self._on_document, *received)
            handled += 1
            received = self.documents.recv(timeout_s=0)
        frame = self.frames.recv(timeout_s=0 if handled else timeout_s)
        while frame is not None:
            self._guard(self._on_frame, frame)
            handled += 1
            # a bounded batch, so documents are not starved; the check comes before the next
            # recv: a frame received past the bound was dropped (1 in 10 000 on a backlog)
            if handled >= self.max_per_poll:
                break
            frame = self.frames.recv(timeout_s=0)
        self._finish_done_runs()
        return handled

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()

    @property
    def idle(self) -> bool:
        """No run in progress."""
        return not self._runs

    def close(self) -> None:
        """Finish the runs in progress with what they have, close the sockets."""
        for uid in list(self._runs):
            self._finish(uid)
        self.documents.close()
        self.frames.close()

    def _guard(self, handler: Callable[..., None], *args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            self.errors += 1
            logger.exception("analysis failed on a message; going on with the next")

    # -- routing -----------------------------------------------------------------------------

    def _on_document(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.runs_seen += 1
            analysis = self.make_analysis(doc)
            if analysis is None:
                self._ignored.add(doc["uid"])
                self.documents.confirm(doc["uid"], ignored=True)
                self.frames.confirm(doc["uid"], ignored=True)
                return
            self._runs[doc["uid"]] = _Run(analysis, doc)
            waiting = [f for f in self._pending if f.header.run_uid == doc["uid"]]
            self._pending = deque((f for f in self._pending if f.header.run_uid != doc["uid"]), self._pending.maxlen)
            for frame in waiting:
                self._on_frame(frame)
            return
        run = self._run_of(doc)
        if run is None:
            return
        run.n_documents += 1
        if name == "descriptor":
            run.descriptors.add(doc["uid"])
        elif name == "stream_resource":
            run.resources[doc["uid"]] = doc["parameters"].get("dataset", "").split("/")[-2]
        elif name == "stream_datum":
            stream = run.resources.get(doc["stream_resource"])
            if stream is not None:
                run.expected[stream] = max(run.expected[stream], doc["indices"]["stop"])
        if name == "stop":
            run.stop, run.stopped_at = doc, time.monotonic()
        else:
            run.analysis.document(name, doc)

    def _run_of(self, doc: dict[str, Any]) -> _Run | None:
        run_start = doc.get("run_start")
        if run_start in self._runs:
            return self._runs[run_start]
        # descriptors carry run_start; events and stream datums point at a descriptor/resource
        for run in self._runs.values():
            if doc.get("descriptor") in run.descriptors or doc.get("stream_resource") in run.resources:
                return run
        return None

    def _on_frame(self, frame: Frame) -> None:
        uid = frame.header.run_uid
        run = self._runs.get(uid)
        if run is None:
            if uid not in self._ignored:
                self._pending.append(frame)
            return
        # a derived stream ("pilatus.integrated": one result per frame of "pilatus", made by
        # workers) counts towards the frames its source announced
        run.received[frame.header.stream.split(".", 1)[0]] += 1
        run.frames_by_stream[frame.header.stream] += 1
        run.last_frame_at = time.monotonic()
        if frame.header.stream in run.analysis.streams:
            run.analysis.frame(frame)

    def _finish_done_runs(self) -> None:
        now = time.monotonic()
        for uid, run in list(self._runs.items()):
            if run.stop is not None and (
                run.all_frames_in or now - max(run.stopped_at, run.last_frame_at) > self.linger_s
            ):
                self._finish(uid)

    def _finish(self, uid: str) -> None:
        run = self._runs.pop(uid)
        self._ignored.add(uid)  # late frames of a finished run are dropped, not re-pended
        if not run.all_frames_in and not self._takes_a_share:
            missing = {s: n - run.received[s] for s, n in run.expected.items() if run.received[s] < n}
            logger.warning("run %s finished with frames missing: %s", uid[:8], missing)
        self.documents.confirm(uid, documents=run.n_documents)
        self.frames.confirm(uid, frames=run.frames_by_stream)
        try:
            run.analysis.finish(run.stop)
        except Exception:
            self.errors += 1
            logger.exception("analysis of run %s failed to finish", uid[:8])
        self.finished.append(run.analysis)


class ConsumerThread:
    """Run a :class:`Consumer` in a background thread; ``stop()`` closes it and returns it."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.consumer.run(self._stop)
        except BaseException as exc:
            self.failure = exc
        finally:
            self.consumer.close()

    def stop(self, timeout_s: float = 30.0) -> Consumer:
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"consumer thread did not stop within {timeout_s} s")
        if self.failure is not None:
            raise RuntimeError("the consumer thread failed") from self.failure
        return self.consumer
