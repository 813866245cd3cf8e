"""Replay a recorded run through the same channels the live run used.

- :class:`ReplayConfig`: speed factor (or as fast as possible) and an optional time window.
- :func:`replay`: re-emits a file's documents and frames, in their original arrival order,
  at the original pace times the speed factor, through a
  :class:`~streaming.wire.transport.DocumentPublisher` and a
  :class:`~streaming.wire.transport.FramePublisher`. Consumers cannot tell a replay from the
  live run: frame headers (run uid, sequence numbers, time stamps) are the recorded ones.
- :func:`confirm_delivery`: after a replay, waits for the receivers' receipts
  (:mod:`streaming.wire.receipts`) and reconciles them with what was sent
  (:class:`DeliveryReport`): what each receiver confirmed, what it lacks, and how many
  subscriptions belong to receivers that cannot confirm.

A time window keeps the run well-formed: start, descriptor, resource, stream-resource and
stop documents are always sent; events, datums and frames only inside the window (frames
outside it then show as sequence gaps at the receivers, which is the truth).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from streaming.errors import ConfigError
from streaming.wire.receipts import Receipt
from streaming.wire.transport import DocumentPublisher, FramePublisher

from .runreader import RunFileReader

__all__ = ["DeliveryReport", "ReceiverDelivery", "ReplayConfig", "ReplayStats", "confirm_delivery", "replay"]

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
    """What :func:`replay` sent: counts, bytes, seconds, the run and its frames per stream."""

    documents_sent: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    elapsed_s: float = 0.0
    run_uid: str = ""
    frames_by_stream: Counter[str] = field(default_factory=Counter)


def replay(
    reader: RunFileReader,
    documents: DocumentPublisher,
    frames: FramePublisher,
    config: ReplayConfig = ReplayConfig(),
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_frames: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Send a recorded run again; returns what was sent.

    The caller makes sure the receivers are subscribed first
    (``wait_for_subscribers`` on both publishers). ``on_frames(n)`` is called after each
    frame message with the frames it held (a progress bar's ``update``).
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
            if message.document[0] == "start":
                stats.run_uid = message.document[1]["uid"]
        else:
            header, data = message.frame
            frames.send(header, data)
            stats.frames_sent += header.n_frames  # a batch is many frames, as receivers count them
            stats.frames_by_stream[header.stream] += header.n_frames
            stats.bytes_sent += data.nbytes
            if on_frames is not None:
                on_frames(header.n_frames)
    stats.elapsed_s = clock() - started
    logger.info(
        "replayed %d documents and %d frames from %s in %.2f s",
        stats.documents_sent,
        stats.frames_sent,
        reader.path,
        stats.elapsed_s,
    )
    return stats


@dataclass(frozen=True)
class ReceiverDelivery:
    """What one receiver confirmed on one channel (``"documents"`` or ``"frames"``).

    ``confirmed`` is None when no receipt came in time; ``missing`` counts, per stream on
    the frame channel, what was sent and not confirmed."""

    receiver: str
    channel: str
    sent: int
    confirmed: int | None
    missing: int
    ignored: bool = False

    def line(self) -> str:
        if self.ignored:
            return f"{self.receiver}: takes no part in this run ({self.channel})"
        if self.confirmed is None:
            return f"{self.receiver}: no receipt for the {self.sent} {self.channel} sent (gone, or still busy)"
        lacking = f", {self.missing} missing" if self.missing else ""
        return f"{self.receiver}: {self.confirmed} of {self.sent} {self.channel} confirmed{lacking}"


@dataclass
class DeliveryReport:
    """Receipts reconciled with what a replay sent (:func:`confirm_delivery`)."""

    receivers: list[ReceiverDelivery] = field(default_factory=list)
    #: per channel, subscriptions held by receivers that cannot confirm (not this project's)
    unconfirmable: dict[str, int] = field(default_factory=dict)

    @property
    def undelivered(self) -> int:
        """Documents and frames sent that a receiver confirmed it lacks."""
        return sum(r.missing for r in self.receivers)

    @property
    def unconfirmed(self) -> list[ReceiverDelivery]:
        """Receivers that confirm runs but sent no receipt for this one in time."""
        return [r for r in self.receivers if r.confirmed is None and not r.ignored]

    @property
    def complete(self) -> bool:
        """Every receiver that can confirm did, and lacks nothing."""
        return not self.undelivered and not self.unconfirmed

    def lines(self) -> list[str]:
        lines = [r.line() for r in self.receivers]
        for channel, n in self.unconfirmable.items():
            if n > 0:
                lines.append(f"{n} {channel} subscription(s) cannot confirm what they received "
                             "(not operando-stream receivers): their delivery is not known")  # fmt: skip
        return lines


def confirm_delivery(
    stats: ReplayStats, documents: DocumentPublisher, frames: FramePublisher, *, timeout_s: float
) -> DeliveryReport:
    """Wait up to ``timeout_s`` for every confirming receiver's receipt of the replayed run,
    and reconcile the receipts with ``stats`` (what was sent)."""
    deadline = time.monotonic() + timeout_s
    report = DeliveryReport()
    for channel, publisher in (("documents", documents), ("frames", frames)):
        receipts = publisher.wait_for_receipts(stats.run_uid, max(0.0, deadline - time.monotonic()))
        hellos = publisher.receivers
        for receiver in sorted(hellos.keys() | receipts.keys()):
            hello = hellos.get(receiver)
            streams = None if hello is None else hello.streams
            report.receivers.append(_delivery(channel, receiver, receipts.get(receiver), stats, streams))
        report.unconfirmable[channel] = publisher.n_subscriptions - sum(h.subscriptions for h in hellos.values())
    return report


def _delivery(
    channel: str, receiver: str, receipt: Receipt | None, stats: ReplayStats, streams: tuple[str, ...] | None
) -> ReceiverDelivery:
    if receipt is not None and receipt.kind == "ignored":
        return ReceiverDelivery(receiver, channel, 0, 0, 0, ignored=True)
    if channel == "documents":
        confirmed = None if receipt is None else receipt.documents or 0
        missing = 0 if confirmed is None else max(0, stats.documents_sent - confirmed)
        return ReceiverDelivery(receiver, channel, stats.documents_sent, confirmed, missing)
    sent = {s: n for s, n in stats.frames_by_stream.items() if streams is None or s in streams}
    if receipt is None:
        return ReceiverDelivery(receiver, channel, sum(sent.values()), None, 0)
    missing = sum(max(0, n - receipt.frames.get(s, 0)) for s, n in sent.items())
    return ReceiverDelivery(receiver, channel, sum(sent.values()), sum(receipt.frames.values()), missing)
