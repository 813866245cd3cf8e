"""Wire protocol of operando-stream: frame messages and bluesky documents.

Two channels carry everything (DESIGN.md, "Data flow"):

frame channel
    A ZeroMQ multipart message ``[topic, header, buffer]``. ``topic`` is the stream name in
    UTF-8 (so PUB/SUB can filter by stream), ``header`` is a msgpack map described by
    :class:`FrameHeader`, ``buffer`` is the array's raw C-ordered bytes, sent and received
    without a copy.
document channel
    One ZeroMQ frame ``prefix b" " name b" " payload``, exactly what bluesky's
    ``bluesky.callbacks.zmq.Publisher`` sends, with the payload in msgpack. bluesky's own
    ``RemoteDispatcher(address, deserializer=unpack_payload)`` reads it. Encoded and
    validated in :mod:`streaming.wire.documents`; its names are importable from here too.

Nothing here ever unpickles: msgpack carries only plain data. Every receive path goes through
:func:`decode_frame` or :func:`decode_document`, which raise
:class:`~streaming.errors.FrameDecodeError` / :class:`~streaming.errors.DocumentDecodeError`
naming the field at fault; receivers count rejections by that field and go on.

Contents: :data:`PROTOCOL_VERSION`, :data:`FRAME_DTYPES`, :class:`FrameHeader`, :class:`Frame`
(a frame, or a batch of frames of a fast detector), :func:`encode_frame`, :func:`decode_frame`
(the frame channel and its header validation); from
:mod:`.documents`: :data:`DOCUMENT_NAMES`, :func:`pack_payload`, :func:`unpack_payload`,
:func:`encode_document`, :func:`decode_document`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from streaming.errors import FrameDecodeError

from .documents import (
    DEFAULT_MAX_DOCUMENT_BYTES,
    DOCUMENT_NAMES,
    decode_document,
    encode_document,
    pack_payload,
    unpack_payload,
)

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "DEFAULT_MAX_FRAME_BYTES",
    "DOCUMENT_NAMES",
    "FRAME_DTYPES",
    "MAX_HEADER_BYTES",
    "PROTOCOL_VERSION",
    "Frame",
    "FrameHeader",
    "decode_document",
    "decode_frame",
    "encode_document",
    "encode_frame",
    "pack_payload",
    "unpack_payload",
]

PROTOCOL_VERSION = 1

#: dtypes allowed on the frame channel, as ``numpy.dtype.str`` (little-endian only).
FRAME_DTYPES = frozenset(
    np.dtype(code).newbyteorder("<").str for code in ("b1", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8")
)

#: Default cap on one frame buffer: 64 MiB holds six Pilatus3 X 2M int32 frames (9.9 MB each)
#: or a PCO.Edge 5.5 image (11 MB); anything larger is almost surely a corrupt shape.
DEFAULT_MAX_FRAME_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 64 * 2**10
MAX_NDIM = 8
_INT64_MAX = 2**63 - 1
_MAX_DIMENSION = 2**31 - 1
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, kw_only=True)
class FrameHeader:
    """Everything a receiver needs to place a frame, without looking at its pixels.

    Attributes
    ----------
    run_uid : str
        uid of the bluesky run (the start document's ``uid``) the frame belongs to.
    stream : str
        Stream name, normally the detector's name (``"pilatus"``, ``"hexitec"``, ``"pco"``).
    seq : int
        Per-(run, stream) sequence number of the (first) frame, starting at 0 and rising by 1
        per frame, so receivers can count gaps exactly.
    timestamp : float
        Acquisition time, seconds since the epoch (the device's clock).
    dtype : str
        ``numpy.dtype.str`` of the buffer, one of :data:`FRAME_DTYPES`.
    shape : tuple of int
        Array shape of the buffer (C order).
    positions : dict of str to float
        Readbacks at acquisition (motor positions in the motor's units, monitor values).
    indices : dict of str to int
        Scan indices of the frame (e.g. ``{"angle": 3, "translation": 127}``). Receivers
        place data by these, never by arrival order.
    version : int
        Protocol version, :data:`PROTOCOL_VERSION`.
    n_frames : int
        Frames in the message: 1, or a batch stacked along the buffer's first axis (a fast
        detector's frames, e.g. the HEXITEC's 9118.87 Hz, a thousand to a message). Frame
        ``i`` of a batch has sequence number ``seq + i``, time stamp ``timestamps[i]``, the
        batch's positions and indices, but index ``counter`` which is the batch's plus ``i``.
    timestamps : tuple of float
        A batch's per-frame time stamps (empty for a single frame; ``timestamp`` is the first).
    counter : str or None
        A batch's index that counts its frames.
    frame_positions : dict of str to tuple of float
        A batch's positions that differ from frame to frame (a rotation during a projection
        series), one value per frame; ``positions`` holds the first frame's.
    """

    run_uid: str
    stream: str
    seq: int
    timestamp: float
    dtype: str
    shape: tuple[int, ...]
    positions: dict[str, float] = field(default_factory=dict)
    indices: dict[str, int] = field(default_factory=dict)
    version: int = PROTOCOL_VERSION
    n_frames: int = 1
    timestamps: tuple[float, ...] = ()
    counter: str | None = None
    frame_positions: dict[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Length in bytes of the buffer this header describes."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def to_wire(self) -> dict[str, Any]:
        """The header as the plain map that goes into msgpack (a batch's fields only for a batch)."""
        wire = {
            "version": self.version,
            "run_uid": self.run_uid,
            "stream": self.stream,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "positions": dict(self.positions),
            "indices": dict(self.indices),
        }
        if self.n_frames != 1:
            wire.update(n_frames=self.n_frames, timestamps=list(self.timestamps))
            if self.counter is not None:
                wire["counter"] = self.counter
            if self.frame_positions:
                wire["frame_positions"] = {key: list(values) for key, values in self.frame_positions.items()}
        return wire

    def frame_header(self, i: int) -> FrameHeader:
        """The header of frame ``i`` of a batch, as if it had come alone."""
        indices = dict(self.indices)
        if self.counter is not None:
            indices[self.counter] = indices.get(self.counter, 0) + i
        positions = self.positions
        if self.frame_positions:
            positions = {**positions, **{key: values[i] for key, values in self.frame_positions.items()}}
        return FrameHeader(run_uid=self.run_uid, stream=self.stream, seq=self.seq + i, timestamp=self.timestamps[i],
                           dtype=self.dtype, shape=self.shape[1:], positions=positions, indices=indices)  # fmt: skip


@dataclass(frozen=True)
class Frame:
    """A decoded frame (or batch of frames): its header and a read-only array viewing the
    received buffer."""

    header: FrameHeader
    data: np.ndarray

    def frames(self) -> list[Frame]:
        """The frames of a batch, each with its own header, viewing this buffer (or itself)."""
        if self.header.n_frames == 1:
            return [self]
        return [Frame(self.header.frame_header(i), self.data[i]) for i in range(self.header.n_frames)]


def _as_buffer(part: Any) -> memoryview:
    # zmq.Frame (copy=False receive) exposes .buffer; bytes and memoryview pass through.
    return part.buffer if hasattr(part, "buffer") else memoryview(part)


def encode_frame(header: FrameHeader, data: np.ndarray) -> list[Any]:
    """Build the multipart message ``[topic, header, buffer]`` for one frame.

    The buffer is a view of ``data`` (no copy when ``data`` is C-contiguous), so the caller
    must not modify ``data`` until the socket has sent it.

    Parameters
    ----------
    header : FrameHeader
        Must match ``data`` in ``dtype`` and ``shape``.
    data : ndarray
        The frame, of a dtype in :data:`FRAME_DTYPES`.

    Returns
    -------
    list
        ``[bytes, bytes, memoryview]`` for ``socket.send_multipart(..., copy=False)``.

    Raises
    ------
    FrameDecodeError
        If the header does not describe ``data`` or fails validation, so that a sender
        can never emit a message that receivers would reject.
    """
    array = np.asarray(data, order="C")
    if array.dtype.str != header.dtype:
        raise FrameDecodeError("dtype", f"header says {header.dtype!r} but data is {array.dtype.str!r}")
    if tuple(array.shape) != tuple(header.shape):
        raise FrameDecodeError("shape", f"header says {tuple(header.shape)} but data is {array.shape}")
    wire_header = header.to_wire()
    _validate_header(wire_header, header.stream)
    return [header.stream.encode(), msgpack.packb(wire_header), memoryview(array.reshape(-1)).cast("B")]


def decode_frame(parts: Sequence[Any], *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    """Validate a received multipart message and view its buffer as an array.

    Parameters
    ----------
    parts : sequence of bytes, memoryview or zmq.Frame
        The message parts as received (``recv_multipart(copy=False)`` avoids a copy).
    max_frame_bytes : int
        Largest buffer accepted, bytes.

    Returns
    -------
    Frame
        ``data`` is a read-only view of the received buffer, no copy.

    Raises
    ------
    FrameDecodeError
        Naming the field at fault: ``parts``, ``topic``, ``header``, ``version``, a missing or
        mistyped header field, ``dtype``, ``shape``, or ``size``.
    """
    if len(parts) != 3:
        raise FrameDecodeError("parts", f"expected 3 message parts (topic, header, buffer), got {len(parts)}")
    topic_buffer, header_buffer, data_buffer = (_as_buffer(part) for part in parts)
    try:
        topic = bytes(topic_buffer).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameDecodeError("topic", f"not UTF-8: {exc}") from exc
    if data_buffer.nbytes > max_frame_bytes:
        raise FrameDecodeError("size", f"buffer of {data_buffer.nbytes} bytes exceeds the cap of {max_frame_bytes}")
    if header_buffer.nbytes > MAX_HEADER_BYTES:
        raise FrameDecodeError("header", f"{header_buffer.nbytes} bytes exceeds the cap of {MAX_HEADER_BYTES}")
    header = _validate_header(_unpack_header(header_buffer), topic)
    if header.nbytes != data_buffer.nbytes:
        raise FrameDecodeError(
            "shape",
            f"shape {header.shape} x itemsize {np.dtype(header.dtype).itemsize} = {header.nbytes} bytes, "
            f"but the buffer holds {data_buffer.nbytes}",
        )
    try:
        data = np.frombuffer(data_buffer, dtype=header.dtype).reshape(header.shape)
    except ValueError as exc:  # numpy's own limits on dimensions
        raise FrameDecodeError("shape", f"cannot view the buffer as {header.shape}: {exc}") from exc
    data.flags.writeable = False  # a view of the message: consumers must not scribble on it
    return Frame(header, data)


def _unpack_header(buffer: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(buffer, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise FrameDecodeError("header", f"undecodable msgpack ({type(exc).__name__}: {exc})") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_key(value: Any) -> bool:
    # stream names and position/index keys become HDF5 names: no '/', no '.' or '..'
    return isinstance(value, str) and _NAME.fullmatch(value) is not None and value not in (".", "..")


def _validate_header(raw: Any, topic: str) -> FrameHeader:
    if not isinstance(raw, dict):
        raise FrameDecodeError("header", f"expected a msgpack map, got {type(raw).__name__}")
    if "version" not in raw:
        raise FrameDecodeError("version", "missing field")
    version = raw["version"]
    if not _is_int(version):
        raise FrameDecodeError("version", f"expected int, got {type(version).__name__}")
    if version != PROTOCOL_VERSION:
        raise FrameDecodeError("version", f"unknown protocol version {version} (this build speaks {PROTOCOL_VERSION})")
    checks = (
        ("run_uid", lambda v: isinstance(v, str) and v != "", "a non-empty str"),
        ("stream", lambda v: isinstance(v, str) and v != "", "a non-empty str"),
        ("seq", lambda v: _is_int(v) and 0 <= v <= _INT64_MAX, "an int in [0, 2**63)"),
        ("timestamp", lambda v: _is_real(v) and math.isfinite(v), "a finite number"),
        ("dtype", lambda v: isinstance(v, str), "a str"),
        ("shape", lambda v: isinstance(v, list), "a list of int"),
    )
    for name, check, expected in checks:
        if name not in raw:
            raise FrameDecodeError(name, "missing field")
        if not check(raw[name]):
            raise FrameDecodeError(name, f"expected {expected}, got {raw[name]!r:.80}")
    if not _NAME.fullmatch(raw["stream"]) or raw["stream"] in (".", ".."):
        raise FrameDecodeError("stream", f"{raw['stream']!r:.80} is not a name of [A-Za-z0-9_.:-], 1-64 long")
    if raw["stream"] != topic:
        raise FrameDecodeError("topic", f"topic {topic!r} differs from header stream {raw['stream']!r}")
    if raw["dtype"] not in FRAME_DTYPES:
        raise FrameDecodeError("dtype", f"{raw['dtype']!r:.40} is not allowed; allowed: {sorted(FRAME_DTYPES)}")
    shape = raw["shape"]
    if len(shape) > MAX_NDIM or not all(_is_int(n) and 0 <= n <= _MAX_DIMENSION for n in shape):
        raise FrameDecodeError("shape", f"expected at most {MAX_NDIM} ints in [0, 2**31), got {shape!r:.80}")
    positions = raw.get("positions", {})
    if not isinstance(positions, dict) or not all(
        _is_key(k) and _is_real(v) and math.isfinite(v) for k, v in positions.items()
    ):
        raise FrameDecodeError("positions", f"expected a map of names to finite numbers, got {positions!r:.80}")
    indices = raw.get("indices", {})
    if not isinstance(indices, dict) or not all(
        _is_key(k) and _is_int(v) and 0 <= v <= _INT64_MAX for k, v in indices.items()
    ):
        raise FrameDecodeError("indices", f"expected a map of names to ints >= 0, got {indices!r:.80}")
    n_frames, timestamps, counter, frame_positions = _validate_batch(raw, shape, positions)
    return FrameHeader(
        run_uid=raw["run_uid"],
        stream=raw["stream"],
        seq=raw["seq"],
        timestamp=float(raw["timestamp"]),
        dtype=raw["dtype"],
        shape=tuple(shape),
        positions={k: float(v) for k, v in positions.items()},
        indices=dict(indices),
        version=version,
        n_frames=n_frames,
        timestamps=timestamps,
        counter=counter,
        frame_positions=frame_positions,
    )


def _validate_batch(
    raw: dict[str, Any], shape: list[int], positions: dict[str, Any]
) -> tuple[int, tuple[float, ...], str | None, dict[str, tuple[float, ...]]]:
    """``n_frames``, ``timestamps``, ``counter`` and ``frame_positions`` of a batch (1, (),
    None, {} for one frame)."""
    n_frames = raw.get("n_frames", 1)
    if not (_is_int(n_frames) and n_frames >= 1):
        raise FrameDecodeError("n_frames", f"expected an int >= 1, got {n_frames!r:.80}")
    if n_frames == 1:
        return 1, (), None, {}
    if not shape or shape[0] != n_frames:
        raise FrameDecodeError("n_frames", f"a batch of {n_frames} needs shape ({n_frames}, ...), got {shape!r:.80}")
    timestamps = raw.get("timestamps")
    if not _is_series(timestamps, n_frames):
        raise FrameDecodeError("timestamps", f"expected {n_frames} finite numbers, got {timestamps!r:.80}")
    counter = raw.get("counter")
    if counter is not None and not _is_key(counter):
        raise FrameDecodeError("counter", f"expected an index name, got {counter!r:.80}")
    moving = raw.get("frame_positions", {})
    if not (isinstance(moving, dict) and all(k in positions and _is_series(v, n_frames) for k, v in moving.items())):
        raise FrameDecodeError("frame_positions", f"expected positions' names to {n_frames} finite numbers each, "
                               f"got {moving!r:.80}")  # fmt: skip
    return (n_frames, tuple(float(t) for t in timestamps), counter,
            {k: tuple(float(x) for x in v) for k, v in moving.items()})  # fmt: skip


def _is_series(values: Any, n: int) -> bool:
    return isinstance(values, list) and len(values) == n and all(_is_real(v) and math.isfinite(v) for v in values)
