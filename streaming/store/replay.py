"""Replay a recorded run through the same channels the live run used.

- :class:`ReplayConfig`: speed factor (or as fast as possible) and an optional time window.
- :func:`replay`: re-emits a file's documents and frames, in their original arrival order,
  at the original pace times the speed factor, through a
  :class:`~streaming.wire.transport.DocumentPublisher` and a
  :class:`~streaming.wire.transport.FramePublisher`. Consumers cannot tell a replay from the
  live run: frame headers (run uid, sequence numbers, time stamps) are the recorded ones.

A time window keeps the run well-formed: start, descriptor, resource, stream-resource and
stop documents are always sent; events, datums and frames only inside the window (frames
outside it then show as sequence gaps at the receivers, which is the truth).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from streaming.errors import ConfigError
from streaming.wire.transport import DocumentPublisher, FramePublisher

from .runreader import RunFileReader

__all__ = ["ReplayConfig", "ReplayStats", "replay"]

logger = logging.getLogger(__name__)

_STRUCTURAL = frozenset({"start", "descriptor", "resource", "stream_resource", "stop"})


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """Settings of :func:`replay`.

    Attributes
    ----------
    speed : float or None
        Pace relative to the recording (2.0 = twice as fast); ``None`` sends as fast as
        the sockets take it.
    start_s, stop_s : float or None
        Window in seconds from the run's first recorded message; ``None`` is open-ended.
    """

    speed: float | None = 1.0
    start_s: float | None = None
    stop_s: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and not self.speed > 0:
            raise ConfigError(f"replay.speed: must be > 0 (or None for as fast as possible), got {self.speed!r}")
        for name in ("start_s", "stop_s"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"replay.{name}: must be >= 0 seconds, got {value!r}")
        if self.start_s is not None and self.stop_s is not None and self.stop_s <= self.start_s:
            raise ConfigError(f"replay.stop_s: must be after start_s={self.start_s}, got {self.stop_s}")


@dataclass
class ReplayStats:
    documents_sent: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    elapsed_s: float = 0.0


def replay(
    reader: RunFileReader,
    documents: DocumentPublisher,
    frames: FramePublisher,
    config: ReplayConfig = ReplayConfig(),
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayStats:
    """Send a recorded run again; returns what was sent.

    The caller makes sure the receivers are subscribed first
    (``wait_for_subscribers`` on both publishers).
    """
    stats = ReplayStats()
    started = clock()
    first_recv_time: float | None = None
    for message in reader.messages():
        if first_recv_time is None:
            first_recv_time = message.recv_time
        # frames that waited for their start document were received before it: offset 0
        offset_s = max(0.0, message.recv_time - first_recv_time)
        in_window = (config.start_s is None or offset_s >= config.start_s) and (
            config.stop_s is None or offset_s < config.stop_s
        )
        if message.document is not None and message.document[0] in _STRUCTURAL:
            pass  # always sent, without waiting, so the run stays well-formed
        elif not in_window:
            continue
        elif config.speed is not None:
            delay = (offset_s - (config.start_s or 0.0)) / config.speed - (clock() - started)
            if delay > 0:
                sleep(delay)
        if message.document is not None:
            documents(*message.document)
            stats.documents_sent += 1
        else:
            header, data = message.frame
            frames.send(header, data)
            stats.frames_sent += 1
            stats.bytes_sent += data.nbytes
    stats.elapsed_s = clock() - started
    logger.info(
        "replayed %d documents and %d frames from %s in %.2f s",
        stats.documents_sent,
        stats.frames_sent,
        reader.path,
        stats.elapsed_s,
    )
    return stats
