"""Frames from an areaDetector onto the frame channel: NTNDArray updates over PV Access
(areaDetector's NDPluginPva, or the simulated IOC's) become frame messages (``operando bridge pva``).

:class:`PvaFrameBridge` monitors one NTNDArray PV with p4p and sends every update as one frame
of ``stream``, in the run that is open on the document channel:

- ``run_uid``: of the run whose time window (its start document's ``time`` to its stop's,
  give or take a second of clock skew) holds the frame's time stamp: documents and frames
  travel different paths, so a frame may come before its run's start (it waits for it, up to
  ``max_waiting_bytes``) or after its stop; a frame in no run's window is dropped and counted;
- ``seq``: the array's ``uniqueId`` less the run's first, so a gap in ``uniqueId`` (frames the
  IOC made and PV Access dropped) is a gap the receivers count as missing, and the bridge counts
  too (``missing``); a ``uniqueId`` that goes back (the IOC restarted) goes on from the run's
  last ``seq`` (``restarts``);
- ``timestamp``: the array's time stamp; ``positions`` and ``indices``: its NDAttributes named
  ``position:<name>`` (float) and ``index:<name>`` (int), as areaDetector's attribute files can
  name them (the simulated IOC does);
- a **batch** (a fast detector's frames stacked along the first of three dimensions, with the
  NDAttributes ``batch:counter``, the index that counts its frames, and ``batch:period_s``, the
  time between them) becomes one batch message; its ``uniqueId`` is its first frame's, and the
  next array's is expected that many frames on.

The first update after each (re)connection is the PV's value at that moment, a frame made
before: it is skipped. The PV Access callbacks only queue updates; the bridge's own thread (:meth:`run`) sends them, as
a socket wants one thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.errors import ConfigError, FrameDecodeError
from streaming.wire.protocol import FrameHeader
from streaming.wire.transport import DocumentSubscriber, FramePublisher

__all__ = ["BridgeCounts", "PvaFrameBridge", "frame_metadata", "run_bridges"]

logger = logging.getLogger(__name__)

POSITION, INDEX = "position:", "index:"
BATCH_COUNTER, BATCH_PERIOD = "batch:counter", "batch:period_s"
_CLOCK_SKEW_S = 1.0  # between the IOC's clock and the RunEngine's, at most


@dataclass
class BridgeCounts:
    """What a bridge did: frames sent; frames missing by ``uniqueId``; frames dropped outside
    any run (made before its start or after its stop, or while waiting overflowed); updates
    that were not valid NTNDArrays, or frames the channel refused (counted and skipped); and
    times the IOC's ``uniqueId`` went back (its count restarted: the run's numbering goes on)."""

    sent: int = 0
    missing: int = 0
    dropped_outside_runs: int = 0
    invalid: int = 0
    restarts: int = 0


def frame_metadata(attributes: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
    """``positions`` and ``indices`` of a frame from its NDAttributes (see the module docstring);
    ``ValueError`` if one of them is not a number."""
    positions = {name[len(POSITION) :]: float(value) for name, value in attributes.items() if name.startswith(POSITION)}
    indices = {name[len(INDEX) :]: int(value) for name, value in attributes.items() if name.startswith(INDEX)}
    return positions, indices


@dataclass(frozen=True)
class _Update:
    unique_id: int
    timestamp: float
    data: np.ndarray
    positions: dict[str, float]
    indices: dict[str, int]
    counter: str | None = None  # a batch's: the index counting its frames
    period_s: float = 0.0  # a batch's: time between its frames

    @property
    def n_frames(self) -> int:
        return 1 if self.counter is None else len(self.data)


@dataclass
class _Run:
    """A run's time window (s since the epoch; ``stop`` None while open) and its numbering."""

    uid: str
    start: float
    stop: float | None = None
    offset: int | None = None  # seq = uniqueId + offset
    last_seq: int = -1

    def holds(self, timestamp: float) -> bool:
        return self.start - _CLOCK_SKEW_S <= timestamp and (self.stop is None or timestamp <= self.stop + _CLOCK_SKEW_S)


