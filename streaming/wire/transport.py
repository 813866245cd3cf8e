"""ZeroMQ endpoints for the two channels of operando-stream.

- :class:`DocumentPublisher`: a RunEngine callback that publishes bluesky documents in the
  bluesky 0MQ wire format with msgpack payloads (XPUB, so it can count its subscribers).
- :class:`DocumentSubscriber`: receives and validates documents.
- :class:`FramePublisher`: sends frames, PUB/SUB (every subscriber gets every frame) or
  PUSH/PULL (frames load-balanced over workers).
- :class:`FrameSubscriber`: receives and validates frames (SUB or PULL), counting rejected
  messages and, on SUB, sequence gaps.

Conventions (DESIGN.md): publishers bind and receivers connect, on ``127.0.0.1`` unless told
otherwise; a port of ``0`` or ``*`` picks a free one (see ``.address``). Publishers wait for
their receivers with ``wait_for_subscribers`` before a run starts, so nothing is lost to a
slow joiner. High-water marks are explicit. Every endpoint has ``close()`` and is a context
manager; using it after ``close()`` raises ``RuntimeError``. Nothing is ever pickled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from streaming.errors import HandshakeTimeoutError, MessageDecodeError

from .diagnostics import RejectionCounter, SequenceTracker, topic_of
from .documents import DEFAULT_MAX_DOCUMENT_BYTES, decode_document, encode_document
from .endpoint import Endpoint, ReceiptSender, SubscriptionCounter, deadline_remaining_ms
from .protocol import DEFAULT_MAX_FRAME_BYTES, Frame, FrameHeader, decode_frame, encode_frame

__all__ = [
    "DEFAULT_DOCUMENT_ADDRESS",
    "DEFAULT_DOCUMENT_HWM",
    "DEFAULT_FRAME_ADDRESS",
    "DEFAULT_FRAME_HWM",
    "DocumentPublisher",
    "DocumentSubscriber",
    "FramePublisher",
    "FrameSubscriber",
]

logger = logging.getLogger(__name__)

DEFAULT_DOCUMENT_ADDRESS = "tcp://127.0.0.1:5577"
DEFAULT_FRAME_ADDRESS = "tcp://127.0.0.1:5578"
#: Frames queued per peer before PUB drops (or PUSH blocks): 100 Pilatus 2M frames are
#: 1 GB and one second of the papers' 10 ms exposures.
DEFAULT_FRAME_HWM = 100
DEFAULT_DOCUMENT_HWM = 100_000
DEFAULT_LINGER_S = 5.0
_RECEIVER_LINGER_S = 1.0  # a receipt sent just before close still leaves
_HARD_SIZE_FACTOR = 4  # receive-side hard limit, in multiples of the decoding cap

Pattern = Literal["pub", "push"]


class DocumentPublisher(SubscriptionCounter, Endpoint):
    """Publish bluesky documents; subscribe it to a RunEngine: ``RE.subscribe(publisher)``.

    Parameters
    ----------
    address : str
        ZeroMQ endpoint; port 0 picks a free one.
    prefix : bytes
        bluesky's publisher prefix (no spaces), for receivers that filter on it.
    bind : bool
        Bind (default) so receivers connect; ``False`` connects, e.g. to the in-port of a
        ``bluesky-0MQ-proxy``.
    hwm : int
        Send high-water mark, messages per subscriber.
    block_when_full : bool
        At the high-water mark, wait for the slowest subscriber instead of dropping
        (replay uses this; a live source should not stall).
    context : zmq.Context, optional
        By default its own: :meth:`close` returns once the queue has left, or ``linger_s``
        seconds have passed (:mod:`.endpoint`). A context passed in is the caller's to end.
    """

    def __init__(
        self,
        address: str = DEFAULT_DOCUMENT_ADDRESS,
        *,
        prefix: bytes = b"",
        bind: bool = True,
        hwm: int = DEFAULT_DOCUMENT_HWM,
        block_when_full: bool = False,
        context: zmq.Context | None = None,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        if not isinstance(prefix, bytes) or b" " in prefix:
            raise ValueError(f"prefix must be bytes without b' ', got {prefix!r}")
        super().__init__(zmq.XPUB, address, bind=bind, hwm=hwm, context=context, linger_s=linger_s, own_context=True)
        self._init_subscriptions(block_when_full=block_when_full)
        self.prefix = prefix
        self.n_sent = 0

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Send one document (the RunEngine callback signature)."""
        self._check_open()
        self.socket.send(encode_document(name, doc, prefix=self.prefix))
        self.n_sent += 1


