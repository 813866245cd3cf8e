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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OperandoStreamError

__all__ = ["ConsumerProcess", "FinishedAnalysis", "RecorderProcess"]

logger = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")
_POLL_S = 0.1


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


def _record(config: Any, stop: Any, events: Any) -> None:
    from .recorder import Recorder

    recorder = None
    told: set[str] = set()
    try:
        recorder = Recorder(config)
        while not stop.is_set() and _parent_alive():
            recorder.poll(_POLL_S)
            for uid in recorder.closed_runs - told:
                events.put(("closed", (uid, str(recorder.files[uid]))))
                told.add(uid)
        while recorder.poll(0.0):
            pass
    except BaseException as error:
        events.put(("failed", repr(error)))
        raise
    finally:
        if recorder is not None:
            recorder.close()
    for uid in recorder.closed_runs - told:
        events.put(("closed", (uid, str(recorder.files[uid]))))
    events.put(("stopped", recorder.write_errors))


def _consume(mode: str, config: Any, document_address: str, frame_address: str, stop: Any, events: Any) -> None:  # noqa: PLR0917
    import os

    import numba

    from .consumer import Consumer
    from .experiment import default_analyses

    # one core is left to the plans' process: on the 2-core machine numba's parallel kernels
    # on both cores starved the simulated detectors (small XRD-CT 87 frames/s, 103 on one)
    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 2) - 1)))
    consumer = None
    try:
        factory = default_analyses(config)[mode]
        consumer = Consumer(factory, document_address=document_address, frame_address=frame_address)
        while not stop.is_set() and _parent_alive():
            consumer.poll(_POLL_S)
            for analysis in consumer.finished:
                report = list(getattr(analysis, "report", list)())
                events.put(("finished", FinishedAnalysis(analysis.start["uid"], type(analysis).__name__, report)))
            consumer.finished.clear()  # reported: nothing else needs them here (memory)
    except BaseException as error:
        events.put(("failed", repr(error)))
        raise
    finally:
        if consumer is not None:
            consumer.close()
    events.put(("stopped", consumer.errors))


class _ServiceProcess:
    """A spawned process and the queue of what it says."""

    def __init__(self, name: str, target: Any, *args: Any) -> None:
        self.name = name
        self._stop = _CONTEXT.Event()
        self._events = _CONTEXT.Queue()
        self._process = _CONTEXT.Process(target=target, args=(*args, self._stop, self._events), name=name,
                                         daemon=True)  # fmt: skip
        self.stopped_with: int | None = None  # once stopped: the recorder's write errors, the analysis' errors
        self._process.start()

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "failed":
            raise OperandoStreamError(f"the {self.name} process failed: {payload}")
        if kind == "stopped":
            self.stopped_with = int(payload)

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
        """Ask the process to finish what it holds and end; wait for it."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        while self._process.is_alive() and time.monotonic() < deadline:
            self.drain(_POLL_S)
        self._process.join(max(0.0, deadline - time.monotonic()))
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
            raise OperandoStreamError(f"the {self.name} process did not stop within {timeout_s} s")
        self.drain()
        self._events.close()
        self._events.join_thread()


class RecorderProcess(_ServiceProcess):
    """A :class:`~streaming.recorder.Recorder` in its own process; knows which runs' files are closed.

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
        A key of :func:`~streaming.experiment.default_analyses`.
    config : OperandoConfig
    document_address, frame_address : str
    """

    def __init__(self, mode: str, config: Any, document_address: str, frame_address: str) -> None:
        self.finished: dict[str, FinishedAnalysis] = {}
        super().__init__(f"{mode} analysis", _consume, mode, config, document_address, frame_address)

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "finished":
            self.finished[payload.run_uid] = payload
        super()._handle(kind, payload)

    def wait_finished(self, run_uid: str, timeout_s: float = 600.0) -> FinishedAnalysis:
        """What the analysis of ``run_uid`` reported, once it has finished."""
        self.wait_for(lambda: run_uid in self.finished, timeout_s, f"the analysis of run {run_uid}")
        return self.finished[run_uid]
