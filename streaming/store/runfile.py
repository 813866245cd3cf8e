"""The HDF5 file of one run: its layout and the writer that fills it live (SWMR).

Layout (DESIGN.md "HDF5 file"; NeXus-style ``NX_class`` attributes)::

    /entry                              NXentry: run_uid, plan_name, scan_id, start_time,
                                        end_time, exit_status, complete, versions
    /entry/documents                    NXcollection, the bluesky documents in arrival order
        name       (n_docs,) S16        document name
        payload    (n_bytes,) uint8     the documents' JSON texts, concatenated (UTF-8)
        offset     (n_docs,) int64      start of each document in ``payload``
        length     (n_docs,) int64      its length in bytes
        recv_time  (n_docs,) float64    recorder clock at receipt, s since the epoch
        arrival    (n_docs,) int64      arrival index, shared with the frames
    /entry/instrument/<stream>          NXdetector, one per frame stream
        data       (n, *shape)          one frame per chunk, hdf5plugin filter
        sequence   (n,) int64           sender's per-stream sequence number
        timestamp  (n,) float64         acquisition time, s since the epoch
        recv_time, arrival (n,)         as for documents
        positions/<name>  (n,) float64  readbacks (NaN where a frame lacked one)
        indices/<name>    (n,) int64    scan indices (-1 where a frame lacked one)
    /entry/xrdct, /entry/xcs, /entry/xct  external links to ``<file stem>.<name>.h5``: the
                                        live analyses write their results there (one
                                        writer per file; dangling until one has run)
    /entry/potentiostat                 NXcollection, written when the run closes: the
                                        ``potentiostat`` monitor stream as columns ``time``
                                        (s), ``voltage`` (V), ``current`` (A), ``capacity``
                                        (mAh), ``mode``, ``step``, ``step_time`` (s), ...
    /entry/diagnostics                  NXcollection
        <stream>/received, missing, late      int64 scalars (see SequenceTracker)
        <stream>/invalid                      int64: rejected messages whose topic named it
        invalid_messages/<field>              int64 scalars: messages rejected, by field,
                                              while this run was being recorded

Documents are stored as bytes, not variable-length strings, because variable-length data
is not safe for SWMR readers (a live reader fails with "address of object past end of
allocation"). New objects cannot be created while SWMR writing is on, so the writer leaves
SWMR mode for the moment it adds a group or dataset (:meth:`RunFileWriter._restructure`);
that happens a few times per run.

A file left by a killed writer opens with ``h5py.File(path, "r", swmr=True)`` and holds
everything flushed before the kill (plain read mode refuses it until ``h5clear -s``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from streaming.wire.diagnostics import StreamCounts
from streaming.wire.protocol import PROTOCOL_VERSION, FrameHeader

from .chunks import compression_filter
from .filenames import analysis_file_name
from .framestreams import StreamWriter, add_key_columns, append_rows, create_stream_group

__all__ = ["ANALYSES", "RunFileWriter", "analysis_file_name"]

logger = logging.getLogger(__name__)

_ENTRY = "entry"
_DOC_CHUNK = 4096


ANALYSES = ("xrdct", "xcs", "xct")


class RunFileWriter:
    """Writes one run's HDF5 file while the run streams in; readers may follow it live.

    Parameters
    ----------
    path : Path
        File to create, or to append to if it exists (a run that resumed after its file was
        closed).
    run_uid : str
        The run's uid.
    compression : str
        One of :data:`COMPRESSIONS`.

    Methods ``add_document`` and ``add_frame`` take the arrival index (the run's original
    order across both channels) and the receipt time; ``flush`` makes everything added so
    far durable and visible to SWMR readers; ``close`` writes the closing attributes.
    """

    def __init__(self, path: Path, run_uid: str, *, compression: str = "bitshuffle-lz4") -> None:
        self.path = Path(path)
        self.run_uid = run_uid
        self._filter = compression_filter(compression)
        self.compression = compression
        existed = self.path.exists()
        self._file = h5py.File(self.path, "r+" if existed else "w", libver="latest", locking=False)
        if not existed:
            self._create_layout()
        self._streams = {
            name: StreamWriter(group, compression) for name, group in self._file[f"{_ENTRY}/instrument"].items()
        }
        self._stream_keys = {
            name: (group.attrs["stream"], group.attrs["dtype"], tuple(group.attrs["frame_shape"]))
            for name, group in self._file[f"{_ENTRY}/instrument"].items()
        }
        self._docs: list[tuple[bytes, bytes, float, int]] = []
        self._file.swmr_mode = True
        self.n_documents = self._file[f"{_ENTRY}/documents/name"].shape[0]
        self._stop_doc: dict[str, Any] | None = None
        self._potentiostat_descriptors: set[str] = set()
        # a reading every few seconds is ~100 bytes: hours of cycling stay small in memory
        self._potentiostat_readings: list[dict[str, Any]] = []
        self.closed = False

    # -- structure ------------------------------------------------------------------------

    def _create_layout(self) -> None:
        entry = self._file.create_group(_ENTRY)
        entry.attrs.update(
            NX_class="NXentry",
            run_uid=self.run_uid,
            protocol_version=PROTOCOL_VERSION,
            operando_stream_version=_package_version(),
            complete=False,
        )
        docs = entry.create_group("documents")
        docs.attrs["NX_class"] = "NXcollection"
        docs.create_dataset("name", shape=(0,), maxshape=(None,), dtype="S16", chunks=(_DOC_CHUNK,))
        docs.create_dataset("payload", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(2**16,))
        for name, dtype in (
            ("offset", np.int64),
            ("length", np.int64),
            ("recv_time", np.float64),
            ("arrival", np.int64),
        ):
            docs.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_DOC_CHUNK,))
        entry.create_group("instrument").attrs["NX_class"] = "NXinstrument"
        for name in ANALYSES:
            # HDF5 resolves a relative link next to this file, wherever it is moved with it
            entry[name] = h5py.ExternalLink(analysis_file_name(self.path, name), f"{_ENTRY}/{name}")
        diagnostics = entry.create_group("diagnostics")
        diagnostics.attrs["NX_class"] = "NXcollection"
        diagnostics.create_group("invalid_messages")

    @contextmanager
    def _restructure(self, *, resume_swmr: bool = True) -> Iterator[h5py.File]:
        """Leave SWMR mode to create objects, then resume it (live readers must reopen)."""
        self.flush()
        self._file.close()
        self._file = h5py.File(self.path, "r+", libver="latest", locking=False)
        for name, stream in self._streams.items():
            stream.reattach(self._file[f"{_ENTRY}/instrument/{name}"])
        yield self._file
        if resume_swmr:
            self._file.swmr_mode = True

    def _stream_for(self, header: FrameHeader) -> StreamWriter:
        key = (header.stream, header.dtype, tuple(header.shape))
        for name, existing in self._stream_keys.items():
            if existing == key:
                stream = self._streams[name]
                new_positions, new_indices = stream.new_keys(header)
                if new_positions or new_indices:
                    self._add_keys(name, new_positions, new_indices)
                return stream
        # A stream that changes dtype or shape mid-run goes to a sibling group, never dropped.
        name = header.stream
        suffix = 1
        while name in self._stream_keys:
            name = f"{header.stream}__{suffix}"
            suffix += 1
        with self._restructure() as file:
            group = create_stream_group(
                file[f"{_ENTRY}/instrument"], name, header, compression=self.compression, filter_options=self._filter
            )
            for item in ("received", "missing", "late", "invalid"):
                file[f"{_ENTRY}/diagnostics"].require_group(name).create_dataset(item, data=np.int64(0))
            self._streams[name] = StreamWriter(group, self.compression)
            self._stream_keys[name] = key
        self._add_keys(name, set(header.positions), set(header.indices))
        return self._streams[name]

    def _add_keys(self, name: str, positions: set[str], indices: set[str]) -> None:
        if not positions and not indices:
            return
        with self._restructure() as file:
            group = file[f"{_ENTRY}/instrument/{name}"]
            add_key_columns(group, positions, indices)
        self._streams[name].position_keys |= positions
        self._streams[name].index_keys |= indices

    # -- data -----------------------------------------------------------------------------

    def add_document(self, name: str, doc: dict[str, Any], *, recv_time: float, arrival: int) -> None:
        """Queue one document for the next flush (start and stop documents flush at once)."""
        payload = json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()
        self._docs.append((name.encode(), payload, recv_time, arrival))
        if name == "descriptor" and doc.get("name") == POTENTIOSTAT_STREAM:
            self._potentiostat_descriptors.add(doc.get("uid"))
        elif name == "event" and doc.get("descriptor") in self._potentiostat_descriptors:
            self._potentiostat_readings.append(doc)
        if name == "start":
            self._set_start_attrs(doc)
        if name in ("start", "stop"):
            self.flush()
        if name == "stop":
            self._stop_doc = doc

    def _set_start_attrs(self, start: dict[str, Any]) -> None:
        with self._restructure() as file:
            attrs = file[_ENTRY].attrs
            for key in ("plan_name", "scan_id"):
                if isinstance(start.get(key), (str, int)) and not isinstance(start.get(key), bool):
                    attrs[key] = start[key]
            if _is_number(start.get("time")):
                attrs["start_time"] = _iso(start["time"])

    def add_frame(self, header: FrameHeader, data: np.ndarray, *, recv_time: float, arrival: int) -> None:
        """Write one frame, or the frames of a batch, now (bounded memory), a row each; their
        metadata rows go out at the next flush."""
        if header.n_frames == 1:
            self._stream_for(header).append(header, data, recv_time, arrival)
        else:
            self._stream_for(header.frame_header(0)).append_batch(header, data, recv_time, arrival)

    def update_diagnostics(
        self,
        counts: Mapping[str, StreamCounts],
        invalid_by_field: Mapping[str, int],
        invalid_by_stream: Mapping[str, int],
    ) -> None:
        """Store the current counts: per stream received/missing/late frames and rejected
        messages naming it (streams of this file only: topics of bad messages are not
        trusted to create groups), and rejected messages per field."""
        diagnostics = self._file[f"{_ENTRY}/diagnostics"]
        for stream, group in diagnostics.items():
            if stream == "invalid_messages":
                continue
            stream_counts = counts.get(stream, StreamCounts())
            for item in ("received", "missing", "late"):
                group[item][()] = getattr(stream_counts, item)
            group["invalid"][()] = invalid_by_stream.get(stream, 0)
        missing = [field for field in invalid_by_field if field not in diagnostics["invalid_messages"]]
        if missing:
            with self._restructure() as file:
                for field in missing:
                    file[f"{_ENTRY}/diagnostics/invalid_messages"].create_dataset(field, data=np.int64(0))
            diagnostics = self._file[f"{_ENTRY}/diagnostics"]
        for field, count in invalid_by_field.items():
            diagnostics["invalid_messages"][field][()] = count

    def flush(self) -> None:
        """Write queued rows and make all data durable and visible to SWMR readers."""
        if self._docs:
            docs = self._file[f"{_ENTRY}/documents"]
            names, payloads, recv_times, arrivals = zip(*self._docs, strict=True)
            lengths = np.array([len(p) for p in payloads], np.int64)
            start = docs["payload"].shape[0]
            offsets = start + np.concatenate([[0], np.cumsum(lengths)[:-1]])
            append_rows(docs["payload"], np.frombuffer(b"".join(payloads), np.uint8))
            append_rows(docs["offset"], offsets)
            append_rows(docs["length"], lengths)
            append_rows(docs["recv_time"], np.array(recv_times, np.float64))
            append_rows(docs["arrival"], np.array(arrivals, np.int64))
            append_rows(docs["name"], np.array(names, "S16"))
            self.n_documents += len(self._docs)
            self._docs.clear()
        for stream in self._streams.values():
            stream.flush_rows()
        self._file.flush()

    def close(self, *, end_time: float | None = None) -> None:
        """Flush, leave SWMR mode and write the closing attributes."""
        if self.closed:
            return
        stop = self._stop_doc
        with self._restructure(resume_swmr=False) as file:
            attrs = file[_ENTRY].attrs
            if stop is not None:
                attrs["complete"] = True
                attrs["exit_status"] = str(stop.get("exit_status", ""))
                if _is_number(stop.get("time")):
                    attrs["end_time"] = _iso(stop["time"])
            elif not attrs["complete"] and end_time is not None:
                # a file reopened for late frames keeps the stop it had
                attrs["end_time"] = _iso(end_time)
            for name, stream in self._streams.items():
                stream.trim()
                file[f"{_ENTRY}/instrument/{name}"].attrs["frames_written"] = stream.n_frames
            if self._potentiostat_readings:
                _write_potentiostat(file[_ENTRY], self._potentiostat_readings)
        self._file.close()
        self.closed = True
        logger.info("closed %s (%d documents)", self.path, self.n_documents)

    def abandon(self) -> None:
        """Close the file without writing more (its storage is full): what was flushed stays
        readable (SWMR); HDF5's complaints about what it could not write are ignored."""
        if not self.closed:
            self.closed = True
            try:
                self._file.close()
            except Exception as error:  # the close flushes what the full storage refuses
                logger.debug("closing %s after a write failure: %s", self.path, error)


