"""A receive loop in a thread of its own: a receiver's two sockets drained into a buffer bounded by bytes.

- :class:`Receiver`: reads the document and frame sockets as fast as messages come, whatever
  the receiver does with them (an analysis' reconstruction, the recorder's compression and
  writing), into a first-in first-out buffer, each message with its receipt time; the
  receiver takes from it (:meth:`Receiver.get`). A stall or a burst then costs buffer, not
  frames: a non-blocking publisher drops frames only for a receiver whose socket is full, and
  this one's socket is emptied continuously.
- :class:`ReceiverStats`: frames in and taken, bytes buffered and their peak.

When the buffer is full the thread stops reading frames (documents, small, are always read):
the socket's own queue then fills and the publisher drops, which the frames' sequence numbers
show exactly, so the consumer can fetch those frames from the recorder's file.

The sockets belong to this thread once it runs (ZeroMQ sockets are not thread-safe): receipts
are handed to it (:meth:`Receiver.confirm`) and sent from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from .protocol import Frame
from .transport import DocumentSubscriber, FrameSubscriber

__all__ = ["DEFAULT_BUFFER_BYTES", "Receiver", "ReceiverStats"]

logger = logging.getLogger(__name__)

# 2 GiB: 25 s of the small preset's frames at the simulator's rate (0.6 MB at ~130 Hz), and
# 2 s of full Pilatus2M frames at 100 Hz; a longer stall costs frames, which come back from
# the recorder's file. A tenth of this machine's 24 GiB, beside the analysis' own volumes.
DEFAULT_BUFFER_BYTES = 2 << 30
_FRAMES_PER_TURN = 256  # frames read before the documents are looked at again


@dataclass
class ReceiverStats:
    """What passed through the buffer (frames and bytes); the peak is the most held at once."""

    frames_in: int = 0
    frames_taken: int = 0
    documents_in: int = 0
    bytes_held: int = 0
    peak_bytes: int = 0
    peak_frames: int = 0
    full_s: float = 0.0  # time spent with the buffer full (frames not read meanwhile)

    @property
    def backlog(self) -> int:
        """Frames received and not yet taken by the analysis."""
        return self.frames_in - self.frames_taken


class Receiver:
    """Drain ``documents`` and ``frames`` in a background thread into a buffer of at most
    ``max_bytes`` bytes of frames.

    Parameters
    ----------
    documents, frames : DocumentSubscriber, FrameSubscriber
        Connected and subscribed; from :meth:`start` on, used by the thread alone until
        :meth:`stop` returns.
    max_bytes : int
        Most frame bytes held (frames are held as received, without a copy).
    paced_by_sender : bool
        The publisher waits for this receiver (a replay into an analysis): a full buffer is
        its normal state, logged at INFO, not as a warning that frames are at risk.
    clock : callable
        Receipt time stamps, seconds since the epoch.
    """

    def __init__(
        self,
        documents: DocumentSubscriber,
        frames: FrameSubscriber,
        *,
        max_bytes: int,
        paced_by_sender: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.documents, self.frames, self.max_bytes = documents, frames, max_bytes
        self.paced_by_sender = paced_by_sender
        self._clock = clock
        self.stats = ReceiverStats()
        self._items: deque[tuple[str, Any, float]] = deque()
        self._commands: deque[Callable[[], object]] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)
        self.failure: BaseException | None = None
        self._last_rates = (time.monotonic(), 0, 0)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the thread after it has sent the receipts handed to it; the sockets are the caller's again."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._run_commands()  # what the thread had no time for

    # -- the analysis' side ------------------------------------------------------------------

    def get(self, timeout_s: float = 0.0) -> tuple[str, Any, float] | None:
        """The next message, waiting up to ``timeout_s``: ``("document", (name, doc), recv_time)``
        or ``("frame", frame, recv_time)`` (receipt time, s since the epoch); None if none came."""
        with self._ready:
            if not self._items and timeout_s > 0:
                self._ready.wait(timeout_s)
            if not self._items:
                return None
            kind, item, recv_time = self._items.popleft()
            if kind == "frame":
                self.stats.bytes_held -= item.data.nbytes
                self.stats.frames_taken += item.header.n_frames
                self._ready.notify_all()  # room again
            return kind, item, recv_time

    def reset_peaks(self) -> None:
        """Peaks from now on (a new run)."""
        with self._ready:
            self.stats.peak_bytes, self.stats.peak_frames = self.stats.bytes_held, self.stats.backlog

    def log_rates(self, every_s: float = 10.0) -> None:
        """Whether the analysis keeps up, every ``every_s`` at most: frames in and taken per
        second, and the backlog; a warning once the backlog passes half the buffer."""
        now = time.monotonic()
        since, frames_in, frames_taken = self._last_rates
        stats = self.stats
        if now - since < every_s:
            return
        if stats.frames_in > frames_in or stats.backlog:
            elapsed = now - since
            at_risk = stats.bytes_held > self.max_bytes // 2 and not self.paced_by_sender
            level = logging.WARNING if at_risk else logging.INFO
            logger.log(level, "frames in %.0f/s, analysed %.0f/s, backlog %d frames (%.0f of %.0f MB)",
                       (stats.frames_in - frames_in) / elapsed, (stats.frames_taken - frames_taken) / elapsed,
                       stats.backlog, stats.bytes_held / 1e6, self.max_bytes / 1e6)  # fmt: skip
        self._last_rates = (now, stats.frames_in, stats.frames_taken)

    def confirm(self, subscriber: DocumentSubscriber | FrameSubscriber, run_uid: str, **receipt: Any) -> None:
        """Send a run's receipt on ``subscriber``, from the thread that owns the sockets."""
        self._commands.append(lambda: subscriber.confirm(run_uid, **receipt))

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.documents.socket, zmq.POLLIN)
        poller.register(self.frames.socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                self._run_commands()
                full = self._full()
                if full:  # read documents only, until there is room (or stop)
                    started = time.monotonic()
                    with self._ready:
                        self._ready.wait(0.02)
                    self.stats.full_s += time.monotonic() - started
                    self._read_documents()
                    continue
                ready = dict(poller.poll(50))
                if self.documents.socket in ready:
                    self._read_documents()
                if self.frames.socket in ready:
                    self._read_frames()
        except BaseException as exc:  # told to the analysis' side at its next get
            self.failure = exc
            logger.exception("the receive thread failed")

    def _full(self) -> bool:
        return self.stats.bytes_held >= self.max_bytes

    def _run_commands(self) -> None:
        while self._commands:
            self._commands.popleft()()

    def _read_documents(self) -> None:
        while (received := self.documents.recv(timeout_s=0)) is not None:
            self.stats.documents_in += 1
            self._put("document", received, 0)

    def _read_frames(self) -> None:
        for _ in range(_FRAMES_PER_TURN):
            if self._full():
                return
            frame = self.frames.recv(timeout_s=0)
            if frame is None:
                return
            self.stats.frames_in += frame.header.n_frames  # frames, not messages: a batch holds many
            self._put("frame", frame, frame.data.nbytes)

    def _put(self, kind: str, item: tuple[str, dict[str, Any]] | Frame, nbytes: int) -> None:
        received = self._clock()
        with self._ready:
            self._items.append((kind, item, received))
            if nbytes:
                stats = self.stats
                stats.bytes_held += nbytes
                stats.peak_bytes = max(stats.peak_bytes, stats.bytes_held)
                stats.peak_frames = max(stats.peak_frames, stats.backlog)
            self._ready.notify_all()
