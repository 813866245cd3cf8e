"""The main job: a simulated operando experiment, run, recorded and analysed live.

:func:`run_experiment` starts a recorder and the live analyses (consumers) in processes of
their own, on loopback ports chosen at run time, builds the simulated end station(s), and runs
the operando plans under a RunEngine with a progress bar (and a live table of the
potentiostat for XCS-CT). It returns where the run files (and the analyses' files and
figures) are. ``operando demo`` prints them with the key numbers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from bluesky import RunEngine
from bluesky.callbacks import LiveTable
from bluesky.preprocessors import monitor_during_wrapper

from devices import FrameSink, parse_protocol, sim_xcsct_beamline, sim_xrdct_beamline
from plans import ScanProgress, operando_xcsct, operando_xrdct, suspend_on_beam_loss, wait_on_simulated_clock
from streaming.analysis.consumer import Analysis, Consumer, ConsumerThread
from streaming.errors import OperandoStreamError
from streaming.store.recorder import RecorderConfig
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentPublisher, FramePublisher

from .analyses import XCSCT_ROWS, AnalysisFactory, calibration_folder, default_analyses
from .config import OperandoConfig
from .processes import ConsumerProcess, DistributorProcess, IntegrationWorkerProcess, RecorderProcess
from .progress import AnalysisProgress, write_above_bars

__all__ = ["MODES", "ExperimentResult", "analyze_run", "run_experiment"]

logger = logging.getLogger(__name__)

MODES = ("xrdct", "xcsct")
_LOOPBACK_ANY_PORT = "tcp://127.0.0.1:0"


@dataclass
class ExperimentResult:
    """What a run of :func:`run_experiment` left behind."""

    run_files: dict[str, Path] = field(default_factory=dict)  # mode -> run file
    reports: dict[str, list[str]] = field(default_factory=dict)  # mode -> its analysis' key numbers
    elapsed_s: dict[str, float] = field(default_factory=dict)


def _simulated_beamline(mode: str, config: OperandoConfig, sink: FrameSink) -> Any:
    if mode == "xrdct":
        return sim_xrdct_beamline(preset=config.xrdct.preset, sink=sink, seed=config.xrdct.seed,
                                  sample_interval_s=config.potentiostat.sample_interval_s,
                                  beam_dumps=config.beamline.beam_dumps)  # fmt: skip
    return sim_xcsct_beamline(sink=sink, occupancy=config.xcsct.occupancy, seed=config.xcsct.seed, n_z=XCSCT_ROWS,
                              sample_interval_s=config.potentiostat.sample_interval_s,
                              beam_dumps=config.beamline.beam_dumps)  # fmt: skip


def _plan(mode: str, config: OperandoConfig, beamline: Any, simulated: Any) -> Any:
    """``mode``'s operando plan on ``beamline``'s devices (simulated or EPICS), the scan that
    of ``simulated``'s cell."""
    protocol = parse_protocol(config.potentiostat.protocol, capacity_ah=_capacity_ah(beamline))
    if mode == "xrdct":
        kwargs = {**simulated.zigzag_kwargs(exposure_s=config.xrdct.exposure_s), "shutter": beamline.shutter}
        return operando_xrdct(beamline.potentiostat, beamline.pilatus, beamline.translation, beamline.rotation,
                              protocol=protocol, max_repeats=config.xrdct.n_scans, delay=beamline.delay,
                              interval_s=config.xrdct.interval_s, **kwargs)  # fmt: skip
    settings = config.xcsct
    return operando_xcsct(
        beamline.potentiostat, beamline.pco, beamline.hexitec, beamline.rotation, beamline.vertical,
        protocol=protocol, n_projections=settings.n_projections,
        xcs_positions_mm=simulated.cathode_heights_mm(settings.xcs_positions), xct_exposure=settings.xct_exposure_s,
        xcs_exposure=settings.xcs_exposure_s, flats=settings.flats, darks=settings.darks, shutter=beamline.shutter,
        beam=beamline.beam, sample_stage=beamline.translation, out_position=25.0, max_repeats=settings.max_repeats,
        delay=beamline.delay, interval_s=settings.interval_s,
    )  # fmt: skip


def _capacity_ah(beamline: Any) -> float:
    """The cell's nominal capacity: the simulated potentiostat's cell's, or the EPICS station's."""
    capacity = getattr(beamline, "nominal_capacity_ah", None)
    return capacity if capacity is not None else beamline.potentiostat.battery.nominal_capacity_ah