POTENTIOSTAT_STREAM = "potentiostat"
_POTENTIOSTAT_UNITS = {"time": "s", "voltage": "V", "current": "A", "capacity": "mAh", "step_time": "s"}


def _write_potentiostat(entry: h5py.Group, readings: list[dict[str, Any]]) -> None:
    """``/entry/potentiostat``: the potentiostat's monitor stream as columns (``time`` is the
    reading's own time stamp, on the experiment clock)."""
    if "potentiostat" in entry:  # a file reopened for late documents: rewrite it whole
        del entry["potentiostat"]
    group = entry.create_group("potentiostat")
    group.attrs["NX_class"] = "NXcollection"
    prefix = f"{POTENTIOSTAT_STREAM}_"
    keys = sorted({key for doc in readings for key in doc.get("data", {})})
    times = [doc.get("timestamps", {}).get(f"{prefix}voltage", doc.get("time")) for doc in readings]
    group.create_dataset("time", data=np.array(times, dtype=np.float64)).attrs["units"] = "s"
    for key in keys:
        values = [doc["data"].get(key) for doc in readings]
        column = key.removeprefix(prefix)
        if all(isinstance(v, str) for v in values):
            data = np.array([v.encode() for v in values], dtype="S32")
        elif all(_is_number(v) for v in values):
            data = np.array(values, dtype=np.float64)
        else:
            continue  # arrays or mixed types: they stay in the documents
        dataset = group.create_dataset(column, data=data)
        if column in _POTENTIOSTAT_UNITS:
            dataset.attrs["units"] = _POTENTIOSTAT_UNITS[column]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat()


def _package_version() -> str:
    try:
        return version("operando-stream")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown"
