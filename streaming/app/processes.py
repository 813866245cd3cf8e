"""The recorder and the live analyses in processes of their own.

The main job's RunEngine, simulated detectors, recorder and analyses all hold Python's GIL
for much of their work: in one process they share one core (the demo's XRD-CT ran at 70
frames/s, ~107 % CPU, on the 2-core machine). As processes they use every core, and a
crashed analysis cannot take the plans down. They talk to the parent over ZeroMQ like any
other recorder or consumer; back over a ``multiprocessing`` queue come only small status
messages (a run's file closed, an analysis finished with its report lines).

Processes are started with ``spawn``: the parent runs threads (ZeroMQ, the RunEngine's
loop) that ``fork`` would copy in an undefined state.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streaming.errors import OperandoStreamError
from streaming.wire.security import Security, current_security, use_security

__all__ = ["ConsumerProcess", "DistributorProcess", "FinishedAnalysis", "IntegrationWorkerProcess", "RecorderProcess"]

logger = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")
_POLL_S = 0.1
_LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"


def _parent_alive() -> bool:
    """Whether the process that started this one still runs: a parent killed (SIGKILL, a
    test's timeout) cannot tell its children to stop, and they would wait on their sockets
    for ever (orphans of a killed demo were found doing so)."""
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


@dataclass(frozen=True)
class FinishedAnalysis:
    """What a consumer process says of an analysis it finished."""

    run_uid: str
    kind: str  # the analysis' class name
    report: list[str] = field(default_factory=list)


@contextmanager
def _failures_told(events: Any) -> Iterator[None]:
    """Tell the parent why the process is failing before the traceback ends it."""
    try:
        yield
    except BaseException as error:
        events.put(("failed", repr(error)))
        raise


def _record(config: Any, stop: Any, events: Any) -> None:
    from streaming.store.recorder import Recorder

    recorder = None
    told: set[str] = set()
    try:
        with _failures_told(events):
            recorder = Recorder(config)
            while not stop.is_set() and _parent_alive():
                recorder.poll(_POLL_S)
                for uid in recorder.closed_runs - told:
                    events.put(("closed", (uid, str(recorder.files[uid]))))
                    told.add(uid)
            while recorder.poll(0.0):
                pass
    finally:
        if recorder is not None:
            recorder.close()
    for uid in recorder.closed_runs - told:
        events.put(("closed", (uid, str(recorder.files[uid]))))
    events.put(("stopped", recorder.write_errors))


def _consume(  # noqa: PLR0917
    mode: str, config: Any, document_address: str, frame_address: str, take_patterns: bool, catch_up: str | None,
    stop: Any, events: Any,
) -> None:  # fmt: skip
    import os

    import numba

    from streaming.analysis.consumer import Consumer

    from .analyses import default_analyses, open_products

    # one core is left to the plans' process: on the 2-core machine numba's parallel kernels
    # on both cores starved the simulated detectors (small XRD-CT 87 frames/s, 103 on one)
    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 2) - 1)))
    consumer = products = None
    try:
        with _failures_told(events):
            factory = default_analyses(config)[mode]
            products = open_products(config)
            # the main job's recorder writes into out_dir: runs missed are caught up on from there
            live = {**config.live.consumer_options(), "products": products}
            live["run_directory"] = live["run_directory"] or Path(config.out_dir)
            if take_patterns:  # integration workers' patterns, fanned in on a port of its own
                consumer = Consumer(factory, document_address=document_address, frame_address=_LOOPBACK_ANY_PORT,
                                    frame_pattern="pull", frame_bind=True, **live)  # fmt: skip
                events.put(("ready", consumer.frames.address))
            else:
                consumer = Consumer(factory, document_address=document_address, frame_address=frame_address, **live)
            if catch_up is not None and consumer.late_runs is not None:  # a restart: the run it took over
                consumer.late_runs.expect(catch_up)
            while not stop.is_set() and _parent_alive():
                consumer.poll(_POLL_S)
                for analysis in consumer.finished:
                    report = list(getattr(analysis, "report", list)())
                    events.put(("finished", FinishedAnalysis(analysis.start["uid"], type(analysis).__name__, report)))
                consumer.finished.clear()  # reported: nothing else needs them here (memory)
    finally:
        if consumer is not None:
            consumer.close()
        if products is not None:
            products.close()
    events.put(("stopped", consumer.errors))


def _distribute(frame_address: str, detector: str, n_workers: int, stop: Any, events: Any) -> None:
    from streaming.analysis.distribute import FrameDistributor

    distributor = None
    try:
        with _failures_told(events):
            distributor = FrameDistributor(frame_address, _LOOPBACK_ANY_PORT, streams=(detector,))
            events.put(("ready", distributor.address))
            # every worker connected before a frame is handed out (or the first takes them all)
            distributor.wait_for_workers(n_workers, timeout_s=120)
            events.put(("connected", n_workers))
            while not stop.is_set() and _parent_alive():
                distributor.poll(_POLL_S, stop=stop)
    finally:
        if distributor is not None:
            distributor.close()
    events.put(("stopped", 0))


def _integrate(config: Any, document_address: str, worker_address: str, pattern_address: str,  # noqa: PLR0917
               stop: Any, events: Any) -> None:  # fmt: skip
    import numba

    from streaming.analysis.consumer import Consumer
    from streaming.analysis.xrdct import IntegrationWorker
    from streaming.wire.transport import FramePublisher

    from .analyses import xrdct_analysis_config

    numba.set_num_threads(1)  # workers scale by processes
    consumer = patterns = None
    try:
        with _failures_told(events):
            patterns = FramePublisher(pattern_address, pattern="push", bind=False)
            consumer = Consumer(IntegrationWorker(xrdct_analysis_config(config), patterns, stop=stop),
                                document_address=document_address, frame_address=worker_address,
                                frame_pattern="pull", **config.live.consumer_options())  # fmt: skip
            while not stop.is_set() and _parent_alive():
                consumer.poll(_POLL_S)
                consumer.finished.clear()  # a worker keeps nothing of a finished run
    finally:
        if consumer is not None:
            consumer.close()
        if patterns is not None:
            patterns.close()
    events.put(("stopped", consumer.errors))


def _secured(security: Security, target: Any, *args: Any) -> None:
    """A spawned process's target, with its parent's CURVE keys (:mod:`streaming.wire.security`)."""
    use_security(security)
    target(*args)


class _ServiceProcess:
    """A spawned process and the queue of what it says."""

    def __init__(self, name: str, target: Any, *args: Any) -> None:
        self.name = name
        self._stop = _CONTEXT.Event()
        self._events = _CONTEXT.Queue()
        self._process = _CONTEXT.Process(target=_secured, args=(current_security(), target, *args, self._stop,
                                                                self._events), name=name, daemon=True)  # fmt: skip
        self.stopped_with: int | None = None  # once stopped: the recorder's write errors, the analysis' errors
        self.address: str | None = None  # what a process that binds a port bound (see wait_ready)
        self._process.start()

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "failed":
            raise OperandoStreamError(f"the {self.name} process failed: {payload}")
        if kind == "stopped":
            self.stopped_with = int(payload)
        if kind == "ready":
            self.address = str(payload)

    def wait_ready(self, timeout_s: float = 60.0) -> str:
        """The address the process bound, once it has."""
        self.wait_for(lambda: self.address is not None, timeout_s, f"the {self.name} process binding its port")
        return self.address

    def drain(self, timeout_s: float = 0.0) -> bool:
        """Handle what the process said (waiting up to ``timeout_s`` for a first message)."""
        handled = False
        while True:
            try:
                kind, payload = self._events.get(timeout=timeout_s) if not handled else self._events.get_nowait()
            except queue.Empty:
                return handled
            handled = True
            self._handle(kind, payload)

    def wait_for(self, predicate: Any, timeout_s: float, what: str) -> None:
        """Wait until ``predicate()`` holds, handling messages; raises if the process dies or time is up."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.drain()
            if predicate():
                return
            if not self._process.is_alive():
                self.drain()
                if predicate():
                    return
                raise OperandoStreamError(f"the {self.name} process ended (exit code {self._process.exitcode}) "
                                          f"before {what}")  # fmt: skip
            if time.monotonic() > deadline:
                raise OperandoStreamError(f"{what}: not within {timeout_s} s")
            self.drain(_POLL_S)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Ask the process to finish what it holds and end; wait for it. A failure it reports
        meanwhile is raised once it has ended."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        failure: OperandoStreamError | None = None
        while self._process.is_alive() and time.monotonic() < deadline:
            try:
                self.drain(_POLL_S)
            except OperandoStreamError as error:
                failure = failure or error
        self._process.join(max(0.0, deadline - time.monotonic()))
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
            failure = OperandoStreamError(f"the {self.name} process did not stop within {timeout_s} s")
        try:
            self.drain()
        except OperandoStreamError as error:
            failure = failure or error
        self._events.close()
        self._events.join_thread()
        if failure is not None:
            raise failure


class RecorderProcess(_ServiceProcess):
    """A :class:`~streaming.store.recorder.Recorder` in its own process; knows which runs' files are closed.

    Parameters
    ----------
    config : RecorderConfig
    """

    def __init__(self, config: Any) -> None:
        self.closed: dict[str, Path] = {}  # run uid -> its file, complete on disk
        super().__init__("recorder", _record, config)

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "closed":
            uid, path = payload
            self.closed[uid] = Path(path)
        super()._handle(kind, payload)

    def wait_closed(self, run_uid: str, timeout_s: float = 120.0) -> Path:
        """The file of ``run_uid`` once the recorder has closed it."""
        self.wait_for(lambda: run_uid in self.closed, timeout_s, f"the recorder closing run {run_uid}")
        return self.closed[run_uid]


class ConsumerProcess(_ServiceProcess):
    """The live analysis of one mode of the main job (``default_analyses(config)[mode]``) in
    its own process, connected to the two channels; knows which runs it has finished.

    Parameters
    ----------
    mode : str
        A key of :func:`~streaming.app.analyses.default_analyses`.
    config : OperandoConfig
    document_address, frame_address : str
    take_patterns : bool
        Take integrated patterns from :class:`IntegrationWorkerProcess` es instead of frames:
        the process binds a port of its own for them (:meth:`wait_ready` gives it).
    catch_up : str or None
        A run under way (or just ended) to analyse from the recorder's file, then live: a
        restarted analysis's (:mod:`streaming.analysis.catchup`).
    """

    def __init__(
        self, mode: str, config: Any, document_address: str, frame_address: str, *, take_patterns: bool = False,
        catch_up: str | None = None,
    ) -> None:  # fmt: skip
        self.finished: dict[str, FinishedAnalysis] = {}
        super().__init__(f"{mode} analysis", _consume, mode, config, document_address, frame_address, take_patterns,
                         catch_up)  # fmt: skip

    @property
    def exitcode(self) -> int | None:
        """None while the process runs."""
        return self._process.exitcode

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "finished":
            self.finished[payload.run_uid] = payload
        super()._handle(kind, payload)

    def wait_finished(self, run_uid: str, timeout_s: float = 600.0) -> FinishedAnalysis:
        """What the analysis of ``run_uid`` reported, once it has finished."""
        self.wait_for(lambda: run_uid in self.finished, timeout_s, f"the analysis of run {run_uid}")
        return self.finished[run_uid]


class DistributorProcess(_ServiceProcess):
    """A :class:`~streaming.analysis.distribute.FrameDistributor` of ``detector`` frames in its own
    process; :meth:`wait_ready` gives the address workers connect to, and
    :meth:`wait_connected` returns once ``n_workers`` have."""

    def __init__(self, frame_address: str, n_workers: int, detector: str = "pilatus") -> None:
        self.connected = False
        super().__init__("frame distributor", _distribute, frame_address, detector, n_workers)

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "connected":
            self.connected = True
        super()._handle(kind, payload)

    def wait_connected(self, timeout_s: float = 120.0) -> None:
        """Return once every worker is connected."""
        self.wait_for(lambda: self.connected, timeout_s, "the integration workers connecting")


class IntegrationWorkerProcess(_ServiceProcess):
    """An XRD-CT integration worker (:class:`~streaming.analysis.xrdct.IntegrationWorker`,
    settings from ``config``) in its own process: frames from a distributor, patterns pushed
    to a builder (a :class:`ConsumerProcess` with ``take_patterns``)."""

    def __init__(self, config: Any, document_address: str, worker_address: str, pattern_address: str) -> None:
        super().__init__("integration worker", _integrate, config, document_address, worker_address, pattern_address)
