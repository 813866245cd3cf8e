"""Which run each message belongs to, for the recorder.

- :class:`RunRouter`: routes each document to its run, remembering the documents that later
  ones point at, and holds the frames that arrive before their run's start document.
- :class:`PendingFrames`: the frames of one run that wait for its start document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streaming.wire.protocol import Frame

__all__ = ["PendingFrames", "RunRouter"]

# Documents routed by a key pointing at a document routed earlier.
_ROUTE_VIA = {
    "event": "descriptor",
    "event_page": "descriptor",
    "datum": "resource",
    "datum_page": "resource",
    "stream_datum": "stream_resource",
}
# Documents that later documents point at, by their uid.
_ROUTE_TARGETS = ("descriptor", "resource", "stream_resource")


@dataclass
class PendingFrames:
    """Frames of one run received before its start document, each with its receipt time."""

    since: float
    frames: list[tuple[Frame, float]] = field(default_factory=list)
    n_bytes: int = 0


class RunRouter:
    """Route documents to their runs; hold frames until their run's start document comes.

    A start document routes to its own uid; events, datums and stream datums to the run of
    the document they point to; other documents to their ``run_start``, or, lacking one, to
    the latest start seen.

    Attributes
    ----------
    pending : dict of str to PendingFrames
        Frames waiting for their run's start document, by run uid.
    pending_bytes : int
        Total size of the frames waiting, bytes.
    """

    def __init__(self) -> None:
        self._routes: dict[str, str] = {}
        self._last_start: str | None = None
        self.pending: dict[str, PendingFrames] = {}
        self.pending_bytes = 0

    def route(self, name: str, doc: dict[str, Any]) -> str | None:
        """The uid of the run document ``doc`` belongs to, or None when no run seen owns it."""
        run_uid = self._run_of(name, doc)
        if run_uid is None:
            return None
        if name in _ROUTE_TARGETS:
            self._routes[doc["uid"]] = run_uid
        if name == "start":
            self._last_start = run_uid
        return run_uid

    def _run_of(self, name: str, doc: dict[str, Any]) -> str | None:
        if name == "start":
            return doc["uid"]
        if name in _ROUTE_VIA:
            return self._routes.get(doc[_ROUTE_VIA[name]])
        run_start = doc.get("run_start")
        if isinstance(run_start, str):
            return run_start
        # resources without run_start (allowed by the schema) belong to the latest start
        return self._last_start

    def hold(self, frame: Frame, recv_time: float, *, since: float) -> int:
        """Keep ``frame`` until its run's start document; return the bytes now held in all.

        ``since`` starts the wait of the frame's run, when it is the first of its run to wait.
        """
        pending = self.pending.setdefault(frame.header.run_uid, PendingFrames(since=since))
        pending.frames.append((frame, recv_time))
        pending.n_bytes += frame.data.nbytes
        self.pending_bytes += frame.data.nbytes
        return self.pending_bytes

    def release(self, run_uid: str) -> list[tuple[Frame, float]]:
        """The frames that waited for run ``run_uid`` with their receipt times, in arrival order."""
        pending = self.pending.pop(run_uid, None)
        if pending is None:
            return []
        self.pending_bytes -= pending.n_bytes
        return pending.frames

    def overdue(self, now: float, timeout_s: float) -> list[str]:
        """uids of the runs whose frames have waited more than ``timeout_s`` at ``now``."""
        return [run_uid for run_uid, pending in self.pending.items() if now - pending.since > timeout_s]
