"""A recorded XRD-CT run analysed in chunks of frames integrated anywhere (Dask workers).

- :func:`integrate_chunk`: a worker's task: frames ``start:stop`` of a stream read from the run
  file (a shared filesystem's path) and integrated with the run's reducer; returns the patterns.
  No frame leaves the worker.
- :class:`ChunkedRun`: the client's side of one run: the chunks to ask for, and the patterns
  handed to the run's :class:`~.analysis.XrdctAnalysis` in the file's order, with the
  documents between them where they arrived, exactly as a replay through a builder fed by
  integration workers would (the live path's results, by the same code).
- :class:`BlockReduction`: a finished scan's reconstruction per block of radial channels and
  its maps per block of image rows, each block a task of an executor (a Dask client, or any
  ``concurrent.futures`` executor); joined, they are this process' results bit for bit (each
  channel is reconstructed on its own; every map but an area threshold is a voxel's own).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streaming.analysis.delivery import RunDelivery
from streaming.errors import OperandoStreamError
from streaming.processing.fbp import reconstruct
from streaming.processing.integration import AzimuthalReducer
from streaming.processing.maps import MapsConfig, XrdctMaps, compute_voxel_maps, join_maps
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import Frame

from .analysis import XrdctAnalysis
from .config import INTEGRATED_SUFFIX, XrdctAnalysisConfig

__all__ = ["BlockReduction", "ChunkedRun", "integrate_chunk"]

#: Per worker process, the reducers of the runs it integrates lately (a Pilatus 2M's tables
#: are ~50 MB and take a second or two to build: once per run, not per chunk).
_REDUCERS: OrderedDict[tuple[str, str], AzimuthalReducer] = OrderedDict()
_MAX_REDUCERS = 2


def integrate_chunk(path: str, *, stream: str, start: int, stop: int, config: XrdctAnalysisConfig,
                    run_start: dict[str, Any]) -> np.ndarray:  # fmt: skip
    """Frames ``start:stop`` (file rows) of ``stream`` in the run file ``path``, integrated:
    ``(stop - start, n_radial)`` float32, as an integration worker publishes them."""
    key = (path, run_start["uid"])
    reducer = _REDUCERS.get(key)
    if reducer is None:
        reducer = _REDUCERS[key] = config.reducer(run_start)
        while len(_REDUCERS) > _MAX_REDUCERS:
            _REDUCERS.popitem(last=False)
    _REDUCERS.move_to_end(key)
    with RunFileReader(path) as reader:
        patterns = [reducer.integrate(data).astype(np.float32) for _, data, _, _ in reader.frames(stream, start, stop)]
    if len(patterns) != stop - start:
        raise OperandoStreamError(f"{path}: {stream} holds {start + len(patterns)} frames, not {stop}")
    return np.stack(patterns)


class ChunkedRun:
    """One run file's XRD-CT analysis fed chunk by chunk (see the module docstring).

    Parameters
    ----------
    path : Path
        The run file.
    analysis : XrdctAnalysis
        The run's analysis (``make_analysis(start)``), which writes the same results as live.
    chunk_frames : int
        Frames per task: a worker holds one frame and ``chunk_frames`` patterns at a time.
    """

    def __init__(self, path: Path, analysis: XrdctAnalysis, *, chunk_frames: int = 256) -> None:
        if chunk_frames < 1:
            raise OperandoStreamError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.path = Path(path).resolve()
        self.analysis = analysis
        self.stream = analysis.config.detector
        with RunFileReader(self.path) as reader:
            documents = [(name, doc, arrival) for name, doc, _, arrival in reader.documents()]
            self.headers = list(reader.frame_headers(self.stream)) if self.stream in reader.streams else []
        self.n_frames = len(self.headers)
        self.chunks = [(i, min(i + chunk_frames, self.n_frames)) for i in range(0, self.n_frames, chunk_frames)]
        self._documents = [(name, doc, arrival) for name, doc, arrival in documents if name != "start"]
        self._next_document = 0
        self._next_chunk = 0
        self._waiting: dict[int, np.ndarray] = {}  # chunks that came before their turn
        self._stop: dict[str, Any] | None = None
        self.n_fed = 0

    @property
    def done(self) -> bool:
        return self._next_chunk == len(self.chunks)

    def task(self, index: int) -> dict[str, Any]:
        """The keywords of :func:`integrate_chunk` for chunk ``index``."""
        start, stop = self.chunks[index]
        return {"path": str(self.path), "stream": self.stream, "start": start, "stop": stop,
                "config": self.analysis.config, "run_start": self.analysis.start}  # fmt: skip

    def add(self, index: int, patterns: np.ndarray) -> int:
        """Chunk ``index``'s patterns; those now in order go to the analysis. Returns the frames fed."""
        self._waiting[index] = patterns
        fed = 0
        while self._next_chunk in self._waiting:
            start, _ = self.chunks[self._next_chunk]
            for offset, pattern in enumerate(self._waiting.pop(self._next_chunk)):
                header, arrival = self.headers[start + offset]
                self._documents_before(arrival)
                self.analysis.frame(Frame(self._pattern_header(header, pattern), pattern))
                fed += 1
            self._next_chunk += 1
        self.n_fed += fed
        return fed

    def finish(self) -> XrdctAnalysis:
        """After the last chunk: the documents after the last frame, then the analysis' end."""
        if not self.done:
            raise OperandoStreamError(f"{self.path}: chunk {self._next_chunk} of {len(self.chunks)} never came")
        self._documents_before(None)
        self.analysis.delivery = RunDelivery(backfilled=Counter({self.stream: self.n_fed}), source=str(self.path))
        self.analysis.finish(self._stop)  # after every frame, as a consumer does, whenever the stop came
        return self.analysis

    def _documents_before(self, arrival: int | None) -> None:
        """Hand the analysis every document that arrived before ``arrival`` (None: all of them)."""
        while self._next_document < len(self._documents):
            name, doc, arrived = self._documents[self._next_document]
            if arrival is not None and arrived > arrival:
                break
            if name == "stop":
                self._stop = doc
            else:
                self.analysis.document(name, doc)
            self._next_document += 1

    def _pattern_header(self, header: Any, pattern: np.ndarray) -> Any:
        return replace(header, stream=header.stream + INTEGRATED_SUFFIX, dtype=pattern.dtype.str,
                       shape=pattern.shape)  # fmt: skip