class DocumentSubscriber(ReceiptSender, Endpoint):
    """Receive and validate bluesky documents from the document channel.

    Invalid messages are counted in ``rejections`` (by field), logged at a decimating rate
    and skipped; they never raise out of :meth:`recv`. With a ``receiver`` name it confirms
    runs to the publishers (:meth:`~.endpoint.ReceiptSender.confirm`, :mod:`.receipts`).
    """

    def __init__(
        self,
        address: str = DEFAULT_DOCUMENT_ADDRESS,
        *,
        prefix: bytes = b"",
        bind: bool = False,
        hwm: int = DEFAULT_DOCUMENT_HWM,
        context: zmq.Context | None = None,
        max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
        receiver: str | None = None,
    ) -> None:
        super().__init__(zmq.SUB, address, bind=bind, hwm=hwm, context=context, linger_s=_RECEIVER_LINGER_S)
        self.socket.setsockopt(zmq.SUBSCRIBE, prefix)
        self._init_receipts(receiver, subscriptions=1, streams=None)
        self.prefix = prefix
        self.max_document_bytes = max_document_bytes
        self.socket.setsockopt(zmq.MAXMSGSIZE, _HARD_SIZE_FACTOR * max_document_bytes)
        self.rejections = RejectionCounter("document")
        self.n_received = 0

    def accept(self, message: bytes | zmq.Frame) -> tuple[str, dict[str, Any]] | None:
        """Validate one received message; return ``(name, doc)``, or ``None`` if rejected."""
        try:
            prefix, name, doc = decode_document(
                message.buffer if isinstance(message, zmq.Frame) else message,
                max_document_bytes=self.max_document_bytes,
            )
        except MessageDecodeError as error:
            self.rejections.reject(error)
            return None
        if prefix != self.prefix and self.prefix:
            return None
        self.n_received += 1
        return name, doc

    def recv(self, timeout_s: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """Next valid ``(name, doc)``; ``None`` if none arrived within ``timeout_s`` seconds."""
        self._check_open()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.socket.poll(deadline_remaining_ms(deadline), zmq.POLLIN):
            result = self.accept(self.socket.recv(copy=False))
            if result is not None:
                return result
        return None


_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)  # fmt: skip