def write_xcs_calibration(beamline: Any, folder: Path) -> None:
    """What the beamline has before an XCS-CT experiment: the HEXITEC's per-pixel calibration
    and dark frames (here from the simulated detector)."""
    folder.mkdir(parents=True, exist_ok=True)
    beamline.hexitec.write_calibration(folder)
    np.save(folder / "darks.npy", beamline.hexitec.simulator().dark_frames(500))


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise OperandoStreamError(f"{what} within {timeout_s} s")
        time.sleep(0.05)


def run_experiment(
    modes: tuple[str, ...],
    config: OperandoConfig,
    *,
    progress_file: TextIO | None = None,
    table_file: TextIO | None = None,
    run_engine: RunEngine | None = None,
    live_analysis: bool = True,
    epics: bool = False,
) -> ExperimentResult:
    """Run the operando plans of ``modes`` on the simulated end stations, recorded into
    ``config.out_dir`` and analysed live by each mode's :func:`default_analyses`.

    The recorder and each mode's analysis run in processes of their own
    (:mod:`streaming.app.processes`), connected to this process' publishers on loopback ports
    chosen at run time; the analysis of a mode subscribes before its run starts.
    ``progress_file``/``table_file`` receive the progress bar and the potentiostat's live
    table (default: discarded). ``run_engine``: the RunEngine to use (default: a new one).
    ``live_analysis``: False to record only. ``epics``: on the end stations' EPICS IOCs
    (``config.epics``; :mod:`.epics_station`), their frames bridged from PV Access.
    """
    unknown = set(modes) - set(MODES)
    if unknown:
        raise OperandoStreamError(f"unknown mode(s) {sorted(unknown)}; choose from {MODES}")
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ExperimentResult()
    with (
        DocumentPublisher(_LOOPBACK_ANY_PORT, block_when_full=True) as documents,
        FramePublisher(_LOOPBACK_ANY_PORT, block_when_full=True) as frames,
    ):
        recorder = RecorderProcess(RecorderConfig(out_dir=out_dir, document_address=documents.address,
                                                  frame_address=frames.address, linger_s=0.5))  # fmt: skip
        tokens = []
        run_engine = run_engine or RunEngine({})
        try:
            documents.wait_for_subscribers(1, timeout_s=60)
            frames.wait_for_subscribers(1, timeout_s=60)
            sink = FrameSink(frames, run_directory=out_dir)
            tokens = [
                run_engine.subscribe(documents),
                run_engine.subscribe(sink),
                run_engine.subscribe(ScanProgress(file=progress_file or io.StringIO())),
            ]
            for mode in modes:
                with contextlib.ExitStack() as station:
                    if epics:
                        from .epics_station import epics_station, frames_through_before_close

                        beamline = station.enter_context(epics_station(mode, config, documents, frames, sink))
                        simulated = beamline.simulated
                        plan = frames_through_before_close(_plan(mode, config, beamline, simulated), beamline)
                    else:
                        beamline = simulated = _simulated_beamline(mode, config, sink)
                        plan = _plan(mode, config, beamline, simulated)
                    if mode == "xcsct" and live_analysis and (not epics or config.epics.simulate):
                        write_xcs_calibration(simulated, calibration_folder(config))
                    analysed = live_analysis and mode in default_analyses(config)
                    if beamline.ring is not None:
                        plan = _suspended_by_beam_loss(plan, beamline, run_engine, station)
                    _run_mode(mode, plan, run_engine, recorder, analysed, config, documents, frames, table_file,
                              result, bridges=len(getattr(beamline, "bridges", ())),
                              during_run=beamline.bridging if epics else contextlib.nullcontext)  # fmt: skip
        finally:
            for token in tokens:
                run_engine.unsubscribe(token)
            recorder.stop()
            if recorder.stopped_with:
                logger.warning("the recorder failed to write %d message(s); its log says which", recorder.stopped_with)
    return result


def _suspended_by_beam_loss(plan: Any, beamline: Any, run_engine: RunEngine, stack: contextlib.ExitStack) -> Any:
    """A beam dump suspends the scan, the cell cycling on (the shutter and the ring current are
    recorded when a dump is simulated); the suspender goes when ``stack`` closes."""
    suspender = suspend_on_beam_loss(beamline.ring.current, shutter=beamline.shutter,
                                     keep_running=[beamline.potentiostat],
                                     wait=wait_on_simulated_clock(beamline.ring))  # fmt: skip
    run_engine.install_suspender(suspender)
    stack.callback(run_engine.remove_suspender, suspender)
    if beamline.ring.dumps:
        plan = monitor_during_wrapper(plan, [beamline.ring.current, beamline.shutter.status])
    return plan


