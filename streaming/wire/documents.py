"""The document channel of the wire protocol: bluesky documents in msgpack, validated on receipt.

Each document is one message in bluesky's 0MQ format with a msgpack payload (the overview of
both channels is in :mod:`streaming.wire.protocol`). Every receive path goes through
:func:`decode_document`, which raises :class:`~streaming.errors.DocumentDecodeError` naming the
field at fault.

Contents: :data:`DEFAULT_MAX_DOCUMENT_BYTES`, :data:`DOCUMENT_NAMES`, :func:`pack_payload`,
:func:`unpack_payload`, :func:`encode_document`, :func:`decode_document`.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from streaming.errors import DocumentDecodeError

__all__ = [
    "DEFAULT_MAX_DOCUMENT_BYTES",
    "DOCUMENT_NAMES",
    "decode_document",
    "encode_document",
    "pack_payload",
    "unpack_payload",
]

DEFAULT_MAX_DOCUMENT_BYTES = 16 * 2**20

#: Names of bluesky documents, with the string keys each must carry to be routed to its run.
DOCUMENT_NAMES: dict[str, tuple[str, ...]] = {
    "start": ("uid",),
    "descriptor": ("uid", "run_start"),
    "event": ("uid", "descriptor"),
    "event_page": ("descriptor",),
    "resource": ("uid",),
    "datum": ("datum_id", "resource"),
    "datum_page": ("resource",),
    "stream_resource": ("uid",),
    "stream_datum": ("uid", "stream_resource"),
    "stop": ("uid", "run_start"),
}


def _to_builtin(obj: Any) -> Any:
    # Documents must stay plain JSON-like data on the wire: numpy values become Python ones.
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot put a {type(obj).__name__} in a document on the wire")


def pack_payload(doc: Any) -> bytes:
    """Serialise a document with msgpack; numpy arrays and scalars become plain values.

    Usable as ``serializer=`` of bluesky's ``Publisher``.
    """
    return msgpack.packb(doc, default=_to_builtin)


def unpack_payload(payload: bytes | memoryview) -> Any:
    """Deserialise a msgpack payload; usable as ``deserializer=`` of bluesky's ``RemoteDispatcher``."""
    return msgpack.unpackb(payload, raw=False)


def _first_non_json(value: Any, depth: int = 0) -> str | None:
    """Name of the first value a JSON document cannot hold (bytes, msgpack ext...), or None."""
    if depth > 64:
        return "structure nested deeper than 64 levels"
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, list):
        return next((found for item in value if (found := _first_non_json(item, depth + 1))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{type(key).__name__} key"
            found = _first_non_json(item, depth + 1)
            if found:
                return found
        return None
    return type(value).__name__


def encode_document(name: str, doc: dict[str, Any], *, prefix: bytes = b"") -> bytes:
    """Build the one-part message ``prefix b" " name b" " payload`` of bluesky's 0MQ format.

    Raises
    ------
    ValueError
        If ``prefix`` contains a space or ``name`` is not a bluesky document name.
    """
    if b" " in prefix:
        raise ValueError(f"prefix {prefix!r} may not contain b' '")
    if name not in DOCUMENT_NAMES:
        raise ValueError(f"unknown document name {name!r}; expected one of {sorted(DOCUMENT_NAMES)}")
    return b" ".join([prefix, name.encode(), pack_payload(doc)])


def decode_document(
    message: bytes | memoryview, *, max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
) -> tuple[bytes, str, dict[str, Any]]:
    """Validate a document message and return ``(prefix, name, doc)``.

    Raises
    ------
    DocumentDecodeError
        Naming the field at fault: ``size``, ``parts``, ``name``, ``payload`` or a missing
        routing key of the document (``uid``, ``run_start``, ``descriptor``, ...).
    """
    size = memoryview(message).nbytes
    if size > max_document_bytes:
        raise DocumentDecodeError("size", f"{size} bytes exceeds the cap of {max_document_bytes}")
    pieces = bytes(message).split(b" ", 2)
    if len(pieces) != 3:
        raise DocumentDecodeError(
            "parts", f"expected 'prefix name payload' separated by spaces, got {len(pieces)} pieces"
        )
    prefix, name_bytes, payload = pieces
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentDecodeError("name", f"not UTF-8: {exc}") from exc
    if name not in DOCUMENT_NAMES:
        raise DocumentDecodeError("name", f"unknown document name {name!r:.40}")
    try:
        doc = unpack_payload(payload)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DocumentDecodeError("payload", f"undecodable msgpack ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict):
        raise DocumentDecodeError("payload", f"expected a msgpack map, got {type(doc).__name__}")
    foreign = _first_non_json(doc)
    if foreign is not None:
        raise DocumentDecodeError("payload", f"documents hold JSON-like data only, found a {foreign}")
    for key in DOCUMENT_NAMES[name]:
        if not isinstance(doc.get(key), str):
            raise DocumentDecodeError(key, f"{name} document lacks the str field {key!r}")
    return prefix, name, doc
