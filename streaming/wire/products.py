"""The products channel: what the live analyses hold, for dashboards (a third channel).

A product is a named piece of an analysis' current state: the sinogram and reconstruction of
the scan under way at a 2θ, the latest and mean pattern, a finished scan's maps, the
potentiostat's curves, the streams' diagnostics. Each message carries the product's *full*
current state, never a delta, so a receiver that joins or restarts mid-run is complete at its
first update, and a receiver that falls behind loses only states already superseded.

Wire format, as the frame channel's: a ZeroMQ multipart message ``[topic, header, buffer...]``;
``topic`` is the product's name in UTF-8 (SUB filters by prefix), ``header`` a msgpack map
(:func:`encode_product`: name, run uid, sequence, time, plain ``values`` and the dtype and
shape of each array), then one raw C-ordered buffer per array. Validated on receipt
(:func:`decode_product` raises :class:`~streaming.errors.ProductDecodeError` naming the field);
never pickled.

Requests. A receiver asks for what depends on its user's choice (the 2θ channel shown) by a
subscription whose topic is ``?key=value`` (:meth:`ProductSubscriber.request`); the publisher,
an XPUB socket, sees subscriptions come and go (also when the receiver disconnects) and
counts them (:meth:`ProductPublisher.requested`). No product name starts with ``?``, so a
request never matches a message.

- :class:`Product`, :func:`encode_product`, :func:`decode_product`.
- :class:`ProductPublisher`: binds (``tcp://127.0.0.1:5579`` by default), never blocks: at
  its high-water mark (8 messages) a slow receiver's messages are dropped (the next state
  replaces them).
- :class:`ProductSubscriber`: connects, receives and validates, counting rejections.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

from streaming.errors import ProductDecodeError

from .diagnostics import RejectionCounter
from .endpoint import Endpoint
from .protocol import FRAME_DTYPES

__all__ = [
    "DEFAULT_PRODUCTS_ADDRESS",
    "Product",
    "ProductPublisher",
    "ProductSubscriber",
    "decode_product",
    "encode_product",
    "product_key",
]

DEFAULT_PRODUCTS_ADDRESS = "tcp://127.0.0.1:5579"
PRODUCT_PROTOCOL_VERSION = 1
#: Largest header (its ``values``) and largest sum of buffers accepted, bytes.
MAX_PRODUCT_HEADER_BYTES = 1 << 20
MAX_PRODUCT_BYTES = 64 << 20
_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,96}")
_REQUEST = b"?"


def product_key(text: str) -> str:
    """``text`` (a phase's or a peak's name from a config) as a valid array key or name part:
    characters outside letters, digits and ``_.:@-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.:@-]", "_", text)[:96] or "_"


@dataclass(frozen=True)
class Product:
    """One product's full current state.

    Attributes
    ----------
    name : str
        What it is, dotted (``"xrdct.scan@412"``: the scan at 2θ channel 412).
    values : dict
        Plain data (numbers, strings, booleans, lists and maps of them): units in the keys.
    arrays : dict of str to ndarray
        Images and curves, of the frame channel's dtypes.
    run_uid : str
        The run it belongs to (``""`` for none).
    seq : int
        Per publisher and name, rising by one per message (set by the publisher).
    time_s : float
        When it was published, s since the epoch (set by the publisher).
    """

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    run_uid: str = ""
    seq: int = 0
    time_s: float = 0.0


