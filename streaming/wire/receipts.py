"""Receipts: a receiver confirms upstream what it received of a run.

A publisher that exits (a replay, a main job, a distributor) needs to know that its receivers
have what it sent, or how much they lack. A SUB socket can send one thing upstream, a
subscription, and an XPUB publisher receives every one (``XPUB_VERBOSER``), so receipts
ride on subscriptions to a topic that no message ever carries (0xFF starts no UTF-8 stream
name and no document message):

- a **hello** is a subscription held for as long as the receiver is connected: "this receiver
  confirms runs". ZeroMQ sends it again on every reconnection, and its withdrawal (the
  receiver closed or went away) reaches the publisher as an unsubscription;
- a **run receipt** (a subscription made and withdrawn at once) says, when a receiver is done
  with a run's messages, how many documents or frames of each stream it received; an
  **ignored** receipt says it takes no part in that run (an analysis of another technique).

Receivers that are not this project's (bluesky's ``RemoteDispatcher``) send no hello; a
publisher can then say that it cannot know what they received, and how many they are.

- :class:`Receipt`: one hello, run or ignored receipt.
- :func:`encode_receipt`, :func:`decode_receipt`, :func:`is_receipt`: the topic bytes.
- :class:`ReceiptBook`: what a publisher has heard: receivers connected, receipts per run.
- :func:`receiver_name`: a name unique to one receiver (role, host, process).
"""

from __future__ import annotations

import itertools
import os
import socket
from collections import OrderedDict
from dataclasses import dataclass, field

import msgpack

from streaming.errors import MessageDecodeError

__all__ = ["RECEIPT_TOPIC", "Receipt", "ReceiptBook", "decode_receipt", "encode_receipt", "is_receipt", "receiver_name"]

RECEIPT_TOPIC = b"\xffreceipt "
RECEIPT_KINDS = ("hello", "run", "ignored")
_MAX_RECEIPT_BYTES = 4096
_RUNS_KEPT = 1000  # runs whose receipts a publisher remembers (a long main job sends many)
_names = itertools.count()


def receiver_name(role: str) -> str:
    """A receiver's name, unique on the network: ``"<role> <host> pid <pid> #<n>"``."""
    return f"{role} {socket.gethostname()} pid {os.getpid()} #{next(_names)}"


@dataclass(frozen=True)
class Receipt:
    """What a receiver says upstream.

    Attributes
    ----------
    receiver : str
        Who says it (:func:`receiver_name`).
    kind : {"hello", "run", "ignored"}
    run_uid : str
        The run a ``"run"`` or ``"ignored"`` receipt is about; empty for a hello.
    documents : int or None
        Documents of the run received (a document-channel receipt).
    frames : dict of str to int
        Frames of the run received, per stream (a frame-channel receipt).
    subscriptions : int
        A hello's: the data subscriptions the receiver holds on this socket (a receiver
        filtering on k streams holds k).
    streams : tuple of str or None
        A hello's: the streams the receiver takes; None for every stream.
    """

    receiver: str
    kind: str
    run_uid: str = ""
    documents: int | None = None
    frames: dict[str, int] = field(default_factory=dict)
    subscriptions: int = 0
    streams: tuple[str, ...] | None = None


def encode_receipt(receipt: Receipt) -> bytes:
    """The subscription topic that carries ``receipt``."""
    body = {"receiver": receipt.receiver, "kind": receipt.kind, "run": receipt.run_uid}
    if receipt.documents is not None:
        body["documents"] = int(receipt.documents)
    if receipt.frames:
        body["frames"] = {str(stream): int(n) for stream, n in receipt.frames.items()}
    if receipt.kind == "hello":
        body["subscriptions"] = int(receipt.subscriptions)
        if receipt.streams is not None:
            body["streams"] = sorted(receipt.streams)
    return RECEIPT_TOPIC + msgpack.packb(body)


def is_receipt(topic: bytes) -> bool:
    """Whether a subscription topic carries a receipt."""
    return topic.startswith(RECEIPT_TOPIC)


