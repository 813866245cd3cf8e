"""The socket plumbing under every endpoint of :mod:`streaming.wire.transport`.

- :class:`Endpoint`: one ZeroMQ socket, bound or connected, with explicit high-water marks,
  a linger on close, context-manager support and ``RuntimeError`` on use after close.
- :class:`SubscriptionCounter`: counts the subscriptions of an XPUB socket, for the
  readiness handshake (``wait_for_subscribers``).
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from streaming.errors import ConfigError, HandshakeTimeoutError

__all__ = ["Endpoint", "SubscriptionCounter", "deadline_remaining_ms"]


class Endpoint:
    """One socket, bound or connected, with explicit high-water mark and clean close."""

    def __init__(
        self, socket_type: int, address: str, *, bind: bool, hwm: int, context: zmq.Context | None, linger_s: float
    ) -> None:
        if hwm < 0:
            raise ValueError(f"hwm must be >= 0, got {hwm}")
        self._context = context if context is not None else zmq.Context.instance()
        self.socket = self._context.socket(socket_type)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, int(linger_s * 1000))
        self._closed = False
        try:
            if bind:
                # "tcp://host:0" asks for any free port, as "tcp://host:*" does in ZeroMQ.
                self.socket.bind(address[:-2] + ":*" if address.endswith(":0") else address)
                self.address = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
            else:
                self.socket.connect(address)
                self.address = address
        except zmq.ZMQError as exc:
            self.socket.close(linger=0)
            raise ConfigError(f"endpoint {address!r}: cannot {'bind' if bind else 'connect'} ({exc})") from exc
        self.bound = bind

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} on {self.address} is closed; create a new one")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, linger_s: float | None = None) -> None:
        """Close the socket; queued outgoing messages get ``linger_s`` seconds to leave."""
        if not self._closed:
            self._closed = True
            self.socket.close(linger=None if linger_s is None else int(linger_s * 1000))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r}, bound={self.bound})"


def deadline_remaining_ms(deadline: float | None) -> int | None:
    return None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))


class SubscriptionCounter:
    """Counts subscribers of an XPUB socket from its (un)subscribe messages."""

    socket: zmq.Socket
    address: str

    def _init_subscriptions(self, *, block_when_full: bool) -> None:
        self.socket.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscribe, not just the first per topic
        # XPUB_NODROP: at the high-water mark, send blocks instead of dropping the message
        self.socket.setsockopt(zmq.XPUB_NODROP, int(block_when_full))
        self._n_subscriptions = 0

    def _drain_subscriptions(self, timeout_ms: int | None) -> None:
        while self.socket.poll(timeout_ms, zmq.POLLIN):
            message = self.socket.recv()
            self._n_subscriptions += 1 if message[:1] == b"\x01" else -1
            timeout_ms = 0

    @property
    def n_subscriptions(self) -> int:
        """Live subscriptions (a receiver subscribed to k topics counts k)."""
        self._drain_subscriptions(0)
        return self._n_subscriptions

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
