"""The ``operando`` commands on run files and the channels: ``record``, ``replay``, ``info``, ``simulate``.

- :func:`cmd_record`: the recorder service, every run on the channels to HDF5.
- :func:`cmd_replay`: re-emit a recorded run on the channels, and say what each receiver
  confirmed it received (exit status 1 when a receiver lacks something or did not confirm).
- :func:`cmd_info`: what run files hold; :func:`format_summary` writes one run's summary.
- :func:`cmd_simulate`: a simulated cell's calibration files and ground truth.
- :func:`stop_on_signals`: an event set by Ctrl-C/SIGTERM, which ends a service command.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import asdict

from streaming.errors import ConfigError
from streaming.store.filenames import analysis_of
from streaming.store.recorder import Recorder, RecorderConfig
from streaming.store.replay import ReplayConfig, confirm_delivery, replay
from streaming.store.runreader import RunFileReader, RunSummary
from streaming.wire.transport import DocumentPublisher, FramePublisher

from .progress import progress_bar

__all__ = ["cmd_info", "cmd_record", "cmd_replay", "cmd_simulate", "format_summary", "stop_on_signals"]

logger = logging.getLogger(__name__)


def cmd_record(args: argparse.Namespace) -> int:
    config = RecorderConfig(
        out_dir=args.out,
        document_address=args.docs,
        frame_address=args.frames,
        compression=args.compression,
        flush_interval_s=args.flush_interval,
        linger_s=args.linger,
    )
    recorder = Recorder(config)
    stop = stop_on_signals()
    print(f"recording documents from {args.docs} and frames from {args.frames} into {args.out}", flush=True)
    recorder.run(stop)
    for run_uid, path in recorder.files.items():
        print(f"{run_uid}  {path}")
    for line in recorder.storage_full_lines():
        print(f"operando record: error: {line}", file=sys.stderr, flush=True)
    return 1 if recorder.storage_full else 0


def cmd_replay(args: argparse.Namespace) -> int:
    config = ReplayConfig(speed=None if args.fast else args.speed, start_s=args.start, stop_s=args.stop)
    # closing the publishers returns once their queues have left (streaming.wire.endpoint)
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
        windowed = args.start is not None or args.stop is not None
        total = None if windowed else sum(stream.n_frames for stream in reader.summary().streams)
        with progress_bar(total, f"replay {args.file.name}", quiet=args.quiet) as bar:
            stats = replay(reader, documents, frames, config, on_frames=bar.update)
        rate = stats.frames_sent / stats.elapsed_s if stats.elapsed_s else float("inf")
        print(
            f"replayed {stats.documents_sent} documents and {stats.frames_sent} frames "
            f"({stats.bytes_sent / 1e6:.1f} MB) in {stats.elapsed_s:.2f} s, {rate:.0f} frames/s",
            flush=True,
        )
        delivery = confirm_delivery(stats, documents, frames, timeout_s=args.confirm_timeout)
    for line in delivery.lines():
        print(f"  {line}")
    if delivery.undelivered:
        logger.error("%d documents and frames sent did not reach a receiver that confirmed", delivery.undelivered)
    if delivery.unconfirmed:
        logger.error("%d receiver(s) sent no receipt within %g s", len(delivery.unconfirmed), args.confirm_timeout)
    return 0 if delivery.complete else 1


def format_summary(summary: RunSummary) -> str:
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


def cmd_info(args: argparse.Namespace) -> int:
    summaries, results = [], []
    for path in args.files:
        if analysis_of(path) is not None:  # `info runs/*.h5` globs the analyses' files too
            results.append(path)
            continue
        with RunFileReader(path) as reader:
            summaries.append(reader.summary())
    if results:
        print(f"(not run files: {len(results)} analysis result file(s), " + ", ".join(str(p) for p in results) + ")",
              file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps([asdict(s) for s in summaries], default=str, indent=1))
    else:
        print("\n".join(format_summary(s) for s in summaries))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.xrdct import XrdctSimulation

    with progress_bar(3, f"simulate xrdct {args.preset}", quiet=args.quiet, unit="step") as bar:
        bar.set_postfix_str("the cell: phantom, phases, rays", refresh=False)
        try:
            simulation = XrdctSimulation(args.preset, soc=args.soc, seed=args.seed, attenuation=args.attenuation)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        bar.update()
        bar.set_postfix_str("calibration: CeO2, mask, PONI", refresh=False)
        paths = simulation.write_calibration(args.out)
        bar.update()
        bar.set_postfix_str("ground truth: maps, sinogram volume", refresh=False)
        paths["truth"] = simulation.write_ground_truth(args.out / "truth.h5")
        bar.update()
        bar.set_postfix_str("done", refresh=False)
    for name, path in paths.items():
        print(f"{name:10s} {path}")
    return 0


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop
