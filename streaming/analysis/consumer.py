"""Live consumers: a thin loop that feeds one run's documents and frames to an analysis.

An :class:`Analysis` is the per-run state around pure functions of
:mod:`streaming.processing`; a :class:`Consumer` receives both channels, makes an analysis
for each run whose start document it accepts (``make_analysis(start)`` returns one or
``None``), hands it every later document and every frame of its streams, and finishes it
once the run is over: after the stop document *and* after every frame the StreamDatum
documents announced has arrived (frames and documents travel on separate sockets, in
either order), or ``linger_s`` after the stop document if frames were lost on the way.

The sockets are drained by a thread of their own into a buffer bounded by bytes
(:mod:`streaming.wire.receiver`), so the analysis' long steps cost buffer, not frames. Frames the consumer
still missed (a non-blocking publisher drops for a receiver that fell ``hwm`` frames behind)
show as gaps in their sequence numbers; they are fetched from the recorder's run file
(:mod:`.delivery`) and handed to the analysis in their place, so it sees every recorded frame
in order. What came live, from the file, or not at all is the run's :class:`RunDelivery`.

Frames that arrive before their run's start document wait (bounded by ``max_pending``); a run
whose start never comes began before the consumer did, and is caught up on from the recorder's
file, then followed live (:mod:`.catchup`). Once a run is over, the consumer confirms to the
publishers what it received of it (documents, frames per stream; :mod:`streaming.wire.receipts`),
or at its start that it takes no part in it.
Replays (:mod:`streaming.store.replay`) go through the same sockets, so a replayed run gives the
same results as the live one. An analysis that raises is logged and counted; the consumer
goes on with the next message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from streaming.wire.products import ProductPublisher
from streaming.wire.protocol import Frame
from streaming.wire.receipts import receiver_name
from streaming.wire.receiver import DEFAULT_BUFFER_BYTES, Receiver
from streaming.wire.transport import (
    DEFAULT_DOCUMENT_ADDRESS,
    DEFAULT_FRAME_ADDRESS,
    DocumentSubscriber,
    FrameSubscriber,
)

from .catchup import LateRuns
from .delivery import RecordedFrames, RunDelivery
from .products import LiveProducts
from .runs import Analysis, RunProgress, RunState

__all__ = ["SOURCE_SEQ", "Analysis", "Consumer", "ConsumerThread", "RunDelivery", "RunProgress"]

logger = logging.getLogger(__name__)

_BACKFILL_BLOCK = 256  # frames fetched from a run file at once

#: The index a derived frame (a worker's pattern, stream ``"<source>.<what>"``) carries its
#: source frame's sequence number in, so a builder knows which source frames it never got.
SOURCE_SEQ = "source_seq"


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
        end-of-run checks).
    max_buffer_bytes : int
        Most bytes of frames received and not yet analysed (:mod:`streaming.wire.receiver`).
    backfill : bool
        Fetch the frames missing from a SUB stream from the recorder's file (not for a worker
        taking a share, whose frames have no sequence of their own).
    run_directory : Path or None
        Where the recorder's files are, if not where the runs' StreamResources say.
    backfill_timeout_s : float
        How long to wait for the recorder to flush a missing frame.
    catch_up : bool
        Analyse a run that began before this consumer, from the recorder's file in ``run_directory``.
    paced_by_sender : bool
        The publisher waits for this consumer (a replay, ``operando analyze``): a full
        receive buffer is expected, not warned about.
    products : ProductPublisher or None
        Publish what the analyses hold, live (:mod:`.products`).
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
        max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        backfill: bool = True,
        run_directory: Path | None = None,
        backfill_timeout_s: float = 10.0,
        catch_up: bool = True,
        paced_by_sender: bool = False,
        products: ProductPublisher | None = None,
    ) -> None:
        self.make_analysis = make_analysis
        self.products = None if products is None else LiveProducts(products)
        self.name = receiver_name("consumer")
        self.documents = DocumentSubscriber(document_address, receiver=self.name)
        self.frames = FrameSubscriber(frame_address, pattern=frame_pattern, streams=streams, bind=frame_bind,
                                      receiver=self.name)  # fmt: skip
        # a PULL that connects is a worker taking a share: the announced counts are not its own
        self._takes_a_share = frame_pattern == "pull" and not frame_bind
        # gaps in sequence numbers mean lost frames only on SUB (patterns fanned in from
        # workers are numbered per worker); a builder instead knows the source frames its
        # patterns came from, and fetches the others at the end
        self._fills_gaps = backfill and frame_pattern == "sub"
        self._fills_sources = backfill and frame_pattern == "pull" and frame_bind
        self._run_directory, self._backfill_timeout_s = run_directory, backfill_timeout_s
        self.late_runs = LateRuns(run_directory, timeout_s=backfill_timeout_s) if catch_up else None
        self.linger_s = linger_s
        self.max_per_poll = max_per_poll
        self._pending: deque[Frame] = deque(maxlen=max_pending)
        self._runs: dict[str, RunState] = {}
        self._ignored: set[str] = set()
        self.finished: list[Analysis] = []
        self._last_finished: Analysis | None = None
        self.runs_seen = 0
        self.errors = 0
        self.n_frames_analysed = 0  # handed to analyses, every run: progress bars read it
        self.receiver = Receiver(self.documents, self.frames, max_bytes=max_buffer_bytes,
                                 paced_by_sender=paced_by_sender).start()  # fmt: skip

    # -- the loop ----------------------------------------------------------------------------

    def poll(self, timeout_s: float = 0.05) -> int:
        """Handle what has arrived (waiting up to ``timeout_s`` for the first); returns the
        number of messages handled."""
        if self.receiver.failure is not None:
            raise RuntimeError("the consumer's receive thread failed") from self.receiver.failure
        handled = 0
        received = self.receiver.get(timeout_s)
        while received is not None:
            kind, item, received_at_s = received
            if kind == "document":
                self._guard(self._on_document, *item)
            else:
                self._guard(self._on_frame, item)
                if self.products is not None:
                    self.products.frame_handled(received_at_s)
            self._publish_products()
            handled += 1
            if handled >= self.max_per_poll:  # a bounded batch: the end-of-run checks come too
                break
            received = self.receiver.get(0)
        self._catch_up()
        self._finish_done_runs()
        self._publish_products()
        self.receiver.log_rates()
        return handled

    def _publish_products(self, finished: Analysis | None = None) -> None:
        """The analyses' products, every ``period_s`` (and a run's last state when it ends); the
        last finished run's stay on offer until the next run starts."""
        if self.products is not None and (finished is not None or self.products.due()):
            analyses = [run.analysis for run in self._runs.values()]
            last = [finished or self._last_finished] if finished or (not analyses and self._last_finished) else []
            self._guard(self.products.publish, [*analyses, *last], self, running=bool(analyses), final=bool(finished))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()

    @property
    def idle(self) -> bool:
        """No run in progress."""
        return not self._runs

    def progress(self) -> list[RunProgress]:
        """The runs in progress, for a progress bar in another thread (counts, not locks: a
        read may be one message behind)."""
        found = []
        for run in list(self._runs.values()):
            announced = sum(n for stream, n in run.expected.items() if stream in run.analysis.streams)
            status = getattr(run.analysis, "progress", None)
            found.append(RunProgress(run.start["uid"], run.n_analysed, announced, status() if status else ""))
        return found

    def close(self) -> None:
        """Finish the runs in progress with what they have, close the sockets."""
        try:
            for uid in list(self._runs):
                self._finish(uid)
        finally:
            self.receiver.stop()
            self.documents.close()
            self.frames.close()

    def _guard(self, handler: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            self.errors += 1
            logger.exception("analysis failed on a message; going on with the next")

    # -- routing -----------------------------------------------------------------------------

    def _on_document(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            if doc["uid"] in self._runs:  # caught up on from its file already (a start overtaken)
                return
            self.runs_seen += 1
            analysis = self.make_analysis(doc)
            if analysis is None:
                self._ignored.add(doc["uid"])
                self.receiver.confirm(self.documents, doc["uid"], ignored=True)
                self.receiver.confirm(self.frames, doc["uid"], ignored=True)
                return
            if not self._runs:  # the buffer's peak is told per run
                self.receiver.reset_peaks()
            recorded = RecordedFrames(run_directory=self._run_directory, timeout_s=self._backfill_timeout_s)
            self._runs[doc["uid"]] = RunState(analysis, doc, recorded)
            if self.late_runs is not None:
                self.late_runs.started(doc["uid"])
            self._last_finished = None  # its volumes go: one run's at a time
            waiting = [f for f in self._pending if f.header.run_uid == doc["uid"]]
            self._pending = deque((f for f in self._pending if f.header.run_uid != doc["uid"]), self._pending.maxlen)
            for frame in waiting:
                self._on_frame(frame)
            return
        run = self._run_of(doc)
        if run is None:
            if self.late_runs is not None and doc.get("run_start") not in self._ignored:
                self.late_runs.document_without_run(name, doc)
            return
        if doc.get("uid") in run.from_file:  # caught up on from the file already
            run.from_file.discard(doc["uid"])
            return
        run.n_documents += 1
        if name == "descriptor":
            run.descriptors.add(doc["uid"])
        elif name == "stream_resource":
            run.resources[doc["uid"]] = doc["parameters"].get("dataset", "").split("/")[-2]
            run.recorded.stream_resource(doc)
            for stream, seqs in list(run.deferred.items()):  # missed before the file was named
                del run.deferred[stream]
                self._backfill(run, stream, seqs)
        elif name == "stream_datum":
            stream = run.resources.get(doc["stream_resource"])
            if stream is not None:
                run.expected[stream] = max(run.expected[stream], doc["indices"]["stop"])
        if name == "stop":
            run.stop, run.stopped_at = doc, time.monotonic()
        else:
            run.analysis.document(name, doc)

    def _run_of(self, doc: dict[str, Any]) -> RunState | None:
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
                if self.late_runs is not None:
                    self.late_runs.frame_without_run(uid, frame.header.stream, frame.header.seq)
            return
        if self._fills_gaps:
            stream, seq = frame.header.stream, frame.header.seq
            if seq < run.next_seq[stream] and seq in run.refilled.get(stream, ()):
                return  # it came from the file already
            if seq > run.next_seq[stream]:
                self._backfill(run, stream, range(run.next_seq[stream], seq))
            run.next_seq[stream] = max(run.next_seq[stream], seq + frame.header.n_frames)
        elif self._fills_sources and SOURCE_SEQ in frame.header.indices:
            run.sources_seen.mark(frame.header.stream.split(".", 1)[0], int(frame.header.indices[SOURCE_SEQ]))
        run.delivery.live[frame.header.stream] += frame.header.n_frames
        self._deliver(run, frame)

    def _deliver(self, run: RunState, frame: Frame) -> None:
        # a derived stream ("pilatus.integrated": one result per frame of "pilatus", made by
        # workers) counts towards the frames its source announced
        n_frames = frame.header.n_frames
        run.received[frame.header.stream.split(".", 1)[0]] += n_frames
        run.frames_by_stream[frame.header.stream] += n_frames
        run.last_frame_at = time.monotonic()
        if frame.header.stream not in run.analysis.streams:
            return
        run.n_analysed += n_frames
        self.n_frames_analysed += n_frames
        if n_frames == 1 or getattr(run.analysis, "takes_batches", False):
            run.analysis.frame(frame)
        else:  # a batch, frame by frame (views of its buffer)
            for one in frame.frames():
                run.analysis.frame(one)

    def _catch_up(self) -> None:
        """Runs that began before this consumer: their documents so far from the recorder's
        file, then those held back, then the frames waiting (:mod:`.catchup`)."""
        if self.late_runs is None:
            return
        for uid, path, documents in self.late_runs.due():
            if uid in self._runs or not documents or documents[0][0] != "start":  # (a file's first is its start)
                continue
            waiting = [f for f in self._pending if f.header.run_uid == uid]
            self._pending = deque((f for f in self._pending if f.header.run_uid != uid), self._pending.maxlen)
            self._guard(self._on_document, *documents[0])
            run = self._runs.get(uid)
            if run is None:  # not this consumer's
                continue
            run.recorded.path = path  # its StreamResource may say where, with run_directory, as well
            self.late_runs.adopted(uid, path, len(documents))
            for name, doc in documents[1:]:
                self._guard(self._on_document, name, doc)
            run.from_file = {doc["uid"] for _, doc in documents[1:] if "uid" in doc}
            for name, doc in self.late_runs.take_held():
                self._guard(self._on_document, name, doc)
            for frame in waiting:
                self._guard(self._on_frame, frame)

    def _backfill(self, run: RunState, stream: str, seqs: Iterable[int], *, at_the_end: bool = False) -> None:
        """The frames ``seqs`` of ``stream`` that never came, from the recorder's file, in order
        (or as soon as a StreamResource names the file: an analysis places frames by index)."""
        wanted = list(seqs)
        if run.recorded.path is None and not at_the_end:
            run.deferred.setdefault(stream, []).extend(wanted)
            return
        n_found, timeout_s = 0, None
        for block in range(0, len(wanted), _BACKFILL_BLOCK):  # a block in memory at a time (a late start's)
            seqs_of_block = wanted[block : block + _BACKFILL_BLOCK]
            fetched = run.recorded.fetch(stream, seqs_of_block, timeout_s)
            if len(fetched) < len(seqs_of_block):
                timeout_s = 0.0  # the recorder has not got them either: the next blocks do not wait
            run.refilled.setdefault(stream, set()).update(frame.header.seq for frame in fetched)
            n_found += len(fetched)
            for frame in fetched:
                self._deliver(run, frame)
        if n_found:
            run.delivery.backfilled[stream] += n_found
        if n_found < len(wanted):
            run.delivery.unrecovered[stream] += len(wanted) - n_found
            logger.warning("run %s: %d %s frames missed; %d found in the recorder's file %s", run.start["uid"][:8],
                           len(wanted), stream, n_found, run.recorded.path)  # fmt: skip

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
        if self._fills_gaps:  # the frames announced and never seen: the tail of a stream
            for stream, seqs in run.deferred.items():
                self._guard(self._backfill, run, stream, seqs, at_the_end=True)
            for stream, n in run.expected.items():
                if run.next_seq[stream] < n:
                    self._guard(self._backfill, run, stream, range(run.next_seq[stream], n), at_the_end=True)
                    run.next_seq[stream] = n
        if self._fills_sources:  # source frames no pattern came from: raw, for the analysis to integrate
            for stream, n in run.expected.items():
                missing = run.sources_seen.missing(stream, n)
                if missing and run.received[stream] < n:
                    self._guard(self._backfill, run, stream, missing, at_the_end=True)
        if not run.all_frames_in and not self._takes_a_share:
            missing = {s: n - run.received[s] for s, n in run.expected.items() if run.received[s] < n}
            logger.warning("run %s finished with frames missing: %s", uid[:8], missing)
        self.receiver.confirm(self.documents, uid, documents=run.n_documents)
        self.receiver.confirm(self.frames, uid, frames=dict(run.frames_by_stream))
        stats = self.receiver.stats
        run.delivery.peak_backlog_frames, run.delivery.peak_buffer_bytes = stats.peak_frames, stats.peak_bytes
        run.delivery.source = str(run.recorded.path or "")
        if hasattr(run.analysis, "delivery"):
            run.analysis.delivery = run.delivery
        try:
            run.analysis.finish(run.stop)
        except Exception:
            self.errors += 1
            logger.exception("analysis of run %s failed to finish", uid[:8])
        self.finished.append(run.analysis)
        self._last_finished = run.analysis
        self._publish_products(finished=run.analysis)


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
