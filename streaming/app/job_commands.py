"""The ``operando`` commands of the main job: ``demo`` and ``bench``.

- :func:`cmd_demo`: a simulated operando experiment (plans, recorder and live analyses), or
  the synthetic stream, record, replay and compare demo.
- :func:`cmd_bench`: run the benchmarks of ``benchmarks/`` and tabulate their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from streaming.errors import ConfigError
from streaming.store.runreader import RunFileReader

from .bench import benchmark_modules, benchmarks_root, ratio_rows, run_benchmark
from .config import OperandoConfig, load_config
from .dashboard import DashboardProcess
from .data_commands import format_summary, stop_on_signals

__all__ = ["cmd_bench", "cmd_demo"]


def cmd_bench(args: argparse.Namespace) -> int:
    root = benchmarks_root(Path.cwd())
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


def cmd_demo(args: argparse.Namespace) -> int:
    from .experiment import MODES, run_experiment  # bluesky and the simulators: only here

    if args.mode == "synthetic":
        return _demo_synthetic(args.out or Path("demo-output"))
    overrides = list(args.set)
    if args.preset:
        overrides.append(f"xrdct.preset={args.preset!r}")
    if args.out:
        overrides.append(f"out_dir={str(args.out)!r}")
    config = load_config(args.config, overrides)
    config.security.install(args)
    if args.epics and config.epics.simulate:
        _loopback_epics()
    modes = MODES if args.mode == "all" else (args.mode,)
    print(f"operando demo {args.mode}: XRD-CT preset {config.xrdct.preset}, output in {config.out_dir}", flush=True)
    dashboard = None if args.no_dashboard else _start_dashboard(config, args.dashboard_port)
    try:
        result = run_experiment(modes, config, progress_file=None if args.quiet else sys.stderr, table_file=sys.stdout,
                                epics=args.epics)  # fmt: skip
        for mode in modes:
            print(f"\n{mode}: {result.elapsed_s[mode]:.1f} s")
            with RunFileReader(result.run_files[mode]) as reader:
                print(format_summary(reader.summary()))
            for line in result.reports.get(mode, []):
                print(f"  {line}")
        if dashboard is not None and args.keep_dashboard:
            print(f"\nthe dashboard shows the results at {dashboard.url}; Ctrl-C to stop", flush=True)
            stop_on_signals().wait()
    finally:
        if dashboard is not None:
            dashboard.stop()
    return 0


def _loopback_epics() -> None:
    """Channel Access and PV Access on loopback, where the simulated IOCs serve (the ports: the
    environment's, else EPICS' defaults), for this process' clients and the IOCs it starts; set
    before the control layer reads them, at its first channel."""
    from devices.ioc.serve import ca_environment, pva_environment

    port = int(os.environ.get("EPICS_CA_SERVER_PORT", "5064"))
    pva_port = int(os.environ.get("EPICS_PVAS_SERVER_PORT", "5075"))
    broadcast_port = int(os.environ.get("EPICS_PVAS_BROADCAST_PORT", "5076"))
    os.environ.update({**ca_environment(port), **pva_environment(pva_port, broadcast_port)})


def _start_dashboard(config: OperandoConfig, port: int) -> DashboardProcess | None:
    """The live dashboard of the demo's analyses, its URL printed; None (and why) if it cannot start."""
    if not config.live.products:
        return None
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    try:
        dashboard = DashboardProcess(config.live.products, Path(config.out_dir) / "dashboard.log", port=port)
    except ConfigError as exc:
        print(f"operando demo: no dashboard: {exc}", file=sys.stderr, flush=True)
        return None
    print(f"live dashboard: {dashboard.url} (open it in a browser; --no-dashboard to skip)", flush=True)
    return dashboard


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
            print(format_summary(reader.summary()))
    return 0