def encode_product(product: Product) -> list[Any]:
    """``[topic, header, buffer...]`` of ``product`` for ``send_multipart(copy=False)``.

    Raises
    ------
    ProductDecodeError
        If the product would not pass :func:`decode_product` (a bad name or dtype).
    """
    if not _NAME.fullmatch(product.name) or product.name.startswith("?"):
        raise ProductDecodeError("name", f"{product.name!r} is not a product name")
    arrays = {key: np.ascontiguousarray(value) for key, value in product.arrays.items()}
    for key, array in arrays.items():
        if not _NAME.fullmatch(key):
            raise ProductDecodeError("arrays", f"{key!r} is not an array key (letters, digits, _.:@-)")
        if array.dtype.str not in FRAME_DTYPES:
            raise ProductDecodeError("dtype", f"array {key!r} has dtype {array.dtype.str!r}")
    header = {
        "version": PRODUCT_PROTOCOL_VERSION, "name": product.name, "run_uid": product.run_uid, "seq": product.seq,
        "time": product.time_s, "values": product.values,
        "arrays": [{"key": key, "dtype": array.dtype.str, "shape": list(array.shape)} for key, array in arrays.items()],
    }  # fmt: skip
    try:
        packed = msgpack.packb(header)
    except (TypeError, ValueError) as exc:
        raise ProductDecodeError("values", f"not plain data ({exc})") from exc
    return [product.name.encode(), packed, *(memoryview(a.reshape(-1)).cast("B") for a in arrays.values())]