def decode_receipt(topic: bytes) -> Receipt:
    """The receipt a subscription topic carries; :class:`MessageDecodeError` (field
    ``"receipt"``) names what is wrong with a malformed one."""
    if not is_receipt(topic):
        raise MessageDecodeError("receipt", f"topic does not start with {RECEIPT_TOPIC!r}")
    if len(topic) > _MAX_RECEIPT_BYTES:
        raise MessageDecodeError("receipt", f"{len(topic)} bytes, more than {_MAX_RECEIPT_BYTES}")
    try:
        body = msgpack.unpackb(topic[len(RECEIPT_TOPIC) :])
    except (ValueError, msgpack.UnpackException) as exc:
        raise MessageDecodeError("receipt", f"not msgpack ({exc})") from exc
    if not isinstance(body, dict):
        raise MessageDecodeError("receipt", f"must be a map, got {type(body).__name__}")
    receiver, kind, run_uid = body.get("receiver"), body.get("kind"), body.get("run", "")
    documents, frames = body.get("documents"), body.get("frames", {})
    subscriptions, streams = body.get("subscriptions", 0), body.get("streams")
    if not (isinstance(receiver, str) and receiver):
        raise MessageDecodeError("receipt", f"receiver must be a non-empty string, got {receiver!r}")
    if kind not in RECEIPT_KINDS:
        raise MessageDecodeError("receipt", f"kind must be one of {RECEIPT_KINDS}, got {kind!r}")
    if not isinstance(run_uid, str) or (kind != "hello" and not run_uid):
        raise MessageDecodeError("receipt", f"run must be a run uid, got {run_uid!r}")
    if documents is not None and not (isinstance(documents, int) and documents >= 0):
        raise MessageDecodeError("receipt", f"documents must be a count, got {documents!r}")
    if not (isinstance(frames, dict) and all(isinstance(s, str) and isinstance(n, int) and n >= 0
                                             for s, n in frames.items())):  # fmt: skip
        raise MessageDecodeError("receipt", f"frames must map streams to counts, got {frames!r}")
    if not (isinstance(subscriptions, int) and subscriptions >= 0):
        raise MessageDecodeError("receipt", f"subscriptions must be a count, got {subscriptions!r}")
    if streams is not None and not (isinstance(streams, list) and all(isinstance(s, str) for s in streams)):
        raise MessageDecodeError("receipt", f"streams must be a list of stream names, got {streams!r}")
    return Receipt(receiver, kind, run_uid, documents, frames, subscriptions,
                   None if streams is None else tuple(streams))  # fmt: skip


class ReceiptBook:
    """What a publisher has heard from its receivers.

    ``hello``/``goodbye`` keep the receivers that confirm (a receiver reconnecting says hello
    again: counted once); :meth:`add` keeps each receiver's latest receipt per run, for the
    last 1000 runs.
    """

    def __init__(self) -> None:
        self._hellos: dict[str, tuple[int, Receipt]] = {}  # receiver -> (hellos held, the hello)
        self._runs: OrderedDict[str, dict[str, Receipt]] = OrderedDict()

    @property
    def receivers(self) -> dict[str, Receipt]:
        """Receivers connected now that confirm what they receive, with their hellos."""
        return {receiver: hello for receiver, (_, hello) in self._hellos.items()}

    def hello(self, receipt: Receipt, subscribed: bool) -> None:
        """A hello (``subscribed``) or its withdrawal."""
        held = self._hellos.get(receipt.receiver, (0, receipt))[0] + (1 if subscribed else -1)
        if held > 0:
            self._hellos[receipt.receiver] = (held, receipt)
        else:
            self._hellos.pop(receipt.receiver, None)

    def add(self, receipt: Receipt) -> None:
        """A run or ignored receipt."""
        self._runs.setdefault(receipt.run_uid, {})[receipt.receiver] = receipt
        self._runs.move_to_end(receipt.run_uid)
        while len(self._runs) > _RUNS_KEPT:
            self._runs.popitem(last=False)

    def of_run(self, run_uid: str) -> dict[str, Receipt]:
        """Each receiver's latest receipt for ``run_uid``."""
        return dict(self._runs.get(run_uid, {}))
