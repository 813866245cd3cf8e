"""Serve the simulated end station on Channel Access (``operando sim-ioc``)."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from caproto.asyncio.server import run

from streaming.errors import ConfigError

from .beamline import SimBeamlineIOC

__all__ = ["ca_environment", "run_sim_ioc"]


def ca_environment(port: int, interface: str = "127.0.0.1") -> dict[str, str]:
    """The EPICS variables that keep a server and its clients on ``interface`` and ``port``
    (searches, beacons and circuits): for the IOC's process and for its clients' (pyepics
    and caproto read them when they start)."""
    return {
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CA_ADDR_LIST": interface,
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CAS_INTF_ADDR_LIST": interface,
        "EPICS_CAS_BEACON_ADDR_LIST": "",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    }  # fmt: skip (no beacons: no repeater listens for them)


def run_sim_ioc(prefix: str = "OPS:", *, port: int = 5064, interface: str = "127.0.0.1", speed: float = 1.0) -> None:
    """Serve :class:`~.beamline.SimBeamlineIOC` under ``prefix`` until SIGINT or SIGTERM.

    ``speed``: the potentiostat's cell seconds per wall second."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # caproto would take another port silently
        try:
            probe.bind((interface, port))
        except OSError as taken:
            raise ConfigError(f"sim-ioc: cannot serve on {interface}:{port}: {taken.strerror}") from None
    os.environ.update(ca_environment(port, interface))
    ioc = SimBeamlineIOC(prefix, speed=speed)

    def interrupt(*_: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one would cut the clean-up short
        raise KeyboardInterrupt  # caproto's run closes its sockets and tasks on it

    signal.signal(signal.SIGTERM, interrupt)

    async def announce(async_lib: Any) -> None:  # once it answers searches
        print(f"serving {len(ioc.pvdb)} PVs under {prefix} on {interface}:{port}", flush=True)

    run(ioc.pvdb, interfaces=[interface], startup_hook=announce)
