"""Shared fixtures: loopback endpoints, leak checks, a synthetic run and a recording of it."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from zmq.utils import garbage as zmq_garbage

from simulators.synthetic import SyntheticRun
from streaming.app.demo import publish_synthetic_run
from streaming.store.recorder import Recorder, RecorderConfig, RecorderThread
from streaming.wire.transport import DocumentPublisher, FramePublisher

LOOPBACK = "tcp://127.0.0.1:0"
# started once per process by libraries, on first use: pyzmq's zero-copy garbage collector,
# tqdm's monitor of progress bars
# made once per process: pyzmq's and tqdm's, and ophyd's event dispatcher for pyepics (its
# callback threads and their "debug_monitor")
# threads that live as long as the process; and ``_DummyThread``, Python's name for a thread a C
# library started (libca's, when an IOC goes away) that called back into Python: not ours to join
_PROCESS_WIDE_THREADS = ("GarbageCollectorThread", "TMonitor", "PyepicsCallbackThread", "debug_monitor",
                         "_DummyThread")  # fmt: skip


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0, interval_s: float = 0.02) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def _open_contexts() -> list[zmq.Context]:
    """ZeroMQ contexts not terminated (publishers own one each, and terminate it on close),
    but pyzmq's own: its zero-copy garbage collector's, started once per process."""
    return [o for o in gc.get_objects()
            if isinstance(o, zmq.Context) and not o.closed and o is not zmq_garbage.gc._context]  # fmt: skip


@pytest.fixture(autouse=True)
def no_leaked_sockets_or_threads() -> Iterator[None]:
    """Fail a test that leaves ZeroMQ sockets open (publishers: their contexts) or threads running."""
    context = zmq.Context.instance()
    sockets_before = {id(s) for s in context._sockets if not s.closed}
    contexts_before = {id(c) for c in _open_contexts()}
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked_threads = [
            t
            for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and not {type(t).__name__, t.name} & set(_PROCESS_WIDE_THREADS)
        ]
        leaked_sockets = [s for s in context._sockets if not s.closed and id(s) not in sockets_before]
        leaked_contexts = [c for c in _open_contexts() if id(c) not in contexts_before]
        if not (leaked_threads or leaked_sockets or leaked_contexts) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked_threads, f"threads left running: {leaked_threads}"
    assert not leaked_sockets, f"sockets left open: {leaked_sockets}"
    assert not leaked_contexts, f"publishers left open (their contexts): {leaked_contexts}"


@pytest.fixture
def publishers() -> Iterator[tuple[DocumentPublisher, FramePublisher]]:
    """A document and a frame publisher bound to free loopback ports."""
    with DocumentPublisher(LOOPBACK, linger_s=1) as documents, FramePublisher(LOOPBACK, linger_s=1) as frames:
        yield documents, frames


def recorder_config(tmp: Path, documents: DocumentPublisher, frames: FramePublisher, **overrides) -> RecorderConfig:
    settings = dict(
        out_dir=tmp,
        document_address=documents.address,
        frame_address=frames.address,
        linger_s=0.3,
        flush_interval_s=0.1,
    )
    settings.update(overrides)
    return RecorderConfig(**settings)


def wait_until_closed(recorder: Recorder, n_runs: int = 1) -> None:
    """Wait until the recorder has closed ``n_runs`` run files and holds none open."""
    wait_until(lambda: len(recorder.closed_runs) >= n_runs and recorder.idle)


def record_synthetic_run(tmp: Path, run: SyntheticRun) -> Path:
    """Stream ``run`` through real sockets into a recorder; return the file."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        thread = RecorderThread(recorder_config(tmp, documents, frames))
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            publish_synthetic_run(run, documents, frames)
            wait_until_closed(thread.recorder)
        finally:
            recorder = thread.stop()
    (path,) = recorder.files.values()
    return path


@pytest.fixture(scope="session")
def small_run() -> SyntheticRun:
    return SyntheticRun(n_angles=3, n_translations=7, frame_shape=(48, 40), seed=7)


@pytest.fixture(scope="session")
def recorded_file(tmp_path_factory: pytest.TempPathFactory, small_run: SyntheticRun) -> Path:
    """A recording of ``small_run`` made once per session (read-only for tests)."""
    return record_synthetic_run(tmp_path_factory.mktemp("recorded"), small_run)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def _session_run_engine():
    from bluesky import RunEngine

    return RunEngine({})


@pytest.fixture
def RE(_session_run_engine):
    """A RunEngine (one per session: its event loop thread lives on), cleaned after each test."""
    run_engine = _session_run_engine
    yield run_engine
    if run_engine.state != "idle":
        run_engine.halt()
    run_engine.dispatcher.unsubscribe_all()
