"""Batches: the frames of a fast detector, many to a message, and back.

- :func:`batch_header`: the header of a batch of consecutive frames of one stream, the inverse
  of :meth:`~.protocol.FrameHeader.frame_header` (a replay sends the frames a recorder got in
  one message as that message again).
"""

from __future__ import annotations

from collections.abc import Sequence

from .protocol import FrameHeader

__all__ = ["batch_header"]


def batch_header(headers: Sequence[FrameHeader]) -> FrameHeader | None:
    """The header of a batch of these consecutive frames of one stream, or None when they do
    not make one: another run, stream, dtype, shape or position names, a gap in their sequence,
    indices other than one counter that differ. Positions that differ go frame by frame."""
    first = headers[0]
    same = all((h.run_uid, h.stream, h.dtype, h.shape, h.positions.keys(), h.indices.keys(), h.n_frames)
               == (first.run_uid, first.stream, first.dtype, first.shape, first.positions.keys(),
                   first.indices.keys(), 1)
               and h.seq == first.seq + i for i, h in enumerate(headers))  # fmt: skip
    if not same:
        return None
    moving = {key: tuple(h.positions[key] for h in headers) for key in first.positions
              if any(h.positions[key] != first.positions[key] for h in headers)}  # fmt: skip
    varying = [key for key in first.indices if any(h.indices[key] != first.indices[key] for h in headers)]
    if len(varying) > 1 or (varying and any(h.indices[varying[0]] != first.indices[varying[0]] + i
                                            for i, h in enumerate(headers))):  # fmt: skip
        return None
    return FrameHeader(run_uid=first.run_uid, stream=first.stream, seq=first.seq, timestamp=first.timestamp,
                       dtype=first.dtype, shape=(len(headers), *first.shape), positions=first.positions,
                       indices=first.indices, n_frames=len(headers), timestamps=tuple(h.timestamp for h in headers),
                       counter=varying[0] if varying else None, frame_positions=moving)  # fmt: skip