class PvaFrameBridge:
    """NTNDArray updates of ``pv`` to frames of ``stream`` (see the module docstring).

    Parameters
    ----------
    pv : str
        The NTNDArray PV (areaDetector: ``PREFIX:Pva1:Image``).
    stream : str
        The frames' stream name (the detector's name in the plans).
    documents : DocumentSubscriber
        The document channel, for the runs' uids and time windows.
    frames : FramePublisher
        Where the frames go.
    max_waiting_bytes : int
        Frames held while no run is known for them, at most.
    pva_conf : dict, optional
        p4p client settings (``EPICS_PVA_ADDR_LIST``, ...) instead of the environment's.
    queue_size : int
        Updates the PV Access server may queue for the bridge (``record[queueSize=...]``), and
        the bridge for its thread, before the server squashes them (the frames lost then are
        counted as missing).
    """

    def __init__(self, pv: str, stream: str, *, documents: DocumentSubscriber, frames: FramePublisher,
                 max_waiting_bytes: int = 1 << 30, pva_conf: dict[str, str] | None = None,
                 queue_size: int = 32) -> None:  # fmt: skip
        if not pv or not stream:
            raise ConfigError(f"bridge: need a PV and a stream name, got {pv!r}, {stream!r}")
        if queue_size < 1:
            raise ConfigError(f"bridge: queue_size must be >= 1, got {queue_size}")
        self.pv, self.stream = pv, stream
        self.documents, self.frames = documents, frames
        self.max_waiting_bytes = max_waiting_bytes
        self.pva_conf, self.queue_size = pva_conf, queue_size
        self.counts = BridgeCounts()
        self._counts_lock = threading.Lock()  # p4p's thread and the bridge's both count
        self._runs: deque[_Run] = deque(maxlen=8)  # the latest runs: frames come late, by their time stamps
        # bounded: a full queue holds p4p's thread up, and the server squashes what it cannot send
        self._updates: queue.Queue[_Update] = queue.Queue(maxsize=queue_size)
        self._waiting: deque[_Update] = deque()
        self._waiting_bytes = 0
        self._subscription = None
        self._context = self._queue = None
        self._connected = False
        self.handled_unique_id = 0  # the last frame whose update was sent or dropped (its batch's last)

    @property
    def run_uid(self) -> str | None:
        """The open run's uid (None between runs)."""
        return self._runs[-1].uid if self._runs and self._runs[-1].stop is None else None

    def _count(self, name: str, n: int = 1) -> None:
        with self._counts_lock:
            setattr(self.counts, name, getattr(self.counts, name) + n)

    # -- PV Access side (p4p's threads) --------------------------------------------------------

    def start(self) -> PvaFrameBridge:
        """Subscribe to the PV (p4p's client, its own threads)."""
        try:
            from p4p.client.thread import Context  # p4p only for the bridge
            from p4p.util import ThreadedWorkQueue
        except ImportError as missing:
            raise ConfigError(f"bridge: PV Access needs p4p (pip install -e '.[epics]'): {missing}") from None

        # the updates' own thread (p4p's default ones live as long as the process)
        self._queue = ThreadedWorkQueue(name=f"bridge {self.pv}", maxsize=0, daemon=True).start()
        self._context = Context("pva", nt=False, conf=self.pva_conf, useenv=self.pva_conf is None)
        request = f"record[queueSize={self.queue_size}]"
        self._subscription = self._context.monitor(self.pv, self._on_update, request=request, notify_disconnect=True,
                                                   queue=self._queue)  # fmt: skip
        return self

    def _on_update(self, value: Any) -> None:
        from p4p.nt import NTNDArray

        if isinstance(value, Exception):  # not connected yet, a disconnect, or the server's error
            (logger.warning if self._connected else logger.info)("bridge %s: %s", self.pv, value)
            self._connected = False
            return
        if not self._connected:  # a monitor's first update is the PV's value then: an old frame
            self._connected = True
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self._handled(int(value["uniqueId"]))
            return
        try:
            array = NTNDArray.unwrap(value)
            stamp = value["timeStamp"]
            timestamp = float(stamp["secondsPastEpoch"]) + 1e-9 * float(stamp["nanoseconds"])
            attributes = dict(array.attrib)
            positions, indices = frame_metadata(attributes)
            data = np.asarray(array)
            batch = {}
            if BATCH_COUNTER in attributes:
                if data.ndim != 3:
                    raise ValueError(f"a batch of {data.ndim} dimensions")
                batch = {"counter": str(attributes[BATCH_COUNTER]), "period_s": float(attributes[BATCH_PERIOD])}
            update = _Update(int(value["uniqueId"]), timestamp, data, positions, indices, **batch)
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            self._count("invalid")
            logger.warning("bridge %s: an update that is not a valid NTNDArray (%s), skipped", self.pv, error)
            return
        self._updates.put(update)

    # -- the frame channel's side (the bridge's thread) ---------------------------------------

    def run(self, stop: threading.Event, poll_s: float = 0.01) -> None:
        """Send updates as frames until ``stop`` is set."""
        run_bridges([self], stop, poll_s)

    def step(self, timeout_s: float = 0.01) -> None:
        """Take the documents that came, then the updates (waiting at most ``timeout_s`` for the
        first). Each frame goes to the run whose time window holds its time stamp: documents and
        frames come on different paths, so their arrival order means nothing."""
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
            self._runs.append(_Run(doc["uid"], float(doc.get("time", 0.0))))
            waiting, self._waiting, self._waiting_bytes = self._waiting, deque(), 0
            for update in waiting:
                self._take(update, waited=True)
        elif name == "stop":
            for run in self._runs:
                if run.uid == doc.get("run_start"):
                    run.stop = float(doc.get("time", 0.0))

    def _take(self, update: _Update, *, waited: bool = False) -> None:
        run = next((run for run in reversed(self._runs) if run.holds(update.timestamp)), None)
        if run is not None:
            self._send(run, update)
        elif waited or (self._runs and update.timestamp < self._runs[-1].start):
            self._count("dropped_outside_runs", update.n_frames)  # before the latest run, in none: not a run's
        else:  # the start of its run has not come yet
            self._waiting.append(update)
            self._waiting_bytes += update.data.nbytes
            while self._waiting_bytes > self.max_waiting_bytes:
                dropped = self._waiting.popleft()
                self._waiting_bytes -= dropped.data.nbytes
                self._count("dropped_outside_runs", dropped.n_frames)
            return
        self._handled(update.unique_id + update.n_frames - 1)

    def _handled(self, unique_id: int) -> None:
        with self._counts_lock:  # p4p's thread and the bridge's both hand frames on
            self.handled_unique_id = max(self.handled_unique_id, unique_id)

    def _send(self, run: _Run, update: _Update) -> None:
        if run.offset is None:
            run.offset = -update.unique_id
        seq = update.unique_id + run.offset
        if seq <= run.last_seq:  # the IOC's count went back (a restart): the run's numbering goes on
            logger.warning("bridge %s: uniqueId went back from %d to %d; numbering on from seq %d", self.pv,
                           run.last_seq - run.offset, update.unique_id, run.last_seq + 1)  # fmt: skip
            self._count("restarts")
            run.offset, seq = run.last_seq + 1 - update.unique_id, run.last_seq + 1
        elif seq > run.last_seq + 1:
            self._count("missing", seq - run.last_seq - 1)
        n, data = update.n_frames, update.data
        batch = {} if n == 1 else {
            "n_frames": n, "counter": update.counter,
            "timestamps": tuple((update.timestamp + update.period_s * np.arange(n)).tolist())}  # fmt: skip
        if update.counter is not None and n == 1:  # a batch of one is a frame
            data = data[0]
        header = FrameHeader(run_uid=run.uid, stream=self.stream, seq=seq, timestamp=update.timestamp,
                             dtype=data.dtype.str, shape=data.shape, positions=update.positions,
                             indices=update.indices, **batch)  # fmt: skip
        run.last_seq = seq + n - 1
        try:
            self.frames.send(header, data)
        except (FrameDecodeError, ValueError, TypeError) as refused:  # a dtype or header the channel does not carry
            self._count("invalid", n)
            logger.warning("bridge %s: frame %d not sent: %s", self.pv, update.unique_id, refused)
            return
        self._count("sent", n)

    def close(self) -> None:
        """Stop the subscription (the channels are the caller's); frames still held are counted
        as dropped."""
        if self._subscription is not None:
            self._subscription.close()
        if self._context is not None:
            self._context.close()
        if self._queue is not None:
            self._queue.stop()
        self._subscription = self._context = self._queue = None
        while not self._updates.empty():
            self._waiting.append(self._updates.get_nowait())
        self._count("dropped_outside_runs", sum(update.n_frames for update in self._waiting))
        self._waiting.clear()


def run_bridges(bridges: list[PvaFrameBridge], stop: threading.Event, poll_s: float = 0.01) -> None:
    """Send the updates of several bridges (an end station's detectors) as frames, in one thread,
    until ``stop`` is set: they may share one frame channel, which wants one thread."""
    wait_s = poll_s / max(len(bridges), 1)
    while not stop.is_set():
        for bridge in bridges:
            try:
                bridge.step(wait_s)
            except Exception:  # one bad step must not end the detectors' frames: said, and on
                logger.exception("bridge %s: a step failed", bridge.pv)
