"""The frames of one stream in a run file: ``/entry/instrument/<stream>`` and its writer.

The layout is described in :mod:`streaming.store.runfile`; per stream, ``data`` holds one frame
per chunk and the columns ``sequence``, ``timestamp``, ``recv_time``, ``arrival``,
``positions/<name>`` and ``indices/<name>`` one row per frame.

- :func:`create_stream_group`: the group of a new stream, with its empty datasets.
- :func:`add_key_columns`: position and index columns for keys a stream's frames start to carry.
- :class:`StreamWriter`: appends one stream's frames, buffering their rows until a flush.
- :func:`append_rows`, :func:`row_dataset`: the resizable one-dimensional columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from streaming.wire.protocol import FrameHeader

from .chunks import chunk_encoder

__all__ = ["StreamWriter", "add_key_columns", "append_rows", "create_stream_group", "row_dataset"]

_ROW_CHUNK = 1024
_GROW_FRAMES = 64


def append_rows(dataset: h5py.Dataset, values: np.ndarray) -> None:
    """Append ``values`` to the resizable one-dimensional ``dataset``."""
    n = dataset.shape[0]
    dataset.resize(n + len(values), axis=0)
    dataset[n:] = values


def row_dataset(group: h5py.Group, name: str, dtype: Any, fill: Any = None, n: int = 0) -> h5py.Dataset:
    """Create the resizable column ``name``: ``n`` rows of ``fill`` (none by default)."""
    data = np.full(n, fill, dtype) if n else None
    return group.create_dataset(
        name, shape=(n,), maxshape=(None,), dtype=dtype, chunks=(_ROW_CHUNK,), data=data, fillvalue=fill
    )


def create_stream_group(
    instrument: h5py.Group, name: str, header: FrameHeader, *, compression: str, filter_options: Mapping[str, Any]
) -> h5py.Group:
    """Create the empty group ``name`` in ``instrument`` for the frames ``header`` describes.

    ``filter_options`` are the HDF5 filter keywords of ``compression`` (see
    :func:`~streaming.store.chunks.compression_filter`).
    """
    group = instrument.create_group(name)
    group.attrs.update(NX_class="NXdetector", stream=header.stream, dtype=header.dtype, frame_shape=list(header.shape))
    group.create_dataset(
        "data",
        shape=(0, *header.shape),
        maxshape=(None, *header.shape),
        chunks=(1, *header.shape) if header.shape else None,
        dtype=header.dtype,
        **filter_options,
    ).attrs["compression"] = compression
    for column, dtype in (
        ("sequence", np.int64),
        ("timestamp", np.float64),
        ("recv_time", np.float64),
        ("arrival", np.int64),
    ):
        row_dataset(group, column, dtype)
    group.create_group("positions").attrs["NX_class"] = "NXcollection"
    group.create_group("indices").attrs["NX_class"] = "NXcollection"
    return group


def add_key_columns(group: h5py.Group, positions: set[str], indices: set[str]) -> None:
    """Add ``positions/<key>`` (NaN) and ``indices/<key>`` (-1) columns to a stream's ``group``,
    as long as the frames it already holds."""
    n = group["sequence"].shape[0]
    for key in sorted(positions):
        row_dataset(group["positions"], key, np.float64, np.nan, n)
    for key in sorted(indices):
        row_dataset(group["indices"], key, np.int64, -1, n)


class StreamWriter:
    """Appends the frames of one stream; per-frame metadata is buffered until flush.

    ``data`` grows ahead of the frames by ``_GROW_FRAMES`` rows (a resize per frame costs
    as much as writing an 80 x 80 frame) and is trimmed at close; readers bound the frame
    count by the metadata columns, which are only ever as long as the frames written.
    """

    def __init__(self, group: h5py.Group, compression: str) -> None:
        self.group = group
        self.data = group["data"]
        self.n_frames = min(self.data.shape[0], group["sequence"].shape[0])
        self.position_keys = set(group["positions"])
        self.index_keys = set(group["indices"])
        # whole-frame chunks of non-empty frames go straight to disk, encoded here
        frame_size = int(np.prod(self.data.shape[1:]))
        direct = self.data.chunks == (1, *self.data.shape[1:]) and frame_size > 0
        self._encode = chunk_encoder(compression) if direct else None
        self._chunk_origin = (0,) * (self.data.ndim - 1)
        self._rows: list[tuple[int, float, float, int]] = []
        self._positions: list[dict[str, float]] = []
        self._indices: list[dict[str, int]] = []

    def reattach(self, group: h5py.Group) -> None:
        self.group = group
        self.data = group["data"]

    def new_keys(self, header: FrameHeader) -> tuple[set[str], set[str]]:
        return set(header.positions) - self.position_keys, set(header.indices) - self.index_keys

    def append(self, header: FrameHeader, data: np.ndarray, recv_time: float, arrival: int) -> None:
        if self.n_frames >= self.data.shape[0]:
            self.data.resize(self.n_frames + _GROW_FRAMES, axis=0)
        if self._encode is not None:
            self.data.id.write_direct_chunk((self.n_frames, *self._chunk_origin), self._encode(data))
        else:
            self.data[self.n_frames] = data
        self.n_frames += 1
        self._rows.append((header.seq, header.timestamp, recv_time, arrival))
        self._positions.append(header.positions)
        self._indices.append(header.indices)

    def append_batch(self, header: FrameHeader, data: np.ndarray, recv_time: float, arrival: int) -> None:
        """The frames of a batch (``header.n_frames`` along ``data``'s first axis), a row
        each; they share the message's receipt time and arrival index."""
        n = header.n_frames
        if self.n_frames + n > self.data.shape[0]:
            self.data.resize(self.n_frames + n + _GROW_FRAMES, axis=0)
        if self._encode is not None:
            for i in range(n):
                self.data.id.write_direct_chunk((self.n_frames + i, *self._chunk_origin), self._encode(data[i]))
        else:
            self.data[self.n_frames : self.n_frames + n] = data
        self.n_frames += n
        moving = header.frame_positions
        counter, base = header.counter, header.indices.get(header.counter, 0) if header.counter else 0
        for i, timestamp in enumerate(header.timestamps):
            self._rows.append((header.seq + i, timestamp, recv_time, arrival))
            self._positions.append({**header.positions, **{k: v[i] for k, v in moving.items()}} if moving
                                   else header.positions)  # fmt: skip
            self._indices.append({**header.indices, counter: base + i} if counter else header.indices)

    def trim(self) -> None:
        """Drop the rows grown ahead of the frames (at close)."""
        self.data.resize(self.n_frames, axis=0)

    def flush_rows(self) -> None:
        if not self._rows:
            return
        seq, timestamp, recv_time, arrival = (np.asarray(column) for column in zip(*self._rows, strict=True))
        for name, column in (
            ("sequence", seq),
            ("timestamp", timestamp),
            ("recv_time", recv_time),
            ("arrival", arrival),
        ):
            append_rows(self.group[name], column)
        for key, dataset in self.group["positions"].items():
            append_rows(dataset, np.array([p.get(key, np.nan) for p in self._positions], np.float64))
        for key, dataset in self.group["indices"].items():
            append_rows(dataset, np.array([i.get(key, -1) for i in self._indices], np.int64))
        self._rows.clear()
        self._positions.clear()
        self._indices.clear()
