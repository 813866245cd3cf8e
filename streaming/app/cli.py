"""The ``operando`` command.

Sub-commands: ``record`` (the recorder service), ``replay`` (re-emit a recorded run),
``consume`` (the live analyses as a service), ``distribute`` and ``integrate`` (XRD-CT
integration scaled out over worker processes), ``analyze`` (a recorded run through fresh
analyses), ``info`` (what a run file holds), ``simulate`` (a simulated cell's calibration
files and ground truth), ``bench`` (the benchmarks), ``dashboard`` (the live analyses in a
web page), ``keys`` (CURVE key pairs), ``sim-ioc`` (the simulated end station's EPICS IOC),
``bridge`` (an areaDetector's frames onto the frame channel) and ``demo`` (the main job on
embedded defaults).
A user mistake (bad option value, missing file) gives one line on stderr and exit code 2,
never a traceback.

This module holds the parser of every sub-command, the dispatch to the command functions
and :func:`main`, the console script's entry point. The commands themselves live in
:mod:`.data_commands` (``record``, ``replay``, ``info``, ``simulate``), :mod:`.dashboard`,
:mod:`.service_commands` (``analyze``, ``consume``, ``distribute``, ``integrate``) and
:mod:`.job_commands` (``demo``, ``bench``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from streaming.analysis.distribute import DEFAULT_PATTERN_ADDRESS, DEFAULT_WORKER_ADDRESS
from streaming.errors import OperandoStreamError
from streaming.store.chunks import COMPRESSIONS
from streaming.wire.products import DEFAULT_PRODUCTS_ADDRESS
from streaming.wire.security import Security, use_security
from streaming.wire.transport import DEFAULT_DOCUMENT_ADDRESS, DEFAULT_FRAME_ADDRESS

from .dashboard import cmd_dashboard
from .data_commands import cmd_info, cmd_record, cmd_replay, cmd_simulate
from .job_commands import cmd_bench, cmd_demo
from .service_commands import cmd_analyze, cmd_bridge, cmd_consume, cmd_distribute, cmd_integrate, cmd_keys, cmd_sim_ioc

__all__ = ["main"]

logger = logging.getLogger(__name__)

EXIT_USAGE = 2


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docs", default=DEFAULT_DOCUMENT_ADDRESS, help="document channel endpoint (default %(default)s)"
    )
    parser.add_argument("--frames", default=DEFAULT_FRAME_ADDRESS, help="frame channel endpoint (default %(default)s)")


def _add_security_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security", "CURVE on every channel (README, Security)")
    group.add_argument("--keys", type=Path, metavar="DIR", help="the key folder `operando keys` made: CURVE on "
                       "every socket (security.keys)")  # fmt: skip
    group.add_argument("--client", metavar="NAME", help="whose key pair this host's connecting sockets use "
                       "(default: client)")  # fmt: skip
    group.add_argument("--insecure", action="store_true", help="allow binding beyond loopback without CURVE")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
    _add_quiet_option(replay_cmd)
    replay_cmd.add_argument("--wait", type=float, default=30.0, metavar="S", help="how long to wait for them")
    replay_cmd.add_argument("--confirm-timeout", type=float, default=120.0, metavar="S",
                            help="how long to wait at the end for the receivers' receipts of what they "
                                 "received (default 120)")  # fmt: skip

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
    _add_quiet_option(simulate)

    analyze = commands.add_parser("analyze", help="re-run the live analyses on recorded runs, with new parameters")
    analyze.add_argument("files", type=Path, nargs="+", metavar="FILE", help="run files, analysed one after the other")
    _add_quiet_option(analyze)
    analyze.add_argument("--dask", nargs="?", const="", metavar="SCHEDULER", help="reprocess on Dask workers: "
                         "a LocalCluster of this machine's cores, or the scheduler at SCHEDULER (tcp://host:8786)",
                         )  # fmt: skip
    analyze.add_argument("--dask-workers", type=_positive_int, metavar="N", help="LocalCluster size (default: the "
                         "cores)")  # fmt: skip
    analyze.add_argument("--chunk-frames", type=_positive_int, default=256, metavar="N", help="frames per Dask task "
                         "(default %(default)s)")  # fmt: skip
    analyze.add_argument("--config", type=Path, help="TOML configuration (see streaming/app/config.py)")
    analyze.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    analyze.add_argument("--out", type=Path, help="folder for the results (default: beside the run file, "
                         "where its /entry/<analysis> links point)")  # fmt: skip

    consume = commands.add_parser("consume", help="the live analyses as a service: analyse every run on the "
                                  "channels (live or replayed), until Ctrl-C/SIGTERM")  # fmt: skip
    consume.add_argument("mode", nargs="?", choices=["all", "xrdct", "xcsct"], default="all", help="which analyses")
    _add_endpoint_options(consume)
    consume.add_argument("--config", type=Path, help="TOML configuration (see streaming/app/config.py)")
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
    demo.add_argument("--config", type=Path, help="TOML configuration (see streaming/app/config.py)")
    demo.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")
    demo.add_argument("--out", type=Path, help="output folder (default demo-output)")
    demo.add_argument("--epics", action="store_true", help="through EPICS: the end stations' IOCs ([epics]: "
                      "simulated unless epics.simulate is false), their frames bridged from PV Access")  # fmt: skip
    demo.add_argument("--no-dashboard", action="store_true", help="do not start the live dashboard")
    demo.add_argument("--dashboard-port", type=int, default=8080, metavar="PORT", help="the dashboard's port "
                      "(default %(default)s; 0: a free one)")  # fmt: skip
    demo.add_argument("--keep-dashboard", action="store_true", help="keep the dashboard serving the results after "
                      "the experiment, until Ctrl-C")  # fmt: skip
    _add_quiet_option(demo)

    dashboard = commands.add_parser("dashboard", help="the live analyses in a web page, until Ctrl-C/SIGTERM")
    dashboard.add_argument("--products", default=DEFAULT_PRODUCTS_ADDRESS, help="the analyses' products channel "
                           "(default %(default)s)")  # fmt: skip
    dashboard.add_argument("--port", type=int, default=8080, help="HTTP port (default %(default)s; 0: a free one)")
    dashboard.add_argument("--bind", default="127.0.0.1", help="address to listen on (default %(default)s: this "
                           "machine only; from elsewhere, tunnel: ssh -L 8080:127.0.0.1:8080 HOST)")  # fmt: skip
    dashboard.add_argument("--with-parent", action="store_true", help=argparse.SUPPRESS)  # the demo's: ends with it

    keys = commands.add_parser("keys", help="make CURVE key pairs: the servers' and one per client, authorised")
    keys.add_argument("folder", type=Path, help="key folder (created; pass it as --keys)")
    keys.add_argument("--client", action="append", metavar="NAME", help="a client's pair to add (repeatable; "
                      "default: 'client' in a new folder)")  # fmt: skip

    bridge = commands.add_parser("bridge", help="an areaDetector's frames (NTNDArray over PV Access) onto the frame "
                                 "channel, in the runs of the document channel, until Ctrl-C/SIGTERM")  # fmt: skip
    bridge.add_argument("protocol", choices=["pva"], help="where the frames come from")
    bridge.add_argument("--pv", required=True, action="append", help="the NTNDArray PV (areaDetector: "
                        "PREFIX:Pva1:Image); repeat it, with --stream, for each detector")  # fmt: skip
    bridge.add_argument("--stream", required=True, action="append", help="the frames' stream: the detector's name "
                        "in the plans (one per --pv, in their order)")  # fmt: skip
    bridge.add_argument("--documents", default=DEFAULT_DOCUMENT_ADDRESS, help="document channel endpoint "
                        "(default %(default)s)")  # fmt: skip
    bridge.add_argument("--frames", default=DEFAULT_FRAME_ADDRESS, help="frame channel endpoint, bound here "
                        "(default %(default)s)")  # fmt: skip

    ioc = commands.add_parser("sim-ioc", help="serve a simulated end station's PVs (motors, shutter, slits, "
                              "potentiostat, detectors' cam) on Channel Access and its frames on PV Access, until "
                              "Ctrl-C/SIGTERM")  # fmt: skip
    ioc.add_argument("--station", choices=["xcsct", "xrdct"], default="xcsct", help="which end station (default "
                     "%(default)s)")  # fmt: skip
    ioc.add_argument("--prefix", default="OPS:", help="PV prefix (default %(default)s)")
    ioc.add_argument("--port", type=int, default=os.environ.get("EPICS_CA_SERVER_PORT", "5064"),
                     help="Channel Access server port (default: EPICS_CA_SERVER_PORT, else 5064)")  # fmt: skip
    ioc.add_argument("--pva-port", type=int, default=os.environ.get("EPICS_PVAS_SERVER_PORT", "5075"),
                     help="PV Access server port (default: EPICS_PVAS_SERVER_PORT, else 5075); searches on "
                     "EPICS_PVAS_BROADCAST_PORT, else 5076")  # fmt: skip
    ioc.add_argument("--preset", default="tiny", help="the XRD-CT simulation's preset (default %(default)s)")
    ioc.add_argument("--seed", type=int, default=0, help="the simulated cells' and detectors' seed (default 0)")
    ioc.add_argument("--occupancy", type=float, default=0.01, help="the HEXITEC's photons per pixel per frame "
                     "(default %(default)s)")  # fmt: skip
    ioc.add_argument("--interface", default="127.0.0.1", help="address to serve on (default %(default)s)")
    ioc.add_argument("--speed", type=float, default=1.0, help="the cell's seconds per wall second (default "
                     "%(default)s)")  # fmt: skip

    for networked in (record, replay_cmd, analyze, consume, distribute, integrate, demo, dashboard, bridge):
        _add_security_options(networked)
    return parser


_COMMANDS = {
    "record": cmd_record,
    "replay": cmd_replay,
    "info": cmd_info,
    "simulate": cmd_simulate,
    "demo": cmd_demo,
    "bench": cmd_bench,
    "analyze": cmd_analyze,
    "consume": cmd_consume,
    "distribute": cmd_distribute,
    "integrate": cmd_integrate,
    "dashboard": cmd_dashboard,
    "keys": cmd_keys,
    "sim-ioc": cmd_sim_ioc,
    "bridge": cmd_bridge,
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
        if hasattr(args, "insecure"):  # a command with sockets: its --keys/--insecure (its config may add to them)
            use_security(Security(keys=args.keys, client=args.client or Security.client, insecure=args.insecure))
        return _COMMANDS[args.command](args)
    except (OperandoStreamError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        # user mistakes (bad values, missing or foreign files, bad endpoints): one line, no traceback
        print(f"operando {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
