"""The socket plumbing under every endpoint of :mod:`streaming.wire.transport`.

- :class:`Endpoint`: one ZeroMQ socket, bound or connected, with explicit high-water marks,
  a linger on close, context-manager support and ``RuntimeError`` on use after close; with the
  process's CURVE security and bind rule (:mod:`.security`). A
  publisher owns its ZeroMQ context, so that closing it waits for its queue (below).
- :class:`SubscriptionCounter`: counts the subscriptions of an XPUB socket, for the
  readiness handshake (``wait_for_subscribers``), and collects its receivers' receipts
  (:mod:`.receipts`, ``wait_for_receipts``).
- :class:`ReceiptSender`: a SUB receiver's hello and run receipts.

Why a publisher owns its context. Closing a ZeroMQ socket returns at once; its queued
messages leave in libzmq's I/O thread, for up to the linger, only while the context lives.
A process that exits after its last send (a replay, a worker told to stop) loses what was
still queued when nothing waits for it, and frames sent without a copy were freed under
libzmq while it still held them (a replay aborted in ``tcp.cpp``). Terminating the context
waits until every socket's queue has been handed to the kernel, or its linger has run out;
a shared process-wide context cannot be terminated by one endpoint, so publishers have one
each (one I/O thread each) unless the caller passes one, and then the caller terminates it.
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from typing import Any

import zmq
import zmq.utils.garbage  # registers pyzmq's exit hook before ours: see _close_at_exit

from streaming.errors import ConfigError, HandshakeTimeoutError, MessageDecodeError

from .receipts import Receipt, ReceiptBook, decode_receipt, encode_receipt, is_receipt
from .security import apply_security

__all__ = ["Endpoint", "ReceiptSender", "SubscriptionCounter", "deadline_remaining_ms"]

logger = logging.getLogger(__name__)


class Endpoint:
    """One socket, bound or connected, with explicit high-water mark and clean close.

    ``own_context``: without a ``context``, make one for this socket alone and terminate it on
    :meth:`close` (publishers: see the module docstring); otherwise the process-wide instance.
    """

    def __init__(
        self,
        socket_type: int,
        address: str,
        *,
        bind: bool,
        hwm: int,
        context: zmq.Context | None,
        linger_s: float,
        own_context: bool = False,
    ) -> None:
        if hwm < 0:
            raise ValueError(f"hwm must be >= 0, got {hwm}")
        self._owned_context = zmq.Context() if context is None and own_context else None
        self._context = context or self._owned_context or zmq.Context.instance()
        self.socket = self._context.socket(socket_type)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, int(linger_s * 1000))
        self._closed = False
        self._curve = None
        try:
            self._curve = apply_security(self.socket, self._context, address, bind=bind)
            if bind:
                # "tcp://host:0" asks for any free port, as "tcp://host:*" does in ZeroMQ.
                self.socket.bind(address[:-2] + ":*" if address.endswith(":0") else address)
                self.address = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
                if self._curve is not None:
                    self._curve.address = self.address
            else:
                self.socket.connect(address)
                self.address = address
        except (zmq.ZMQError, ConfigError) as exc:
            self._release(linger_ms=0)
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"endpoint {address!r}: cannot {'bind' if bind else 'connect'} ({exc})") from exc
        self.bound = bind
        if self._owned_context is not None:  # a publisher's: it sends zero-copy
            _close_at_exit(self)

    def _release(self, linger_ms: int | None) -> None:
        _OPEN.discard(self)
        self.socket.close(linger=linger_ms)
        if self._curve is not None:  # its ZAP handler's sockets go before the context ends
            self._curve.close()
        if self._owned_context is not None:
            self._owned_context.term()

    @property
    def refused_handshakes(self) -> int:
        """Handshakes a CURVE server refused (unauthorised keys; a client that reconnects is
        refused each time); 0 without CURVE or when connecting."""
        return 0 if self._curve is None else self._curve.refused

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} on {self.address} is closed; create a new one")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, linger_s: float | None = None) -> None:
        """Close the socket; queued outgoing messages get ``linger_s`` seconds to leave (by
        default the linger it was made with). With a context of its own, return only once
        they have left (handed to the kernel) or the linger has run out."""
        if not self._closed:
            self._closed = True
            self._release(None if linger_s is None else int(linger_s * 1000))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r}, bound={self.bound})"


# A publisher never closed (a script's) is closed at interpreter exit, its queued
# messages given their linger to leave. It must close before pyzmq's own exit hook stops the
# thread that keeps zero-copy messages' arrays alive: after that, sending them made libzmq abort
# ("Bad address (src/tcp.cpp:227)"). Hooks run last registered first, and pyzmq registers its
# hook on importing zmq.utils.garbage, done above, before this module registers its own.
_OPEN: weakref.WeakSet[Endpoint] = weakref.WeakSet()
_exit_hook: list[bool] = []


def _close_at_exit(endpoint: Endpoint) -> None:
    _OPEN.add(endpoint)
    if not _exit_hook:
        atexit.register(_close_open_endpoints)
        _exit_hook.append(True)


def _close_open_endpoints() -> None:
    for endpoint in list(_OPEN):
        endpoint.close()


def deadline_remaining_ms(deadline: float | None) -> int | None:
    return None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))


class SubscriptionCounter:
    """Counts subscribers of an XPUB socket from its (un)subscribe messages, and collects the
    receipts that ride on them (:mod:`.receipts`)."""

    socket: zmq.Socket
    address: str

    def _init_subscriptions(self, *, block_when_full: bool) -> None:
        self.socket.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscribe, not just the first per topic
        # XPUB_NODROP: at the high-water mark, send blocks instead of dropping the message
        self.socket.setsockopt(zmq.XPUB_NODROP, int(block_when_full))
        self._n_subscriptions = 0
        self.receipts = ReceiptBook()
        self.bad_receipts = 0

    def _drain_subscriptions(self, timeout_ms: int | None) -> None:
        while self.socket.poll(timeout_ms, zmq.POLLIN):
            message = self.socket.recv()
            subscribed, topic = message[:1] == b"\x01", message[1:]
            if is_receipt(topic):
                self._on_receipt(topic, subscribed)
            else:
                self._n_subscriptions += 1 if subscribed else -1
            timeout_ms = 0

    def _on_receipt(self, topic: bytes, subscribed: bool) -> None:
        try:
            receipt = decode_receipt(topic)
        except MessageDecodeError as error:
            self.bad_receipts += 1
            if self.bad_receipts in (1, 10, 100) or self.bad_receipts % 1000 == 0:
                logger.warning("malformed receipt #%d on %s skipped: %s", self.bad_receipts, self.address, error)
            return
        if receipt.kind == "hello":
            self.receipts.hello(receipt, subscribed)
        elif subscribed:  # a run receipt's withdrawal says nothing more
            self.receipts.add(receipt)

    @property
    def n_subscriptions(self) -> int:
        """Live subscriptions (a receiver subscribed to k topics counts k; receipts do not count)."""
        self._drain_subscriptions(0)
        return self._n_subscriptions

    @property
    def receivers(self) -> dict[str, Receipt]:
        """Receivers connected now that confirm runs (have said hello), with their hellos."""
        self._drain_subscriptions(0)
        return self.receipts.receivers

    def wait_for_receipts(self, run_uid: str, timeout_s: float) -> dict[str, Receipt]:
        """Wait until every receiver connected that confirms (has said hello) has sent its
        receipt for ``run_uid``, or ``timeout_s`` seconds; returns the receipts by receiver."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._drain_subscriptions(0)
            receipts = self.receipts.of_run(run_uid)
            remaining = deadline_remaining_ms(deadline)
            if self.receipts.receivers.keys() <= receipts.keys() or remaining == 0:
                return receipts
            self._drain_subscriptions(min(remaining, 100))

    def wait_for_subscribers(self, n: int = 1, timeout_s: float = 10.0) -> None:
        """Block until at least ``n`` subscriptions are registered.

        Subscriptions, not receivers: a receiver filtering on k streams makes k (ours
        without a filter, the recorder's and bluesky's ``RemoteDispatcher``, make one).
        Once this returns, every message published reaches those subscribers (no slow-joiner
        loss). Raises :class:`~streaming.errors.HandshakeTimeoutError` after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        self._drain_subscriptions(0)
        while self._n_subscriptions < n:
            remaining = deadline_remaining_ms(deadline)
            if remaining == 0:
                raise HandshakeTimeoutError(
                    f"{self._n_subscriptions} of {n} subscribers connected to {self.address} within {timeout_s} s"
                )
            self._drain_subscriptions(remaining)


class ReceiptSender:
    """A SUB receiver that confirms what it receives (:mod:`.receipts`): its hello is a
    subscription held while it is connected; :meth:`confirm` sends a run's receipt."""

    socket: zmq.Socket
    receiver: str | None = None

    def _init_receipts(self, receiver: str | None, *, subscriptions: int, streams: tuple[str, ...] | None) -> None:
        self.receiver = receiver if self.socket.type == zmq.SUB else None  # PULL has no way upstream
        if self.receiver is not None:
            hello = Receipt(self.receiver, "hello", subscriptions=subscriptions, streams=streams)
            self.socket.setsockopt(zmq.SUBSCRIBE, encode_receipt(hello))

    def confirm(
        self, run_uid: str, *, documents: int | None = None, frames: dict[str, int] | None = None, ignored: bool = False
    ) -> bool:
        """Tell the publishers what this receiver received of ``run_uid`` (or that it takes no
        part in it, ``ignored``); False if it cannot (no receiver name, or a PULL socket)."""
        if self.receiver is None or self.socket.closed:
            return False
        receipt = Receipt(self.receiver, "ignored" if ignored else "run", run_uid, documents, dict(frames or {}))
        topic = encode_receipt(receipt)
        self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket.setsockopt(zmq.UNSUBSCRIBE, topic)
        return True