class FramePublisher(SubscriptionCounter, Endpoint):
    """Send frames on the frame channel.

    Parameters
    ----------
    address : str
        ZeroMQ endpoint; port 0 picks a free one.
    pattern : {"pub", "push"}
        ``"pub"``: every subscriber gets every frame; when a subscriber falls ``hwm`` frames
        behind, frames to it are dropped (its sequence counters show the gap), unless
        ``block_when_full``.
        ``"push"``: frames are load-balanced over connected workers; ``send`` blocks when all
        are ``hwm`` frames behind (back-pressure, nothing dropped).
    bind : bool
        Bind (default) so receivers connect.
    hwm : int
        High-water mark, frames per peer.
    block_when_full : bool
        ``"pub"`` only: at the high-water mark, wait for the slowest subscriber instead of
        dropping. Replay uses this to run faster than real time without loss; a live
        detector should not stall, so it is off by default.
    context : zmq.Context, optional
        By default its own: :meth:`close` returns once the queue has left, or ``linger_s``
        seconds have passed (:mod:`.endpoint`). A context passed in is the caller's to end.
    clock : callable
        Returns the time stamp (s since the epoch) of frames sent without one.
    """

    def __init__(
        self,
        address: str = DEFAULT_FRAME_ADDRESS,
        *,
        pattern: Pattern = "pub",
        bind: bool = True,
        hwm: int = DEFAULT_FRAME_HWM,
        block_when_full: bool = False,
        context: zmq.Context | None = None,
        clock: Callable[[], float] = time.time,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        if pattern not in ("pub", "push"):
            raise ValueError(f"pattern must be 'pub' or 'push', got {pattern!r}")
        super().__init__(
            zmq.XPUB if pattern == "pub" else zmq.PUSH,
            address,
            bind=bind,
            hwm=hwm,
            context=context,
            linger_s=linger_s,
            own_context=True,
        )
        self.pattern = pattern
        self._clock = clock
        self._next_seq: dict[tuple[str, str], int] = {}
        self.n_sent = 0
        if pattern == "pub":
            self._init_subscriptions(block_when_full=block_when_full)
        else:
            self._monitor = self.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                                                           | _HANDSHAKE_FAILED)  # fmt: skip
            self._n_peers = 0
            self._refused_to_end = 0  # failed handshakes (CURVE refusals) whose disconnect is still to come

    def wait_for_subscribers(self, n: int = 1, timeout_s: float = 10.0) -> None:
        """Block until ``n`` receivers are connected (subscribed on PUB, handshaken on PUSH)."""
        if self.pattern == "pub":
            return super().wait_for_subscribers(n, timeout_s)
        deadline = time.monotonic() + timeout_s
        while self._n_peers < n:
            remaining = deadline_remaining_ms(deadline)
            if remaining == 0 or not self._monitor.poll(remaining, zmq.POLLIN):
                raise HandshakeTimeoutError(
                    f"{self._n_peers} of {n} workers connected to {self.address} within {timeout_s} s"
                )
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._n_peers += 1
            elif event & _HANDSHAKE_FAILED:  # its disconnect follows: not a peer leaving
                self._refused_to_end += 1
            elif self._refused_to_end:
                self._refused_to_end -= 1
            else:
                self._n_peers -= 1

    def send(self, header: FrameHeader, data: np.ndarray) -> None:
        """Send one frame with an explicit header (used by replay to keep the original one).

        ``data`` is sent without a copy: do not modify it afterwards.
        """
        self._check_open()
        self.socket.send_multipart(encode_frame(header, data), copy=False)
        self.n_sent += 1

    def publish(
        self,
        stream: str,
        data: np.ndarray,
        *,
        run_uid: str,
        positions: dict[str, float] | None = None,
        indices: dict[str, int] | None = None,
        timestamp: float | None = None,
        timestamps: Sequence[float] | None = None,
        counter: str | None = None,
        frame_positions: dict[str, Sequence[float]] | None = None,
    ) -> FrameHeader:
        """Send one frame, or with ``timestamps`` (one per frame) a batch stacked along
        ``data``'s first axis whose index ``counter`` counts its frames and whose
        ``frame_positions`` change from frame to frame; numbered in the (run, stream)
        sequence of frames. Returns the header.

        Like :meth:`send`, without a copy: do not modify ``data`` afterwards (allocate a new
        array per frame rather than refilling one buffer).
        """
        key = (run_uid, stream)
        seq = self._next_seq.get(key, 0)
        array = np.asarray(data, order="C")
        n_frames = 1 if timestamps is None else len(timestamps)
        positions, moving = dict(positions or {}), {k: tuple(v) for k, v in (frame_positions or {}).items()}
        positions.update({key: values[0] for key, values in moving.items()})  # the first frame's
        if timestamps is not None:
            timestamp = timestamps[0]
            if n_frames == 1:  # a batch of one is a frame
                array, moving = array[0], {}
        header = FrameHeader(
            run_uid=run_uid, stream=stream, seq=seq, dtype=array.dtype.str, shape=array.shape,
            timestamp=self._clock() if timestamp is None else timestamp, positions=positions,
            indices=dict(indices or {}), n_frames=n_frames, timestamps=tuple(timestamps) if n_frames > 1 else (),
            counter=counter if n_frames > 1 else None, frame_positions=moving,
        )  # fmt: skip
        self.send(header, array)
        self._next_seq[key] = seq + n_frames
        return header

    def wait_writable(self, stop: Any = None, poll_ms: int = 100) -> bool:
        """Wait until a frame can be sent without blocking (a peer has room), looking at
        ``stop`` (an event, or None) every ``poll_ms``; False if ``stop`` was set first.
        A PUSH sender with no peer, or every peer full, would otherwise block for ever."""
        self._check_open()
        while not self.socket.poll(poll_ms, zmq.POLLOUT):
            if stop is not None and stop.is_set():
                return False
        return True

    def skip(self, stream: str, *, run_uid: str, n: int = 1) -> None:
        """Advance a stream's sequence number without sending (a frame the device lost)."""
        key = (run_uid, stream)
        self._next_seq[key] = self._next_seq.get(key, 0) + n

    def close(self, linger_s: float | None = None) -> None:
        if self.pattern == "push" and not self._closed:
            self.socket.disable_monitor()
            self._monitor.close(linger=0)
        super().close(linger_s)


