"""The wire layer: what crosses a socket, and the sockets themselves.

- :mod:`.protocol`: frame headers in msgpack, validated on receipt (never pickle); the
  protocol's overview.
- :mod:`.batches`: a fast detector's frames, many to a message, and back.
- :mod:`.documents`: bluesky documents in msgpack, validated on receipt.
- :mod:`.endpoint`: the socket plumbing under every endpoint (binding, subscriber counting).
- :mod:`.transport`: the document and frame publishers and subscribers.
- :mod:`.receipts`: receivers confirm upstream what they received of each run.
- :mod:`.receiver`: a receiver's sockets drained in a thread into a buffer bounded by bytes.
- :mod:`.diagnostics`: counters of rejected messages and sequence gaps.
- :mod:`.security`: CURVE on every socket; binding beyond loopback only with it.

Imports only :mod:`streaming.errors` of this project.
"""

from .protocol import PROTOCOL_VERSION, Frame, FrameHeader
from .transport import (
    DEFAULT_DOCUMENT_ADDRESS,
    DEFAULT_FRAME_ADDRESS,
    DocumentPublisher,
    DocumentSubscriber,
    FramePublisher,
    FrameSubscriber,
)

__all__ = [
    "DEFAULT_DOCUMENT_ADDRESS",
    "DEFAULT_FRAME_ADDRESS",
    "PROTOCOL_VERSION",
    "DocumentPublisher",
    "DocumentSubscriber",
    "Frame",
    "FrameHeader",
    "FramePublisher",
    "FrameSubscriber",
]
