"""Reading a recorded run file (the layout is described in :mod:`streaming.store.runfile`).

- :class:`RunFileReader`: documents, frames and the merged message sequence of one file,
  read lazily so that memory does not grow with the run's length; opens files that are
  still being written and files left by a killed recorder (SWMR read).
- :class:`Message`: one document or frame with its receipt time and arrival index.
- :class:`RunSummary` / :class:`StreamSummary`: what ``operando info`` prints.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters for reading)
import numpy as np

from streaming.errors import RunFileError
from streaming.wire.batches import batch_header
from streaming.wire.protocol import FrameHeader

from .chunks import is_bitshuffle_lz4, read_frame

__all__ = ["Message", "RunFileReader", "RunSummary", "StreamSummary"]

_ENTRY = "entry"
_READ_BLOCK = 4096  # metadata rows read at once while iterating
_SMALL_FRAME_BYTES = 2**16  # frames up to this size are read many at a time ...
_READ_BYTES = 8 * 2**20  # ... up to this many bytes per stream


@dataclass(frozen=True)
class Message:
    """One recorded message.

    Exactly one of ``document`` (``(name, doc)``) or ``frame`` (``(header, data)``) is set.
    """

    arrival: int
    recv_time: float
    document: tuple[str, dict[str, Any]] | None = None
    frame: tuple[FrameHeader, np.ndarray] | None = None


@dataclass(frozen=True)
class StreamSummary:
    name: str
    n_frames: int
    dtype: str
    frame_shape: tuple[int, ...]
    stored_bytes: int
    raw_bytes: int
    missing: int
    late: int
    invalid: int

    @property
    def compression_ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else float("nan")


@dataclass(frozen=True)
class RunSummary:
    path: Path
    run_uid: str
    plan_name: str | None
    scan_id: int | None
    start_time: str | None
    end_time: str | None
    complete: bool
    exit_status: str | None
    n_documents: int
    document_counts: dict[str, int]
    duration_s: float
    file_bytes: int
    streams: list[StreamSummary] = field(default_factory=list)
    invalid_messages: dict[str, int] = field(default_factory=dict)


class RunFileReader:
    """Read one run file; a context manager.

    Parameters
    ----------
    path : Path
        A file written by :class:`~streaming.store.runfile.RunFileWriter`.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such file: {self.path}")
        try:
            self._file = h5py.File(self.path, "r", swmr=True, locking=False)
        except OSError as exc:
            raise RunFileError(f"{self.path} is not a readable HDF5 file ({exc})") from exc
        if _ENTRY not in self._file or "documents" not in self._file[_ENTRY]:
            self._file.close()
            raise RunFileError(f"{self.path} is not an operando-stream run file (no /entry/documents)")
        self.entry = self._file[_ENTRY]
        self.run_uid = str(self.entry.attrs["run_uid"])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RunFileReader:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- documents ------------------------------------------------------------------------

    @property
    def n_documents(self) -> int:
        # columns are flushed together; the shortest one bounds what is complete
        docs = self.entry["documents"]
        return min(docs[name].shape[0] for name in ("name", "offset", "length", "recv_time", "arrival"))

    def documents(self) -> Iterator[tuple[str, dict[str, Any], float, int]]:
        """Yield ``(name, doc, recv_time, arrival)`` in arrival order."""
        docs = self.entry["documents"]
        n = self.n_documents
        for block_start in range(0, n, _READ_BLOCK):
            block = slice(block_start, min(n, block_start + _READ_BLOCK))
            names, offsets, lengths = docs["name"][block], docs["offset"][block], docs["length"][block]
            recv_times, arrivals = docs["recv_time"][block], docs["arrival"][block]
            payload = docs["payload"][int(offsets[0]) : int(offsets[-1] + lengths[-1])]
            base = int(offsets[0])
            for name, offset, length, recv_time, arrival in zip(
                names, offsets, lengths, recv_times, arrivals, strict=True
            ):
                text = payload[int(offset) - base : int(offset + length) - base].tobytes()
                yield name.decode(), json.loads(text), float(recv_time), int(arrival)

    # -- frames ---------------------------------------------------------------------------

    @property
    def streams(self) -> list[str]:
        """Names of the stream groups under ``/entry/instrument``."""
        return list(self.entry["instrument"])

    def n_frames(self, stream: str) -> int:
        group = self.entry["instrument"][stream]
        return min(group["data"].shape[0], group["sequence"].shape[0])

    def frame_data(self, stream: str) -> h5py.Dataset:
        """The ``data`` dataset of a stream, for direct (sliced) reading."""
        return self.entry["instrument"][stream]["data"]

    def frames(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[FrameHeader, np.ndarray, float, int]]:
        """Yield ``(header, data, recv_time, arrival)`` of frames ``start:stop`` of a stream."""
        group = self.entry["instrument"][stream]
        shape = tuple(int(x) for x in group.attrs["frame_shape"])
        dataset = group["data"]
        # Small frames are read many at a time (one h5py call per frame caps HEXITEC replay
        # at ~6 k frames/s); large ones one by one, since a multi-chunk read of Pilatus 2M
        # frames costs 9 ms per frame against 2.9 ms for read_frame.
        frame_bytes = max(1, dataset.dtype.itemsize * int(np.prod(shape)))
        block_length = max(1, min(_READ_BLOCK, _READ_BYTES // frame_bytes)) if frame_bytes <= _SMALL_FRAME_BYTES else 1
        direct = is_bitshuffle_lz4(dataset) if block_length == 1 else False  # checked once, not per frame
        for meta_start, headers in self._header_blocks(stream, start, stop, max(block_length, _READ_BLOCK)):
            for block_start in range(meta_start, meta_start + len(headers), block_length):
                block = slice(block_start, min(meta_start + len(headers), block_start + block_length))
                data = dataset[block] if block_length > 1 else [read_frame(dataset, block_start, direct=direct)]
                for j in range(block.stop - block.start):
                    header, recv_time, arrival = headers[block.start - meta_start + j]
                    yield header, data[j], recv_time, arrival

    def frame_headers(self, stream: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[FrameHeader, int]]:
        """Yield ``(header, arrival)`` of frames ``start:stop`` of a stream, without reading
        their pixels (what a reader needs to place and order frames read elsewhere)."""
        for _, headers in self._header_blocks(stream, start, stop, _READ_BLOCK):
            for header, _, arrival in headers:
                yield header, arrival

    def _header_blocks(
        self, stream: str, start: int, stop: int | None, block_length: int
    ) -> Iterator[tuple[int, list[tuple[FrameHeader, float, int]]]]:
        """The headers of frames ``start:stop`` with their receive time and arrival index, a
        block of ``block_length`` rows at a time (one h5py call per column and block: one
        per column and frame, eight of them, costs more than decompressing a small frame)."""
        group = self.entry["instrument"][stream]
        n = self.n_frames(stream) if stop is None else min(stop, self.n_frames(stream))
        stream_name, dtype = str(group.attrs["stream"]), str(group.attrs["dtype"])
        shape = tuple(int(x) for x in group.attrs["frame_shape"])
        for meta_start in range(start, n, block_length):
            meta = slice(meta_start, min(n, meta_start + block_length))
            seq, timestamp = group["sequence"][meta], group["timestamp"][meta]
            recv_time, arrival = group["recv_time"][meta], group["arrival"][meta]
            positions = {key: ds[meta] for key, ds in group["positions"].items()}
            indices = {key: ds[meta] for key, ds in group["indices"].items()}
            headers = [
                (
                    FrameHeader(
                        run_uid=self.run_uid,
                        stream=stream_name,
                        seq=int(seq[i]),
                        timestamp=float(timestamp[i]),
                        dtype=dtype,
                        shape=shape,
                        positions={k: float(v[i]) for k, v in positions.items() if not np.isnan(v[i])},
                        indices={k: int(v[i]) for k, v in indices.items() if v[i] != -1},
                    ),
                    float(recv_time[i]),
                    int(arrival[i]),
                )
                for i in range(meta.stop - meta.start)
            ]
            yield meta_start, headers

    def frames_by_sequence(self, stream: str, seqs: Iterable[int]) -> Iterator[tuple[FrameHeader, np.ndarray]]:
        """Yield ``(header, data)`` of the frames of ``stream`` whose sequence numbers are in
        ``seqs``, in sequence order: those the file holds (a live file: those flushed so far).
        A stream the file does not hold yet yields nothing."""
        group = self.entry["instrument"].get(stream)
        if group is None:
            return
        sequence = group["sequence"][: self.n_frames(stream)]
        where = np.flatnonzero(np.isin(sequence, np.fromiter(set(seqs), np.int64)))
        where = where[np.argsort(sequence[where], kind="stable")]
        # contiguous runs of file indices are read together (one read of each column per run)
        breaks = np.flatnonzero(np.diff(where) != 1) + 1
        for run in np.split(where, breaks) if where.size else ():
            for header, data, _, _ in self.frames(stream, int(run[0]), int(run[-1]) + 1):
                yield header, data

    # -- both -----------------------------------------------------------------------------

    def messages(self) -> Iterator[Message]:
        """Every document and frame, merged into the original arrival order; the frames that
        came as one batch (they share its arrival index) as one batch again."""
        sources = [
            (Message(arrival, recv_time, document=(name, doc)) for name, doc, recv_time, arrival in self.documents())
        ]
        for stream in self.streams:
            sources.append(_messages(self.frames(stream)))
        return heapq.merge(*sources, key=lambda message: message.arrival)

    def summary(self) -> RunSummary:
        """Runs, streams, frame counts, gaps and sizes, for ``operando info``."""
        attrs = self.entry.attrs
        counts: dict[str, int] = {}
        for name in self.entry["documents"]["name"][: self.n_documents]:
            counts[name.decode()] = counts.get(name.decode(), 0) + 1
        diagnostics = self.entry["diagnostics"]
        recv_times = [self.entry["documents"]["recv_time"][: self.n_documents]]
        streams = []
        for name in self.streams:
            group = self.entry["instrument"][name]
            n = self.n_frames(name)
            recv_times.append(group["recv_time"][:n])
            stream_diag = diagnostics[name] if name in diagnostics else {}
            streams.append(
                StreamSummary(
                    name=name,
                    n_frames=n,
                    dtype=str(group.attrs["dtype"]),
                    frame_shape=tuple(int(x) for x in group.attrs["frame_shape"]),
                    stored_bytes=group["data"].id.get_storage_size(),
                    raw_bytes=n * group["data"].dtype.itemsize * int(np.prod(group["data"].shape[1:])),
                    missing=int(stream_diag["missing"][()]) if "missing" in stream_diag else 0,
                    late=int(stream_diag["late"][()]) if "late" in stream_diag else 0,
                    invalid=int(stream_diag["invalid"][()]) if "invalid" in stream_diag else 0,
                )
            )
        times = np.concatenate(recv_times) if recv_times else np.array([])
        return RunSummary(
            path=self.path,
            run_uid=self.run_uid,
            plan_name=_attr_str(attrs, "plan_name"),
            scan_id=int(attrs["scan_id"]) if "scan_id" in attrs else None,
            start_time=_attr_str(attrs, "start_time"),
            end_time=_attr_str(attrs, "end_time"),
            complete=bool(attrs.get("complete", False)),
            exit_status=_attr_str(attrs, "exit_status"),
            n_documents=self.n_documents,
            document_counts=counts,
            duration_s=float(times.max() - times.min()) if times.size else 0.0,
            file_bytes=self.path.stat().st_size,
            streams=streams,
            invalid_messages={k: int(v[()]) for k, v in diagnostics["invalid_messages"].items() if v[()]},
        )


def _attr_str(attrs: h5py.AttributeManager, key: str) -> str | None:
    return str(attrs[key]) if key in attrs else None


def _messages(frames: Iterator[tuple[FrameHeader, np.ndarray, float, int]]) -> Iterator[Message]:
    """A stream's frames as the messages they came in: consecutive frames of one arrival
    index were one batch."""
    group: list[tuple[FrameHeader, np.ndarray, float, int]] = []
    for frame in frames:
        if group and frame[3] != group[0][3]:
            yield from _message_of(group)
            group = []
        group.append(frame)
    if group:
        yield from _message_of(group)


def _message_of(group: list[tuple[FrameHeader, np.ndarray, float, int]]) -> Iterator[Message]:
    batch = batch_header([header for header, *_ in group]) if len(group) > 1 else None
    if batch is None:
        for header, data, recv_time, arrival in group:
            yield Message(arrival, recv_time, frame=(header, data))
    else:
        yield Message(group[0][3], group[0][2], frame=(batch, np.stack([data for _, data, *_ in group])))