class FrameSubscriber(ReceiptSender, Endpoint):
    """Receive and validate frames (SUB from a PUB publisher, or PULL from a PUSH one).

    Parameters
    ----------
    address : str
        Endpoint of the publisher.
    pattern : {"sub", "pull"}
    streams : iterable of str, optional
        Only these streams (SUB filters at the sender; exact names are checked here).
    track_sequence : bool, optional
        Count sequence gaps; default ``True`` for SUB, ``False`` for PULL (a worker sees only
        its share of the frames).
    max_frame_bytes : int
        Largest frame accepted, bytes.
    receiver : str, optional
        Its name, to confirm runs to the publisher (SUB only:
        :meth:`~.endpoint.ReceiptSender.confirm`, :mod:`.receipts`).

    Invalid messages are counted in ``rejections`` (by field), logged at a decimating rate
    and skipped; they never raise out of :meth:`recv`.
    """

    def __init__(
        self,
        address: str = DEFAULT_FRAME_ADDRESS,
        *,
        pattern: Literal["sub", "pull"] = "sub",
        streams: list[str] | tuple[str, ...] | None = None,
        bind: bool = False,
        hwm: int = DEFAULT_FRAME_HWM,
        context: zmq.Context | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        track_sequence: bool | None = None,
        receiver: str | None = None,
    ) -> None:
        if pattern not in ("sub", "pull"):
            raise ValueError(f"pattern must be 'sub' or 'pull', got {pattern!r}")
        super().__init__(
            zmq.SUB if pattern == "sub" else zmq.PULL, address, bind=bind, hwm=hwm, context=context,
            linger_s=_RECEIVER_LINGER_S,
        )  # fmt: skip
        self.pattern = pattern
        self.streams = frozenset(streams) if streams else None
        if pattern == "sub":
            topics = sorted(self.streams) if self.streams else [""]
            for topic in topics:
                self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
            self._init_receipts(receiver, subscriptions=len(topics),
                                streams=None if self.streams is None else tuple(sorted(self.streams)))  # fmt: skip
        self.max_frame_bytes = max_frame_bytes
        # libzmq drops the connection of a peer sending parts this large, before buffering
        # them; up to it, oversize frames are received, counted and skipped (field "size")
        self.socket.setsockopt(zmq.MAXMSGSIZE, _HARD_SIZE_FACTOR * max_frame_bytes)
        self.rejections = RejectionCounter("frame")
        track = pattern == "sub" if track_sequence is None else track_sequence
        self.sequences = SequenceTracker() if track else None
        self.n_received = 0
        self._gap_events = 0

    def accept(self, parts: list[Any]) -> Frame | None:
        """Validate one received multipart message; return the frame, or ``None`` if rejected."""
        try:
            frame = decode_frame(parts, max_frame_bytes=self.max_frame_bytes)
        except MessageDecodeError as error:
            self.rejections.reject(error, stream=topic_of(parts))
            return None
        header = frame.header
        if self.streams is not None and header.stream not in self.streams:
            return None
        self.n_received += 1
        if self.sequences is not None and self.sequences.observe(
            header.run_uid, header.stream, header.seq, header.n_frames
        ):
            self._gap_events += 1
            if self._gap_events in (1, 10, 100) or self._gap_events % 1000 == 0:
                counts = self.sequences.counts[(header.run_uid, header.stream)]
                logger.warning(
                    "gap #%d in %s: %d frames missing so far", self._gap_events, header.stream, counts.missing
                )
        return frame

    def recv(self, timeout_s: float | None = None) -> Frame | None:
        """Next valid frame; ``None`` if none arrived within ``timeout_s`` seconds."""
        self._check_open()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.socket.poll(deadline_remaining_ms(deadline), zmq.POLLIN):
            frame = self.accept(self.socket.recv_multipart(copy=False))
            if frame is not None:
                return frame
        return None
