"""Serve a simulated end station on Channel Access and PV Access (``operando sim-ioc``)."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from caproto.asyncio.server import run

from streaming.errors import ConfigError

from .stations import STATIONS

__all__ = ["ca_environment", "pva_environment", "run_sim_ioc"]


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


def pva_environment(port: int, broadcast_port: int, interface: str = "127.0.0.1") -> dict[str, str]:
    """The PV Access variables that keep a server (``EPICS_PVAS_*``) and its clients
    (``EPICS_PVA_*``) on ``interface``: searches on UDP ``broadcast_port``, frames on TCP ``port``."""
    return {
        "EPICS_PVAS_INTF_ADDR_LIST": interface,
        "EPICS_PVAS_SERVER_PORT": str(port),
        "EPICS_PVAS_BROADCAST_PORT": str(broadcast_port),
        "EPICS_PVAS_BEACON_ADDR_LIST": interface,
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVA_ADDR_LIST": interface,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(broadcast_port),
    }


def _refuse_taken(interface: str, port: int, kind: int, what: str) -> None:
    with socket.socket(socket.AF_INET, kind) as probe:  # the servers would take another port silently
        # as the servers bind: a listening socket refuses, the last run's closed connections do not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError as taken:
            raise ConfigError(f"sim-ioc: cannot serve {what} on {interface}:{port}: {taken.strerror}") from None


def run_sim_ioc(prefix: str = "OPS:", *, station: str = "xcsct", port: int = 5064, pva_port: int = 5075,
                pva_broadcast_port: int = 5076, interface: str = "127.0.0.1", speed: float = 1.0,
                options: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Serve an end station (:data:`~.stations.STATIONS`) under ``prefix`` until SIGINT or
    SIGTERM: its records on Channel Access (TCP and UDP ``port``), its detectors' frames on PV
    Access (TCP ``pva_port``, searches on UDP ``pva_broadcast_port``).

    ``speed``: the potentiostat's cell seconds per wall second; ``options``: the station's (the
    XRD-CT simulation's ``preset``, the ``seed``, ...). A TCP port another server listens on is
    refused (:class:`ConfigError`) before anything is served."""
    from p4p.server import Server  # PV Access only where frames are served

    if station not in STATIONS:
        raise ConfigError(f"sim-ioc: station {station!r} is not one of {sorted(STATIONS)}")
    _refuse_taken(interface, port, socket.SOCK_STREAM, "Channel Access")
    _refuse_taken(interface, pva_port, socket.SOCK_STREAM, "PV Access")
    os.environ.update(ca_environment(port, interface))
    os.environ.update(pva_environment(pva_port, pva_broadcast_port, interface))
    ioc = STATIONS[station](prefix, speed=speed, **(options or {}))
    images = ioc.pva_images()

    def interrupt(*_: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one would cut the clean-up short
        raise KeyboardInterrupt  # caproto's run closes its sockets and tasks on it

    signal.signal(signal.SIGTERM, interrupt)

    async def announce(async_lib: Any) -> None:  # once it answers searches
        print(f"serving {len(ioc.pvdb)} PVs of the {station} station under {prefix} on {interface}:{port}, "
              f"frames of {', '.join(images)} on PV Access {interface}:{pva_port}", flush=True)  # fmt: skip

    with Server(providers=[images], useenv=True):
        run(ioc.pvdb, interfaces=[interface], startup_hook=announce)