def decode_product(parts: list[Any]) -> Product:
    """Validate a received message; arrays are read-only views of its buffers.

    Raises
    ------
    ProductDecodeError
        Naming the field at fault: ``parts``, ``header``, ``version``, ``name``, ``values``,
        ``arrays``, ``dtype``, ``shape`` or ``size``.
    """
    buffers = [part.buffer if hasattr(part, "buffer") else memoryview(part) for part in parts]
    if len(buffers) < 2:
        raise ProductDecodeError("parts", f"expected topic, header and buffers, got {len(buffers)} parts")
    if buffers[1].nbytes > MAX_PRODUCT_HEADER_BYTES:
        raise ProductDecodeError("header", f"{buffers[1].nbytes} bytes exceeds {MAX_PRODUCT_HEADER_BYTES}")
    if sum(b.nbytes for b in buffers[2:]) > MAX_PRODUCT_BYTES:
        raise ProductDecodeError("size", f"buffers exceed {MAX_PRODUCT_BYTES} bytes")
    try:
        header = msgpack.unpackb(buffers[1], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProductDecodeError("header", f"undecodable msgpack ({type(exc).__name__})") from exc
    if not isinstance(header, dict):
        raise ProductDecodeError("header", f"expected a map, got {type(header).__name__}")
    if header.get("version") != PRODUCT_PROTOCOL_VERSION:
        raise ProductDecodeError("version", f"expected {PRODUCT_PROTOCOL_VERSION}, got {header.get('version')!r}")
    name = header.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or bytes(buffers[0]) != name.encode():
        raise ProductDecodeError("name", f"{name!r} is not a product name matching the topic")
    values, specs = header.get("values"), header.get("arrays")
    if not isinstance(values, dict):
        raise ProductDecodeError("values", f"expected a map, got {type(values).__name__}")
    if not isinstance(specs, list) or len(specs) != len(buffers) - 2:
        raise ProductDecodeError("arrays", f"{len(buffers) - 2} buffers but arrays says {specs!r:.80}")
    arrays = {}
    for spec, buffer in zip(specs, buffers[2:], strict=True):
        arrays[_key(spec)] = _view(spec, buffer)
    run_uid, seq, time_s = header.get("run_uid", ""), header.get("seq", 0), header.get("time", 0.0)
    if not (isinstance(run_uid, str) and isinstance(seq, int) and isinstance(time_s, int | float)):
        raise ProductDecodeError("header", "run_uid, seq or time of the wrong type")
    return Product(name, values, arrays, run_uid=run_uid, seq=seq, time_s=float(time_s))


def _key(spec: Any) -> str:
    if not isinstance(spec, dict) or not isinstance(spec.get("key"), str) or not _NAME.fullmatch(spec["key"]):
        raise ProductDecodeError("arrays", f"bad array description {spec!r:.80}")
    return spec["key"]


def _view(spec: dict[str, Any], buffer: memoryview) -> np.ndarray:
    dtype, shape = spec.get("dtype"), spec.get("shape")
    if dtype not in FRAME_DTYPES:
        raise ProductDecodeError("dtype", f"{dtype!r} is not one of the channel's dtypes")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise ProductDecodeError("shape", f"{shape!r:.80} is not a list of sizes")
    if math.prod(shape) * np.dtype(dtype).itemsize != buffer.nbytes:
        raise ProductDecodeError("shape", f"{shape} of {dtype} is not the buffer's {buffer.nbytes} bytes")
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    array.flags.writeable = False
    return array


class ProductPublisher(Endpoint):
    """Publish products (see the module docstring); never blocks.

    Parameters
    ----------
    address : str
        Bound; port 0 picks a free one (``.address``).
    hwm : int
        Messages queued per receiver before its newest are dropped (it gets the next state).
    """

    def __init__(self, address: str = DEFAULT_PRODUCTS_ADDRESS, *, hwm: int = 8) -> None:
        super().__init__(zmq.XPUB, address, bind=True, hwm=hwm, context=None, linger_s=0.5, own_context=True)
        self.socket.setsockopt(zmq.XPUB_VERBOSER, 1)
        self._requests: Counter[bytes] = Counter()
        self._seq: Counter[str] = Counter()
        self._lock = threading.Lock()  # several consumers of one process may share it
        self.n_published = 0
        self._n_receivers = 0

    def publish(self, product: Product) -> None:
        """Stamp (sequence, time) and send ``product`` to every receiver that keeps up."""
        with self._lock:
            self._check_open()
            self._drain()  # subscriptions queue up in libzmq until read, whoever never asks
            stamped = Product(product.name, product.values, product.arrays, run_uid=product.run_uid,
                              seq=self._seq[product.name], time_s=time.time())  # fmt: skip
            self._seq[product.name] += 1
            try:
                self.socket.send_multipart(encode_product(stamped), copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:  # XPUB drops at the high-water mark rather than raise; in case
                return
            self.n_published += 1

    @property
    def n_receivers(self) -> int:
        """Receivers connected now (subscribed to every product)."""
        with self._lock:
            self._drain()
            return self._n_receivers

    def requested(self, key: str) -> set[str]:
        """The values of ``key`` that connected receivers ask for (``?key=value``)."""
        prefix = _REQUEST + key.encode() + b"="
        with self._lock:
            self._drain()
            return {topic[len(prefix):].decode(errors="replace") for topic, n in self._requests.items()
                    if n > 0 and topic.startswith(prefix)}  # fmt: skip

    def close(self, linger_s: float | None = None) -> None:
        with self._lock:
            super().close(linger_s)

    def _drain(self) -> None:
        while self.socket.poll(0, zmq.POLLIN):
            message = self.socket.recv()
            subscribed, topic = message[:1] == b"\x01", message[1:]
            if topic.startswith(_REQUEST):
                self._requests[topic] += 1 if subscribed else -1
            elif topic == b"":
                self._n_receivers += 1 if subscribed else -1


class ProductSubscriber(Endpoint):
    """Receive products (every one, or those whose names start with ``prefixes``), validated.

    Parameters
    ----------
    address : str
        The publisher's.
    hwm : int
        Messages queued before the newest are dropped.
    """

    def __init__(self, address: str = DEFAULT_PRODUCTS_ADDRESS, *, hwm: int = 256) -> None:
        super().__init__(zmq.SUB, address, bind=False, hwm=hwm, context=None, linger_s=0.0)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.rejected = RejectionCounter("products")
        self.n_received = 0

    def request(self, key: str, value: str) -> None:
        """Ask the publisher for ``key=value`` (e.g. ``xrdct.channel=412``) while connected."""
        self.socket.setsockopt(zmq.SUBSCRIBE, _REQUEST + f"{key}={value}".encode())

    def withdraw(self, key: str, value: str) -> None:
        """No longer ask for ``key=value``."""
        self.socket.setsockopt(zmq.UNSUBSCRIBE, _REQUEST + f"{key}={value}".encode())

    def recv(self, timeout_s: float | None = None) -> Product | None:
        """The next valid product, or None after ``timeout_s`` (malformed messages are
        counted in :attr:`rejected` and skipped)."""
        self._check_open()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self.socket.poll(remaining_ms, zmq.POLLIN):
                return None
            parts = self.socket.recv_multipart(copy=False)
            try:
                product = decode_product(parts)
            except ProductDecodeError as error:
                self.rejected.reject(error)
                continue
            self.n_received += 1
            return product
