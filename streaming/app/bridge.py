"""Frames from an areaDetector onto the frame channel: NTNDArray updates over PV Access
(areaDetector's NDPluginPva, or the simulated IOC's) become frame messages (``operando bridge pva``).

:class:`PvaFrameBridge` monitors one NTNDArray PV with p4p and sends every update as one frame
of ``stream``, in the run that is open on the document channel:

- ``run_uid``: of the latest start document (the plan opens the run before it starts the
  detector); frames that come before any start wait for it (up to ``max_waiting_bytes``, then
  the oldest are dropped and counted), and those made before the run's start time are dropped
  and counted when it comes;
- ``seq``: the array's ``uniqueId`` less the run's first, so a gap in ``uniqueId`` (frames the
  IOC made and PV Access dropped) is a gap the receivers count as missing, and the bridge counts
  too (``missing``);
- ``timestamp``: the array's time stamp; ``positions`` and ``indices``: its NDAttributes named
  ``position:<name>`` (float) and ``index:<name>`` (int), as areaDetector's attribute files can
  name them (the simulated IOC does).

The first update after each (re)connection is the PV's value at that moment, a frame made
before: it is skipped. The PV Access callbacks only queue updates; the bridge's own thread (:meth:`run`) sends them, as
a socket wants one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.errors import ConfigError
from streaming.wire.protocol import FrameHeader
from streaming.wire.transport import DocumentSubscriber, FramePublisher

__all__ = ["BridgeCounts", "PvaFrameBridge", "frame_metadata"]

logger = logging.getLogger(__name__)

POSITION, INDEX = "position:", "index:"
_CLOCK_SKEW_S = 1.0  # between the IOC's clock and the RunEngine's, at most


@dataclass
class BridgeCounts:
    """What a bridge did: frames sent, frames missing by ``uniqueId``, frames dropped while
    waiting for a run, and updates that were not NTNDArrays (counted and skipped)."""

    sent: int = 0
    missing: int = 0
    dropped_before_run: int = 0
    invalid: int = 0


def frame_metadata(attributes: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
    """``positions`` and ``indices`` of a frame from its NDAttributes (see the module docstring)."""
    positions = {name[len(POSITION) :]: float(value) for name, value in attributes.items() if name.startswith(POSITION)}
    indices = {name[len(INDEX) :]: int(value) for name, value in attributes.items() if name.startswith(INDEX)}
    return positions, indices


@dataclass(frozen=True)
class _Update:
    unique_id: int
    timestamp: float
    data: np.ndarray
    attributes: dict[str, Any]


class PvaFrameBridge:
    """NTNDArray updates of ``pv`` to frames of ``stream`` (see the module docstring).

    Parameters
    ----------
    pv : str
        The NTNDArray PV (areaDetector: ``PREFIX:Pva1:Image``).
    stream : str
        The frames' stream name (the detector's name in the plans).
    documents : DocumentSubscriber
        The document channel, for the runs' uids.
    frames : FramePublisher
        Where the frames go.
    max_waiting_bytes : int
        Frames held while no run is open, at most.
    pva_conf : dict, optional
        p4p client settings (``EPICS_PVA_ADDR_LIST``, ...) instead of the environment's.
    queue_size : int
        Updates the PV Access server may queue for the bridge (``record[queueSize=...]``) before
        it squashes them (the frames lost then are counted as missing).
    """

    def __init__(self, pv: str, stream: str, *, documents: DocumentSubscriber, frames: FramePublisher,
                 max_waiting_bytes: int = 1 << 30, pva_conf: dict[str, str] | None = None,
                 queue_size: int = 32) -> None:  # fmt: skip
        if not pv or not stream:
            raise ConfigError(f"bridge: need a PV and a stream name, got {pv!r}, {stream!r}")
        self.pv, self.stream = pv, stream
        self.documents, self.frames = documents, frames
        self.max_waiting_bytes = max_waiting_bytes
        self.pva_conf, self.queue_size = pva_conf, queue_size
        self.counts = BridgeCounts()
        self.run_uid: str | None = None
        self._first_id: int | None = None
        self._last_id: int | None = None
        self._updates: queue.SimpleQueue[_Update | None] = queue.SimpleQueue()
        self._waiting: deque[_Update] = deque()
        self._waiting_bytes = 0
        self._subscription = None
        self._context = self._queue = None
        self._connected = False

    # -- PV Access side (p4p's threads) --------------------------------------------------------

    def start(self) -> PvaFrameBridge:
        """Subscribe to the PV (p4p's client, its own threads)."""
        from p4p.client.thread import Context  # p4p only for the bridge
        from p4p.util import ThreadedWorkQueue

        # the updates' own thread (p4p's default ones live as long as the process)
        self._queue = ThreadedWorkQueue(name=f"bridge {self.pv}", maxsize=0, daemon=True).start()
        self._context = Context("pva", nt=False, conf=self.pva_conf, useenv=self.pva_conf is None)
        request = f"record[queueSize={self.queue_size}]"
        self._subscription = self._context.monitor(self.pv, self._on_update, request=request, notify_disconnect=True,
                                                   queue=self._queue)  # fmt: skip
        return self

    def _on_update(self, value: Any) -> None:
        from p4p.nt import NTNDArray

        if isinstance(value, Exception):  # a disconnect: the IOC went away, or is not there yet
            logger.warning("bridge %s: %s", self.pv, value)
            self._connected = False
            return
        if not self._connected:  # a monitor's first update is the PV's value then: an old frame
            self._connected = True
            return
        try:
            array = NTNDArray.unwrap(value)
            stamp = value["timeStamp"]
            timestamp = float(stamp["secondsPastEpoch"]) + 1e-9 * float(stamp["nanoseconds"])
            update = _Update(int(value["uniqueId"]), timestamp, np.asarray(array), dict(array.attrib))
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            self.counts.invalid += 1
            logger.warning("bridge %s: an update that is not an NTNDArray (%s), skipped", self.pv, error)
            return
        self._updates.put(update)

    # -- the frame channel's side (the bridge's thread) ---------------------------------------

    def run(self, stop: threading.Event, poll_s: float = 0.01) -> None:
        """Send updates as frames until ``stop`` is set."""
        while not stop.is_set():
            self.step(poll_s)

    def step(self, timeout_s: float = 0.01) -> None:
        """Take the documents that came, then send the updates that came (waiting at most
        ``timeout_s`` for the first)."""
        while (item := self.documents.recv(timeout_s=0)) is not None:
            self._document(*item)
        try:
            update = self._updates.get(timeout=timeout_s)
        except queue.Empty:
            return
        while update is not None:
            self._take(update)
            try:
                update = self._updates.get_nowait()
            except queue.Empty:
                update = None

    def _document(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.run_uid, self._first_id, self._last_id = doc["uid"], None, None
            waiting, self._waiting, self._waiting_bytes = self._waiting, deque(), 0
            for update in waiting:
                if update.timestamp < doc.get("time", 0.0) - _CLOCK_SKEW_S:
                    self.counts.dropped_before_run += 1  # made before the run opened: not its frame
                else:
                    self._send(update)
        elif name == "stop" and doc.get("run_start") == self.run_uid:
            self.run_uid = None

    def _take(self, update: _Update) -> None:
        if self.run_uid is not None:
            self._send(update)
            return
        self._waiting.append(update)
        self._waiting_bytes += update.data.nbytes
        while self._waiting_bytes > self.max_waiting_bytes:
            dropped = self._waiting.popleft()
            self._waiting_bytes -= dropped.data.nbytes
            self.counts.dropped_before_run += 1

    def _send(self, update: _Update) -> None:
        if self._first_id is None:
            self._first_id = update.unique_id
        elif update.unique_id > self._last_id + 1:
            self.counts.missing += update.unique_id - self._last_id - 1
        elif update.unique_id <= self._last_id:
            self.counts.invalid += 1  # the IOC restarted its count: not this run's sequence
            return
        self._last_id = update.unique_id
        positions, indices = frame_metadata(update.attributes)
        header = FrameHeader(run_uid=self.run_uid, stream=self.stream, seq=update.unique_id - self._first_id,
                             timestamp=update.timestamp, dtype=update.data.dtype.str, shape=update.data.shape,
                             positions=positions, indices=indices)  # fmt: skip
        self.frames.send(header, update.data)
        self.counts.sent += 1

    def close(self) -> None:
        """Stop the subscription (the channels are the caller's)."""
        if self._subscription is not None:
            self._subscription.close()
        if self._context is not None:
            self._context.close()
        if self._queue is not None:
            self._queue.stop()
        self._subscription = self._context = self._queue = None
