"""``operando analyze --dask``: recorded runs reprocessed on Dask distributed.

Each XRD-CT run file is cut into chunks of frames (:class:`~streaming.analysis.xrdct.chunks.ChunkedRun`);
a task per chunk reads its frames from the file where the worker runs and integrates them
(:func:`~streaming.analysis.xrdct.chunks.integrate_chunk`), so no frame passes through this
process, only patterns (``n_radial`` floats a frame). The patterns are handed to the run's
analysis in the file's order, with the documents where they arrived: the results files are
the live path's, written by the same code. When a scan's last pattern is in, its
reconstruction is made per block of radial channels and its maps per block of image rows,
each block a task (:class:`~streaming.analysis.xrdct.chunks.BlockReduction`, ahead of the
integration tasks queued); nothing is back-projected while the patterns arrive, and the
image made at the end is the live path's, bit for bit (same centre, same order of lines).

Integration tasks of every run are in flight at once (round robin), at most ``4 x workers``
of them, so this process holds a few chunks of patterns per run beyond the analysis' own
scan (its sinogram, reconstruction and maps, as live). A worker holds one frame, a chunk of
patterns and the run's integration tables (a Pilatus 2M's: ~50 MB), or one block of at most
64 MB of volume with its temporaries (about three times that): ~0.3 GB whatever the run's
size. A worker that dies has its tasks run again elsewhere (Dask's own rescheduling): the
result is the same.

Runs that are not XRD-CT (an XCS-CT run) are analysed in this process as without ``--dask``.
Dask moves tasks and results with its own protocol between processes the user started for
it; the frame and document channels are untouched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from streaming.analysis.consumer import Analysis
from streaming.analysis.xrdct.analysis import XrdctAnalysis
from streaming.analysis.xrdct.chunks import BlockReduction, ChunkedRun, integrate_chunk
from streaming.errors import OperandoStreamError
from streaming.store.runreader import RunFileReader

from .analyses import AnalysisFactory
from .progress import progress_bar

__all__ = ["analyze_on_dask", "dask_client"]

logger = logging.getLogger(__name__)


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Any]:
    """A Dask client: of the scheduler at ``scheduler`` (``tcp://host:8786``), or of a
    ``LocalCluster`` of ``n_workers`` single-threaded worker processes (default: one per core)."""
    from dask.distributed import Client, LocalCluster

    # distributed sets its loggers to INFO when imported: the command's own level (-v) rules
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=20)
        except (OSError, ValueError) as exc:  # no scheduler there, or not an address
            raise OperandoStreamError(f"--dask: no Dask scheduler at {scheduler!r} ({exc})") from exc
        with client:
            yield client
        return
    n = n_workers or os.cpu_count() or 1
    # one thread per worker and per kernel: the processes are the parallelism
    single = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                           silence_logs=logging.ERROR, env=single)  # fmt: skip
    with cluster, Client(cluster) as client:
        yield client


def analyze_on_dask(
    jobs: Sequence[tuple[Path, dict[str, AnalysisFactory]]],
    client: Any,
    *,
    chunk_frames: int = 256,
    progress: bool = False,
) -> tuple[list[tuple[Path, Analysis]], list[Path]]:
    """Analyse the XRD-CT runs of ``jobs`` (run file, its analyses) on ``client``'s workers, all
    at once. Returns (run file, finished analysis) of each, and the run files that are not
    XRD-CT runs (for the caller to analyse as it would without Dask)."""
    from dask.distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    # ahead of the integration tasks queued: the client waits for a scan's blocks
    reduction = BlockReduction(partial(client.submit, pure=False, priority=10),
                               put=partial(client.scatter, hash=False), min_blocks=2 * n_workers)  # fmt: skip
    runs, others = [], []
    for path, analyses in jobs:
        analysis = _xrdct_analysis(path, analyses)
        if analysis is None:
            others.append(path)
        else:
            analysis.reduce_on(reduction)
            runs.append(ChunkedRun(path, analysis, chunk_frames=chunk_frames))
    if not runs:
        return [], others
    pending = _round_robin(runs)
    window = 4 * n_workers
    in_flight = as_completed()
    tags: dict[Any, tuple[ChunkedRun, int]] = {}

    def submit_next() -> None:
        task = next(pending, None)
        if task is not None:
            run, index = task
            future = client.submit(integrate_chunk, **run.task(index), pure=False)
            tags[future] = task
            in_flight.add(future)

    for _ in range(window):
        submit_next()
    total = sum(run.n_frames for run in runs)
    with progress_bar(total, f"dask: {len(runs)} run(s)", quiet=not progress) as bar:
        for future in in_flight:
            run, index = tags.pop(future)
            bar.update(run.add(index, future.result()))
            words = [run.analysis.progress() for run in runs if not run.done]
            bar.set_postfix_str("; ".join(word for word in words if word), refresh=False)
            future.release()
            submit_next()
        bar.set_postfix_str("every frame in: reconstructing, mapping, writing", refresh=False)
    return [(run.path, run.finish()) for run in runs], others


def _round_robin(runs: Sequence[ChunkedRun]) -> Iterator[tuple[ChunkedRun, int]]:
    """(run, chunk index) of every run in turn, each run's chunks in order."""
    longest = max(len(run.chunks) for run in runs)
    for index in range(longest):
        for run in runs:
            if index < len(run.chunks):
                yield run, index


def _xrdct_analysis(path: Path, analyses: dict[str, AnalysisFactory]) -> XrdctAnalysis | None:
    with RunFileReader(path) as reader:
        start = next((doc for name, doc, *_ in reader.documents() if name == "start"), None)
    if start is None:
        raise OperandoStreamError(f"{path}: the run has no start document")
    factory = analyses.get("xrdct")
    analysis = factory(start) if factory is not None else None
    return analysis if isinstance(analysis, XrdctAnalysis) else None