def _run_mode(  # noqa: PLR0917
    mode: str,
    plan: Any,
    run_engine: RunEngine,
    recorder: RecorderProcess,
    analysed: bool,
    config: OperandoConfig,
    documents: DocumentPublisher,
    frames: FramePublisher,
    table_file: TextIO | None,
    result: ExperimentResult,
    bridges: int = 0,
    during_run: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> None:
    """One mode's run, with its analysis process subscribed before the run starts (and, for
    XRD-CT with ``xrdct.workers`` > 1, a frame distributor and that many integration worker
    processes feeding it patterns). ``bridges``: the document channel's subscribers beside the
    recorder (an EPICS station's frame bridges); ``during_run``: a context to run the plan in (their
    sending)."""
    n_workers = config.xrdct.workers if mode == "xrdct" and analysed else 1
    consumer = helpers = watch = None
    completed = False
    try:
        if analysed:
            watch = _RestartOnce(mode, config, documents.address, frames.address, take_patterns=n_workers > 1)
            consumer = watch.process
            helpers = _start_integration_workers(config, documents, frames, consumer, n_workers)
            documents.wait_for_subscribers(1 + bridges + n_workers + (n_workers > 1), timeout_s=60)
            frames.wait_for_subscribers(2, timeout_s=60)  # the recorder and the analysis (or distributor)
        # the table's lines go above the progress bar, not through it
        write = write_above_bars(table_file) if table_file is not None else io.StringIO().write
        table = LiveTable(["potentiostat_voltage", "potentiostat_current", "potentiostat_capacity"],
                          stream_name="primary", out=write)  # fmt: skip
        tokens = [run_engine.subscribe(table), *([run_engine.subscribe(watch)] if watch is not None else [])]
        started = time.monotonic()
        try:
            with during_run():
                (uid,) = run_engine(plan)
        finally:
            for token in tokens:
                run_engine.unsubscribe(token)
        result.elapsed_s[mode] = time.monotonic() - started
        result.run_files[mode] = recorder.wait_closed(uid, timeout_s=120)
        if watch is not None:
            consumer = watch.check(uid)
            result.reports[mode] = consumer.wait_finished(uid, timeout_s=600).report
        completed = True
    finally:
        if watch is not None:
            consumer = watch.process
            watch.forget_the_dead()
        # a failure to stop is raised only if nothing else is on its way out
        _stop_all([*(helpers or []), *([consumer] if consumer is not None else [])], raise_first=completed)
        if consumer is not None:
            # its unsubscriptions must be counted before the next mode waits for its own
            # consumer, or that wait would count this one's stale subscriptions
            _wait_for(lambda: documents.n_subscriptions <= 1 + bridges and frames.n_subscriptions <= 1, 30,
                      f"the {mode} analysis did not unsubscribe")  # fmt: skip


class _RestartOnce:
    """A mode's analysis process, restarted once if it dies: the new one catches up on the run
    under way (or just ended) from the recorder's file, then follows it live
    (:mod:`streaming.analysis.catchup`). A RunEngine callback, so that a death is noticed at
    the next document. With integration workers (their builder's port would change), not
    restarted."""

    def __init__(self, mode: str, config: OperandoConfig, *addresses: str, take_patterns: bool) -> None:
        self._start = lambda run_uid: ConsumerProcess(mode, config, *addresses, take_patterns=take_patterns,
                                                      catch_up=run_uid)  # fmt: skip
        self.restartable = not take_patterns
        self.process = self._start(None)
        self.dead: ConsumerProcess | None = None
        self.run_uid: str | None = None

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.run_uid = doc["uid"]
        self.check(self.run_uid)

    def check(self, run_uid: str | None) -> ConsumerProcess:
        """The analysis process, a new one if it died (once)."""
        if self.process.exitcode is not None and self.dead is None and self.restartable:
            logger.warning("the %s process died (exit code %s); restarted it, once: it catches up on run %s "
                           "from the recorder's file", self.process.name, self.process.exitcode, run_uid)  # fmt: skip
            self.dead, self.process = self.process, self._start(run_uid)
        return self.process

    def forget_the_dead(self) -> None:
        """Collect the process that died (what it said is logged, not raised)."""
        if self.dead is not None:
            try:
                self.dead.stop(timeout_s=5)
            except OperandoStreamError as error:
                logger.warning("%s", error)


def _start_integration_workers(
    config: OperandoConfig,
    documents: DocumentPublisher,
    frames: FramePublisher,
    builder: ConsumerProcess,
    n_workers: int,
) -> list[Any]:
    """For ``n_workers`` > 1: a frame distributor and the workers, integrating for ``builder``."""
    if n_workers <= 1:
        return []
    distributor = DistributorProcess(frames.address, n_workers)
    processes: list[Any] = [distributor]
    try:
        worker_address, pattern_address = distributor.wait_ready(), builder.wait_ready()
        for _ in range(n_workers):
            processes.append(IntegrationWorkerProcess(config, documents.address, worker_address, pattern_address))
        distributor.wait_connected()
    except BaseException:
        _stop_all(processes, raise_first=False)
        raise
    return processes


def _stop_all(processes: list[Any], raise_first: bool = True) -> None:
    """Stop every process, whichever fails to stop cleanly; then raise the first failure."""
    failures = []
    for process in processes:
        try:
            process.stop()
        except OperandoStreamError as error:
            failures.append(error)
        if process.stopped_with:
            logger.warning("the %s met %d error(s); its log says which", process.name, process.stopped_with)
    if failures and raise_first:
        raise failures[0]


_ANALYZE_BUFFER_BYTES = 256 * 2**20


def analyze_run(path: Path, analyses: dict[str, AnalysisFactory], *, progress: bool = False) -> list[Analysis]:
    """Re-run the live analyses on a recorded run: its file replayed as fast as they take it,
    through the same sockets and consumers as live (so the results are the live ones for the
    same parameters). With ``progress``, a bar on stderr: frames analysed of the run's, rate,
    ETA, and where the analysis stands. Returns the finished analyses."""
    with RunFileReader(path) as reader:
        start = next((doc for name, doc, *_ in reader.documents() if name == "start"), None)
        n_frames = sum(stream.n_frames for stream in reader.summary().streams)
    if start is None:
        raise OperandoStreamError(f"{path}: the run has no start document")
    factories = list(analyses.values())
    with (
        DocumentPublisher(_LOOPBACK_ANY_PORT, block_when_full=True) as documents,
        FramePublisher(_LOOPBACK_ANY_PORT, block_when_full=True) as frames,
    ):
        # the replay waits for the analyses: a small buffer holds all the slack there is
        options = {"document_address": documents.address, "frame_address": frames.address,
                   "max_buffer_bytes": _ANALYZE_BUFFER_BYTES, "paced_by_sender": True}  # fmt: skip
        threads = [ConsumerThread(Consumer(factory, **options)) for factory in factories]
        finished: list[Analysis] = []
        try:
            documents.wait_for_subscribers(len(threads), timeout_s=30)
            frames.wait_for_subscribers(len(threads), timeout_s=30)
            consumers = [thread.consumer for thread in threads]
            label = re.sub(r"^\d{8}-\d{6}_", "", path.stem)  # the recorder's names: scan id and uid, not the date
            with AnalysisProgress(consumers, n_frames, label, quiet=not progress):
                with RunFileReader(path) as reader:
                    replay(reader, documents, frames, ReplayConfig(speed=None))
                for consumer in consumers:
                    _wait_for(lambda c=consumer: c.runs_seen and c.idle, 600, "the analysis did not finish")
        finally:
            for thread in threads:
                consumer = thread.stop()
                finished.extend(consumer.finished)
                _log_delivery(consumer, frames.n_sent)
    return finished


def _log_delivery(consumer: Consumer, n_sent: int) -> None:
    """Warn when a replayed frame did not reach an analysis: received, rejected, and missing
    by sequence number (a frame lost on the way shows as a gap)."""
    frames = consumer.frames
    missing = sum(counts.missing for counts in frames.sequences.counts.values()) if frames.sequences else 0
    if frames.n_received < n_sent or missing or frames.rejections.total:
        logger.warning(
            "replay sent %d frames; an analysis received %d (%d rejected, %d missing by sequence number)",
            n_sent, frames.n_received, frames.rejections.total, missing,
        )  # fmt: skip
