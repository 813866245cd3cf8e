"""Counters for what reached a receiver: sequence gaps and rejected messages.

- :class:`StreamCounts`: received / missing / late counts of one (run, stream).
- :class:`SequenceTracker`: turns per-stream sequence numbers into exact gap counts.
- :class:`RejectionCounter`: counts rejected messages by the field at fault and logs them
  at a decimating rate (1st, 10th, 100th, ... of each kind), never once per message.
- :func:`topic_of`: the stream a rejected message names, when its topic is readable.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streaming.errors import MessageDecodeError

__all__ = ["RejectionCounter", "SequenceTracker", "StreamCounts", "topic_of"]

logger = logging.getLogger(__name__)


@dataclass
class StreamCounts:
    """Counts for one stream of one run.

    Attributes
    ----------
    received : int
        Valid messages received.
    missing : int
        Sequence numbers skipped: frames the sender numbered but that never arrived
        (counted from 0, so frames lost before the first one received count too). Frames
        lost after the last one received leave no trace in the numbering; the run's own
        frame count (its documents) is what reveals those.
    late : int
        Messages whose sequence number was at or below one already seen (duplicates or
        out-of-order arrivals); they are kept, not dropped.
    """

    received: int = 0
    missing: int = 0
    late: int = 0


class SequenceTracker:
    """Exact gap counting over per-(run, stream) sequence numbers that start at 0.

    Only meaningful where one receiver sees every message of a stream (PUB/SUB); a PULL
    worker sees a share of them and must not track.
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = {}
        self.counts: dict[tuple[str, str], StreamCounts] = {}

    def observe(self, run_uid: str, stream: str, seq: int, n_frames: int = 1) -> int:
        """Record one arrival of ``n_frames`` frames from ``seq`` on (a batch); return how many
        sequence numbers it shows to be missing."""
        key = (run_uid, stream)
        counts = self.counts.setdefault(key, StreamCounts())
        counts.received += n_frames
        expected = self._next.get(key, 0)
        if seq < expected:
            counts.late += n_frames
            return 0
        self._next[key] = seq + n_frames
        counts.missing += seq - expected
        return seq - expected

    def restart(self, run_uid: str) -> None:
        """Start counting a run afresh (it is being sent again, e.g. replayed)."""
        for key in [key for key in self.counts if key[0] == run_uid]:
            del self.counts[key]
            self._next.pop(key, None)


class RejectionCounter:
    """Counts rejected messages by field and logs them at a decimating rate.

    Parameters
    ----------
    channel : str
        Name used in log messages (``"frames"``, ``"documents"``).
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.by_field: Counter[str] = Counter()
        #: rejected messages by the stream their topic names (when it is readable)
        self.by_stream: Counter[str] = Counter()
        self.last_error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.by_field.values())

    def reject(self, error: MessageDecodeError, stream: str | None = None) -> None:
        """Count one rejected message; log the 1st, 10th, 100th, ... of each field."""
        self.by_field[error.field] += 1
        if stream is not None:
            self.by_stream[stream] += 1
        self.last_error = str(error)
        count = self.by_field[error.field]
        if count in (1, 10, 100) or count % 1000 == 0:
            logger.warning("rejected %s message #%d on field %s: %s", self.channel, count, error.field, error)


def topic_of(parts: Sequence[Any]) -> str | None:
    """The stream a rejected message claims to belong to, if its topic is readable."""
    if len(parts) != 3:
        return None
    try:
        return bytes(parts[0].buffer if hasattr(parts[0], "buffer") else parts[0]).decode("utf-8")
    except UnicodeDecodeError:
        return None
