"""The ``operando`` command.

Sub-commands: ``record`` (the recorder service), ``replay`` (re-emit a recorded run),
``consume`` (the live analyses as a service), ``distribute`` and ``integrate`` (XRD-CT
integration scaled out over worker processes), ``analyze`` (a recorded run through fresh
analyses), ``info`` (what a run file holds), ``simulate`` (a simulated cell's calibration
files and ground truth), ``bench`` (the benchmarks) and ``demo`` (the main job on embedded
defaults).
A user mistake (bad option value, missing file) gives one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from streaming.analysis.distribute import DEFAULT_PATTERN_ADDRESS, DEFAULT_WORKER_ADDRESS
from streaming.errors import ConfigError, OperandoStreamError
from streaming.store.chunks import COMPRESSIONS
from streaming.store.recorder import Recorder, RecorderConfig
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader, RunSummary
from streaming.wire.transport import DEFAULT_DOCUMENT_ADDRESS, DEFAULT_FRAME_ADDRESS, DocumentPublisher, FramePublisher

from .bench import benchmark_modules, ratio_rows, run_benchmark
from .config import load_config

if TYPE_CHECKING:
    from streaming.analysis.consumer import Consumer

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_USAGE = 2


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docs", default=DEFAULT_DOCUMENT_ADDRESS, help="document channel endpoint (default %(default)s)"
    )
    parser.add_argument("--frames", default=DEFAULT_FRAME_ADDRESS, help="frame channel endpoint (default %(default)s)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="operando", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    record = commands.add_parser("record", help="record every run on the channels to HDF5, until Ctrl-C/SIGTERM")
    record.add_argument("--out", type=Path, required=True, help="folder for the run files")
    _add_endpoint_options(record)
    record.add_argument("--compression", choices=COMPRESSIONS, default="bitshuffle-lz4")
    record.add_argument("--flush-interval", type=float, default=0.5, metavar="S", help="seconds between flushes")
    record.add_argument("--linger", type=float, default=2.0, metavar="S", help="seconds to wait for late frames")

    replay_cmd = commands.add_parser("replay", help="re-emit a recorded run on the channels")
    replay_cmd.add_argument("file", type=Path)
    _add_endpoint_options(replay_cmd)
    pace = replay_cmd.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="pace relative to the recording (default 1)")
    pace.add_argument("--fast", action="store_true", help="as fast as possible")
    replay_cmd.add_argument("--start", type=float, metavar="S", help="window start, s from the run's first message")
    replay_cmd.add_argument("--stop", type=float, metavar="S", help="window end, s from the run's first message")
    replay_cmd.add_argument(
        "--subscribers", type=int, default=1, help="subscriptions to wait for on each channel (a recorder makes one)"
    )
    replay_cmd.add_argument(
        "--frame-subscribers", type=int, metavar="N", help="on the frame channel, if not --subscribers (a "
        "distributor's workers take documents, not frames)"
    )  # fmt: skip
    replay_cmd.add_argument("--wait", type=float, default=30.0, metavar="S", help="how long to wait for them")

    info = commands.add_parser("info", help="runs, streams, frame counts, gaps and sizes of run files")
    info.add_argument("files", type=Path, nargs="+")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    simulate = commands.add_parser("simulate", help="write a simulated cell's calibration files and ground truth")
    simulate.add_argument("mode", choices=["xrdct"], help="which simulator")
    simulate.add_argument("--preset", choices=["tiny", "small", "paper"], default="small")
    simulate.add_argument("--soc", type=float, default=0.5, help="state of charge, 0 (discharged) to 1 (charged)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--attenuation", action="store_true", help="zero-order self-absorption of each ray")
    simulate.add_argument("--out", type=Path, required=True, help="output folder")

    analyze = commands.add_parser("analyze", help="re-run the live analyses on a recorded run, with new parameters")
    analyze.add_argument("file", type=Path)
    analyze.add_argument("--config", type=Path, help="TOML configuration (see streaming/config.py)")
    analyze.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    analyze.add_argument("--out", type=Path, help="folder for the results (default: beside the run file, "
                         "where its /entry/<analysis> links point)")  # fmt: skip

    consume = commands.add_parser("consume", help="the live analyses as a service: analyse every run on the "
                                  "channels (live or replayed), until Ctrl-C/SIGTERM")  # fmt: skip
    consume.add_argument("mode", nargs="?", choices=["all", "xrdct", "xcsct"], default="all", help="which analyses")
    _add_endpoint_options(consume)
    consume.add_argument("--config", type=Path, help="TOML configuration (see streaming/config.py)")
    consume.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    consume.add_argument("--out", type=Path, help="folder for the results (default: the config's out_dir)")
    consume.add_argument("--patterns", metavar="ENDPOINT", help="XRD-CT: take integrated patterns from workers "
                         "(`operando integrate --to` this endpoint, bound here) instead of raw frames")  # fmt: skip

    distribute = commands.add_parser("distribute", help="hand a detector's frames round-robin to integration "
                                     "workers, until Ctrl-C/SIGTERM")  # fmt: skip
    distribute.add_argument("--frames", default=DEFAULT_FRAME_ADDRESS, help="frame channel endpoint (default "
                            "%(default)s)")  # fmt: skip
    distribute.add_argument("--workers", default=DEFAULT_WORKER_ADDRESS, help="where workers connect, bound here "
                            "(default %(default)s)")  # fmt: skip
    distribute.add_argument("--stream", default="pilatus", help="the detector stream (default %(default)s)")

    integrate = commands.add_parser("integrate", help="an XRD-CT integration worker: integrate the frames a "
                                    "distributor hands it, push the patterns to the builder, until "
                                    "Ctrl-C/SIGTERM")  # fmt: skip
    integrate.add_argument("--docs", default=DEFAULT_DOCUMENT_ADDRESS, help="document channel endpoint (default "
                           "%(default)s)")  # fmt: skip
    integrate.add_argument("--frames", default=DEFAULT_WORKER_ADDRESS, help="the distributor (default %(default)s)")
    integrate.add_argument("--to", default=DEFAULT_PATTERN_ADDRESS, help="the builder's --patterns endpoint "
                           "(default %(default)s)")  # fmt: skip
    integrate.add_argument("--config", type=Path, help="TOML configuration (the builder's)")
    integrate.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")

    bench = commands.add_parser("bench", help="run the benchmarks of benchmarks/ and tabulate their ratios")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all; see --list)")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    bench.add_argument("--no-run", action="store_true", help="tabulate the results already in benchmarks/results")
    bench.add_argument("--json", action="store_true", help="machine-readable table")

    demo = commands.add_parser(
        "demo", help="a simulated operando experiment: plans, recorder and live analyses (or 'synthetic')"
    )
    demo.add_argument("mode", nargs="?", choices=["all", "xrdct", "xcsct", "synthetic"], default="all",
                      help="which experiment (default all); 'synthetic': stream, record, replay, compare")  # fmt: skip
    demo.add_argument("--preset", choices=["tiny", "small", "paper"], help="XRD-CT size (default: the config's)")
    demo.add_argument("--config", type=Path, help="TOML configuration (see streaming/config.py)")
    demo.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    demo.add_argument("--out", type=Path, help="output folder (default demo-output)")
    return parser


def _cmd_record(args: argparse.Namespace) -> int:
    config = RecorderConfig(
        out_dir=args.out,
        document_address=args.docs,
        frame_address=args.frames,
        compression=args.compression,
        flush_interval_s=args.flush_interval,
        linger_s=args.linger,
    )
    recorder = Recorder(config)
    stop = _stop_on_signals()
    print(f"recording documents from {args.docs} and frames from {args.frames} into {args.out}", flush=True)
    recorder.run(stop)
    for run_uid, path in recorder.files.items():
        print(f"{run_uid}  {path}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    config = ReplayConfig(speed=None if args.fast else args.speed, start_s=args.start, stop_s=args.stop)
    with (
        RunFileReader(args.file) as reader,
        DocumentPublisher(args.docs, block_when_full=True) as documents,
        FramePublisher(args.frames, block_when_full=True) as frames,
    ):
        n_frames = args.subscribers if args.frame_subscribers is None else args.frame_subscribers
        print(f"waiting for {args.subscribers} receiver(s) on {documents.address} and {n_frames} on {frames.address}",
              flush=True)  # fmt: skip
        documents.wait_for_subscribers(args.subscribers, args.wait)
        frames.wait_for_subscribers(n_frames, args.wait)
        stats = replay(reader, documents, frames, config)
    rate = stats.frames_sent / stats.elapsed_s if stats.elapsed_s else float("inf")
    print(
        f"replayed {stats.documents_sent} documents and {stats.frames_sent} frames "
        f"({stats.bytes_sent / 1e6:.1f} MB) in {stats.elapsed_s:.2f} s, {rate:.0f} frames/s"
    )
    return 0


def _format_summary(summary: RunSummary) -> str:
    lines = [
        f"{summary.path}  ({summary.file_bytes / 1e6:.2f} MB)",
        f"  run        {summary.run_uid}  plan {summary.plan_name or '?'}  scan {summary.scan_id or '?'}",
        f"  time       {summary.start_time or '?'} -> {summary.end_time or '?'} ({summary.duration_s:.2f} s)  "
        + ("complete" if summary.complete else "INCOMPLETE")
        + (f" ({summary.exit_status})" if summary.exit_status else ""),
        f"  documents  {summary.n_documents}: "
        + ", ".join(f"{name} {count}" for name, count in summary.document_counts.items()),
    ]
    if summary.streams:
        lines.append(
            f"  {'stream':<12}{'frames':>8}  {'shape':<14}{'dtype':<6}{'stored MB':>10}{'ratio':>7}"
            f"{'missing':>9}{'late':>6}{'invalid':>9}"
        )
        for s in summary.streams:
            shape = " x ".join(str(n) for n in s.frame_shape) or "scalar"
            lines.append(
                f"  {s.name:<12}{s.n_frames:>8}  {shape:<14}{s.dtype:<6}{s.stored_bytes / 1e6:>10.2f}"
                f"{s.compression_ratio:>6.1f}x{s.missing:>9}{s.late:>6}{s.invalid:>9}"
            )
    else:
        lines.append("  no frame streams")
    invalid = ", ".join(f"{field} {n}" for field, n in summary.invalid_messages.items()) or "none"
    lines.append(f"  invalid messages: {invalid}")
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    summaries = []
    for path in args.files:
        with RunFileReader(path) as reader:
            summaries.append(reader.summary())
    if args.json:
        print(json.dumps([asdict(s) for s in summaries], default=str, indent=1))
    else:
        print("\n".join(_format_summary(s) for s in summaries))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.xrdct import XrdctSimulation

    try:
        simulation = XrdctSimulation(args.preset, soc=args.soc, seed=args.seed, attenuation=args.attenuation)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    paths = simulation.write_calibration(args.out)
    paths["truth"] = simulation.write_ground_truth(args.out / "truth.h5")
    for name, path in paths.items():
        print(f"{name:10s} {path}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .analyses import default_analyses
    from .experiment import analyze_run

    if not args.file.is_file():
        raise FileNotFoundError(f"no such file: {args.file}")
    out = args.out or args.file.parent
    overrides = [f"out_dir={str(out)!r}"]
    beside_the_run = args.file.parent / "calibration"
    if not (out / "calibration").is_dir() and beside_the_run.is_dir():
        overrides.append(f"xcsct.calibration_dir={str(beside_the_run)!r}")  # the run's own, unless set
    with RunFileReader(args.file) as reader:
        start = next((doc for name, doc, *_ in reader.documents() if name == "start"), {})
    simulated = start.get("simulation", {}).get("xrdct_preset")
    if simulated is not None:  # the simulated detector the run had (a --set still wins)
        overrides.append(f"xrdct.preset={simulated!r}")
    config = load_config(args.config, [*overrides, *args.set])
    analyses = default_analyses(config)
    if not analyses:
        raise ConfigError("analyze: no live analysis is configured for this run")
    finished = analyze_run(args.file, analyses)
    print(f"analysed {args.file}: {len(finished)} analysis result(s) in {out}")
    for analysis in finished:
        for line in getattr(analysis, "report", lambda: [])():
            print(f"  {line}")
    return 0


def _cmd_consume(args: argparse.Namespace) -> int:
    from streaming.analysis.consumer import Consumer, ConsumerThread

    from .analyses import default_analyses

    overrides = [*args.set, *([f"out_dir={str(args.out)!r}"] if args.out else [])]
    config = load_config(args.config, overrides)
    analyses = default_analyses(config)
    modes = [mode for mode in analyses if args.mode in ("all", mode)]
    if not modes:
        raise ConfigError(f"consume: no {args.mode} analysis is configured (XCS-CT needs the HEXITEC calibration "
                          f"in {config.out_dir}/calibration)")  # fmt: skip
    stop = _stop_on_signals()
    threads = []
    for mode in modes:
        if mode == "xrdct" and args.patterns:  # patterns from integration workers, fanned in here
            frames = {"frame_address": args.patterns, "frame_pattern": "pull", "frame_bind": True}
        else:
            frames = {"frame_address": args.frames}
        threads.append(ConsumerThread(Consumer(analyses[mode], document_address=args.docs, **frames)))
    sources = args.frames
    if args.patterns and "xrdct" in modes:
        bound = threads[modes.index("xrdct")].consumer.frames.address
        sources = f"{args.frames} (XRD-CT patterns on {bound})"
    print(f"{', '.join(modes)} analyses of the runs on {args.docs} and {sources}, results in {config.out_dir}",
          flush=True)  # fmt: skip

    def report_finished() -> None:
        for thread in threads:
            finished = thread.consumer.finished
            while finished:
                analysis = finished.pop(0)
                print(f"run {analysis.start['uid']}:", flush=True)
                for line in getattr(analysis, "report", list)():
                    print(f"  {line}", flush=True)

    try:
        while not stop.wait(0.2):
            report_finished()
    finally:
        for thread in threads:
            thread.stop()
        report_finished()
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _cmd_distribute(args: argparse.Namespace) -> int:
    from streaming.analysis.distribute import FrameDistributor

    stop = _stop_on_signals()
    with FrameDistributor(args.frames, args.workers, streams=(args.stream,)) as distributor:
        print(f"handing {args.stream} frames from {args.frames} to the workers on {distributor.address}", flush=True)
        distributor.run(stop)
        print(f"forwarded {distributor.n_forwarded} frames", flush=True)
    return 0


def _cmd_integrate(args: argparse.Namespace) -> int:
    from streaming.analysis.consumer import Consumer
    from streaming.analysis.xrdct.analysis import IntegrationWorker

    from .analyses import xrdct_analysis_config

    config = xrdct_analysis_config(load_config(args.config, args.set))
    stop = _stop_on_signals()
    with FramePublisher(args.to, pattern="push", bind=False) as patterns:
        consumer = Consumer(IntegrationWorker(config, patterns, stop=stop), document_address=args.docs,
                            frame_address=args.frames, frame_pattern="pull")  # fmt: skip
        print(f"integrating the frames of {args.frames} into patterns for {args.to}", flush=True)
        try:
            while not stop.is_set():
                consumer.poll()
                _report_integrated(consumer)
        finally:
            consumer.close()  # finishes the runs in progress
            _report_integrated(consumer)
    return 0


def _report_integrated(consumer: Consumer) -> None:
    for run in consumer.finished:
        print(f"run {run.start['uid']}: integrated {run.n_frames} frames", flush=True)
    consumer.finished.clear()  # a worker keeps nothing of a finished run


def _cmd_bench(args: argparse.Namespace) -> int:
    root = Path.cwd()
    available = benchmark_modules(root)
    if args.list:
        print("\n".join(available))
        return 0
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        raise ConfigError(f"bench: unknown benchmark(s) {unknown}; available: {available}")
    failed = []
    for name in [] if args.no_run else args.names or available:
        print(f"== benchmark {name}", flush=True)
        if run_benchmark(root, name) != 0:
            failed.append(name)
    rows = ratio_rows(root / "benchmarks" / "results")
    if args.json:
        print(json.dumps([{"benchmark": b, "metric": m, "ratio": v} for b, m, v in rows], indent=2))
    else:
        width = max((len(m) for _, m, _ in rows), default=6)
        print(f"{'benchmark':<20}{'metric':<{width + 2}}{'ratio':>10}")
        for benchmark, metric, value in rows:
            print(f"{benchmark:<20}{metric:<{width + 2}}{value:>10.2f}")
    if failed:
        print(f"operando bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .experiment import MODES, run_experiment  # bluesky and the simulators: only here

    if args.mode == "synthetic":
        return _demo_synthetic(args.out or Path("demo-output"))
    overrides = list(args.set)
    if args.preset:
        overrides.append(f"xrdct.preset={args.preset!r}")
    if args.out:
        overrides.append(f"out_dir={str(args.out)!r}")
    config = load_config(args.config, overrides)
    modes = MODES if args.mode == "all" else (args.mode,)
    print(f"operando demo {args.mode}: XRD-CT preset {config.xrdct.preset}, output in {config.out_dir}", flush=True)
    result = run_experiment(modes, config, progress_file=sys.stderr, table_file=sys.stdout)
    for mode in modes:
        print(f"\n{mode}: {result.elapsed_s[mode]:.1f} s")
        with RunFileReader(result.run_files[mode]) as reader:
            print(_format_summary(reader.summary()))
        for line in result.reports.get(mode, []):
            print(f"  {line}")
    return 0


def _demo_synthetic(out: Path) -> int:
    from .demo import run_demo

    print("streaming a simulated zigzag scan (20 angles x 32 translations, 256 x 256 frames) ...", flush=True)
    result = run_demo(out)
    print(
        f"recorded in {result.stream_s:.2f} s; replayed at full speed in {result.replay_stats.elapsed_s:.2f} s "
        f"({result.replay_stats.frames_sent / max(result.replay_stats.elapsed_s, 1e-9):.0f} frames/s)"
    )
    print("replayed recording is identical to the original (documents equal, frames bit-identical)\n")
    for path in (result.recorded, result.rerecorded):
        with RunFileReader(path) as reader:
            print(_format_summary(reader.summary()))
    return 0


_COMMANDS = {
    "record": _cmd_record,
    "replay": _cmd_replay,
    "info": _cmd_info,
    "simulate": _cmd_simulate,
    "demo": _cmd_demo,
    "bench": _cmd_bench,
    "analyze": _cmd_analyze,
    "consume": _cmd_consume,
    "distribute": _cmd_distribute,
    "integrate": _cmd_integrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``operando`` console script; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if not args.verbose:  # pyFAI's OpenCL layer warns at import that the optional pyopencl is absent
        logging.getLogger("silx.opencl").setLevel(logging.ERROR)
    try:
        return _COMMANDS[args.command](args)
    except (OperandoStreamError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        # user mistakes (bad values, missing or foreign files, bad endpoints): one line, no traceback
        print(f"operando {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