class BlockReduction:
    """A scan's reconstruction and maps in blocks, each a task (see the module docstring); a
    :class:`~.scan.ScanReduction`.

    Parameters
    ----------
    submit : callable
        ``submit(fn, *args, **kwargs)`` → a future with ``result()``: a Dask client's
        ``submit`` (with ``pure=False``), or a ``concurrent.futures`` executor's.
    put : callable or None
        Hands a block of volume over before its task is submitted and returns what the task
        takes instead (Dask: ``client.scatter``, so tasks stay small); None passes it as is.
    min_blocks : int
        Blocks per reconstruction (and per maps) at least: a few per worker balances them.
    block_bytes : int
        Largest block, bytes of float32 volume (a block of channels' reconstruction, a block of
        rows' patterns); a task holds about three times this.
    """

    def __init__(self, submit: Callable[..., Future], *, put: Callable[[np.ndarray], Any] | None = None,
                 min_blocks: int = 4, block_bytes: int = 64 << 20) -> None:  # fmt: skip
        if min_blocks < 1 or block_bytes < 1:
            raise OperandoStreamError(f"min_blocks and block_bytes must be >= 1, got {min_blocks}, {block_bytes}")
        self.submit = submit
        self.put = put or (lambda block: block)
        self.min_blocks = min_blocks
        self.block_bytes = block_bytes

    def _blocks(self, n: int, bytes_each: int) -> list[slice]:
        n_blocks = min(n, max(self.min_blocks, math.ceil(n * bytes_each / self.block_bytes)))
        edges = np.linspace(0, n, n_blocks + 1).round().astype(int)
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]

    def reconstruct(self, sinogram: np.ndarray, angles_deg: np.ndarray, *, center_px: float, filter_name: str,
                    line_order: Sequence[int] | None) -> np.ndarray:  # fmt: skip
        """As :func:`~streaming.processing.fbp.reconstruct`, a task per block of radial channels."""
        n_pixels = sinogram.shape[1]
        futures = [
            self.submit(reconstruct, self.put(np.ascontiguousarray(sinogram[..., block])), angles_deg,
                        center_px=center_px, filter_name=filter_name,
                        line_order=None if line_order is None else list(line_order))
            for block in self._blocks(sinogram.shape[2], 4 * n_pixels * n_pixels)
        ]  # fmt: skip
        return np.concatenate([future.result() for future in futures], axis=2)

    def maps(self, reconstruction: np.ndarray, radial_deg: np.ndarray, config: MapsConfig, *,
             wavelength_angstrom: float) -> XrdctMaps:  # fmt: skip
        """As :func:`~streaming.processing.maps.compute_maps`, a task per block of image rows."""
        row_bytes = 4 * reconstruction.shape[1] * reconstruction.shape[2]
        futures = [
            self.submit(compute_voxel_maps, self.put(np.ascontiguousarray(reconstruction[rows])), radial_deg, config,
                        wavelength_angstrom=wavelength_angstrom)
            for rows in self._blocks(reconstruction.shape[0], row_bytes)
        ]  # fmt: skip
        return join_maps([future.result() for future in futures], config)
