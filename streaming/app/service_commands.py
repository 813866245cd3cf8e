"""The ``operando`` commands of the analysis services and their keys.

- :func:`cmd_analyze`: a recorded run through fresh analyses, with new parameters.
- :func:`cmd_consume`: the live analyses as a service, on every run on the channels.
- :func:`cmd_distribute`: a detector's frames handed round-robin to integration workers.
- :func:`cmd_integrate`: an XRD-CT integration worker, pushing patterns to the builder.
- :func:`cmd_keys`: CURVE key pairs for every channel (:mod:`streaming.wire.security`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.contrib.logging import logging_redirect_tqdm

from streaming.errors import ConfigError
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentSubscriber, FramePublisher

from .config import load_config
from .data_commands import stop_on_signals

if TYPE_CHECKING:
    from streaming.analysis.consumer import Consumer

__all__ = ["cmd_analyze", "cmd_consume", "cmd_distribute", "cmd_integrate", "cmd_keys"]


def cmd_analyze(args: argparse.Namespace) -> int:
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    with logging_redirect_tqdm():  # log lines above the progress bar, not through it
        if args.dask is not None:
            _analyze_on_dask(args)
        else:
            for path in args.files:
                _analyze_one(path, args)
    return 0


def _analyses_for(path: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """Where a run's results go, and its analyses: the settings of ``args`` over the run's own
    (its simulated detector, its HEXITEC calibration beside it)."""
    from .analyses import default_analyses

    out = args.out or path.parent
    overrides = [f"out_dir={str(out)!r}"]
    beside_the_run = path.parent / "calibration"
    if not (out / "calibration").is_dir() and beside_the_run.is_dir():
        overrides.append(f"xcsct.calibration_dir={str(beside_the_run)!r}")  # the run's own, unless set
    with RunFileReader(path) as reader:
        start = next((doc for name, doc, *_ in reader.documents() if name == "start"), {})
    simulated = start.get("simulation", {}).get("xrdct_preset")
    if simulated is not None:  # the simulated detector the run had (a --set still wins)
        overrides.append(f"xrdct.preset={simulated!r}")
    config = load_config(args.config, [*overrides, *args.set])
    config.security.install(args)
    analyses = default_analyses(config)
    if not analyses:
        raise ConfigError("analyze: no live analysis is configured for this run")
    return out, analyses


def _analyze_one(path: Path, args: argparse.Namespace) -> None:
    from .experiment import analyze_run

    out, analyses = _analyses_for(path, args)
    _report(path, out, analyze_run(path, analyses, progress=not args.quiet))


def _analyze_on_dask(args: argparse.Namespace) -> None:
    from .dask_analyze import analyze_on_dask, dask_client

    jobs = [(path, _analyses_for(path, args)[1]) for path in args.files]
    with dask_client(args.dask or None, args.dask_workers) as client:
        info = client.scheduler_info()
        print(f"Dask: {len(info.get('workers', {}))} worker(s) of the scheduler at {info.get('address')}, "
              f"dashboard {client.dashboard_link}", flush=True)  # fmt: skip
        finished, others = analyze_on_dask(jobs, client, chunk_frames=args.chunk_frames, progress=not args.quiet)
    given = {path.resolve(): path for path in args.files}
    for resolved, analysis in finished:
        path = given.get(resolved, resolved)
        _report(path, args.out or path.parent, [analysis])
    for path in others:  # not XRD-CT: in this process, as without --dask
        _analyze_one(path, args)


def _report(path: Path, out: Path, finished: list) -> None:
    print(f"analysed {path}: {len(finished)} analysis result(s) in {out}", flush=True)
    for analysis in finished:
        for line in getattr(analysis, "report", lambda: [])():
            print(f"  {line}", flush=True)


def cmd_consume(args: argparse.Namespace) -> int:
    from streaming.analysis.consumer import Consumer, ConsumerThread

    from .analyses import default_analyses, open_products

    overrides = [*args.set, *([f"out_dir={str(args.out)!r}"] if args.out else [])]
    config = load_config(args.config, overrides)
    config.security.install(args)
    analyses = default_analyses(config)
    modes = [mode for mode in analyses if args.mode in ("all", mode)]
    if not modes:
        raise ConfigError(f"consume: no {args.mode} analysis is configured (XCS-CT needs the HEXITEC calibration "
                          f"in {config.out_dir}/calibration)")  # fmt: skip
    stop = stop_on_signals()
    threads = []
    products = open_products(config)  # one channel for every analysis of this process
    for mode in modes:
        if mode == "xrdct" and args.patterns:  # patterns from integration workers, fanned in here
            frames = {"frame_address": args.patterns, "frame_pattern": "pull", "frame_bind": True}
        else:
            frames = {"frame_address": args.frames}
        threads.append(ConsumerThread(Consumer(analyses[mode], document_address=args.docs, **frames,
                                               **config.live.consumer_options(), products=products)))  # fmt: skip
    sources = args.frames
    if args.patterns and "xrdct" in modes:
        bound = threads[modes.index("xrdct")].consumer.frames.address
        sources = f"{args.frames} (XRD-CT patterns on {bound})"
    print(f"{', '.join(modes)} analyses of the runs on {args.docs} and {sources}, results in {config.out_dir}"
          + (f", live products on {products.address}" if products is not None else ""), flush=True)  # fmt: skip

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
        if products is not None:
            products.close()
        report_finished()
    return 0


def cmd_distribute(args: argparse.Namespace) -> int:
    from streaming.analysis.distribute import FrameDistributor

    stop = stop_on_signals()
    with FrameDistributor(args.frames, args.workers, streams=(args.stream,)) as distributor:
        print(f"handing {args.stream} frames from {args.frames} to the workers on {distributor.address}", flush=True)
        distributor.run(stop)
        print(f"forwarded {distributor.n_forwarded} frames", flush=True)
    return 0


def cmd_integrate(args: argparse.Namespace) -> int:
    from streaming.analysis.consumer import Consumer
    from streaming.analysis.xrdct import IntegrationWorker

    from .analyses import xrdct_analysis_config

    settings = load_config(args.config, args.set)
    settings.security.install(args)
    config, live = xrdct_analysis_config(settings), settings.live
    stop = stop_on_signals()
    with FramePublisher(args.to, pattern="push", bind=False) as patterns:
        consumer = Consumer(IntegrationWorker(config, patterns, stop=stop), document_address=args.docs,
                            frame_address=args.frames, frame_pattern="pull", **live.consumer_options())  # fmt: skip
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


def cmd_keys(args: argparse.Namespace) -> int:
    from streaming.wire.security import DEFAULT_CLIENT, make_keys

    written = make_keys(args.folder, tuple(args.client or ([] if (args.folder / "server.key").exists()
                                                           else [DEFAULT_CLIENT])))  # fmt: skip
    for path in written:
        print(path, flush=True)
    print(
        f"servers need {args.folder}/server.key_secret and {args.folder}/authorized/; clients their own "
        f"<name>.key_secret and {args.folder}/server.key. Pass --keys {args.folder} (security.keys).",
        flush=True,
    )
    return 0


def cmd_sim_ioc(args: argparse.Namespace) -> int:
    """``operando sim-ioc``: the simulated end station on Channel Access (:mod:`devices.ioc`)."""
    from devices.ioc import run_sim_ioc  # caproto only for this command

    broadcast_port = int(os.environ.get("EPICS_PVAS_BROADCAST_PORT", "5076"))
    if not all(0 < port < 65536 for port in (args.port, args.pva_port, broadcast_port)) or not args.speed > 0:
        raise ConfigError(f"sim-ioc: need ports within 1-65535 and --speed > 0, got --port {args.port}, "
                          f"--pva-port {args.pva_port}, EPICS_PVAS_BROADCAST_PORT {broadcast_port}, "
                          f"--speed {args.speed}")  # fmt: skip
    run_sim_ioc(args.prefix, station=args.station, port=args.port, pva_port=args.pva_port,
                pva_broadcast_port=broadcast_port, interface=args.interface, speed=args.speed,
                options={"preset": args.preset, "seed": args.seed} if args.station == "xrdct" else {
                    "seed": args.seed, "occupancy": args.occupancy})  # fmt: skip
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    """``operando bridge pva``: NTNDArray updates to frames (:mod:`.bridge`)."""
    from .bridge import PvaFrameBridge, run_bridges

    if len(args.pv) != len(args.stream):
        raise ConfigError(f"bridge: one --stream per --pv, got {len(args.pv)} PVs and {len(args.stream)} streams")
    stop = stop_on_signals()
    with contextlib.ExitStack() as stack:
        frames = stack.enter_context(FramePublisher(args.frames))
        bridges = []
        for pv, stream in zip(args.pv, args.stream, strict=True):
            documents = stack.enter_context(DocumentSubscriber(args.documents))
            bridges.append(PvaFrameBridge(pv, stream, documents=documents, frames=frames))
            stack.callback(bridges[-1].close)
        for bridge in bridges:
            bridge.start()
            print(f"{bridge.pv} -> {bridge.stream} frames on {frames.address}, runs from {args.documents}", flush=True)
        run_bridges(bridges, stop)
    for bridge in bridges:
        n = bridge.counts
        print(f"{bridge.stream}: sent {n.sent} frames; {n.missing} missing by uniqueId, {n.dropped_outside_runs} "
              f"outside any run, {n.invalid} invalid, {n.restarts} uniqueId restarts", flush=True)  # fmt: skip
    return 0
