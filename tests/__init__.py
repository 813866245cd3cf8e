"""The tests. Imported before any conftest: what must hold before anything imports ophyd."""

import os
import socket


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Channel Access on loopback, on a port of this test session's own (the simulated IOCs' tests),
# as devices.ioc.serve.ca_environment has it: ophyd's pyepics layer takes the client's settings
# when it is imported. A process the session starts that imports `tests` (an IOC of
# tests/readme) inherits the session's port rather than drawing one of its own.
CA_SERVER_PORT = int(os.environ.get("OPERANDO_TEST_CA_PORT") or _free_tcp_port())
os.environ.update({"OPERANDO_TEST_CA_PORT": str(CA_SERVER_PORT), "EPICS_CA_SERVER_PORT": str(CA_SERVER_PORT),
                   "EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO"})  # fmt: skip


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# PV Access likewise (devices.ioc.serve.pva_environment): the simulated IOCs' frames on a TCP port
# and searches on a UDP port of the session's own, server and client settings alike.
PVA_SERVER_PORT = int(os.environ.get("OPERANDO_TEST_PVA_PORT") or _free_tcp_port())
PVA_BROADCAST_PORT = int(os.environ.get("OPERANDO_TEST_PVA_BROADCAST_PORT") or _free_udp_port())
os.environ.update({"OPERANDO_TEST_PVA_PORT": str(PVA_SERVER_PORT),
                   "OPERANDO_TEST_PVA_BROADCAST_PORT": str(PVA_BROADCAST_PORT),
                   "EPICS_PVAS_SERVER_PORT": str(PVA_SERVER_PORT), "EPICS_PVAS_BROADCAST_PORT": str(PVA_BROADCAST_PORT),
                   "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_PVA_ADDR_LIST": "127.0.0.1",
                   "EPICS_PVA_AUTO_ADDR_LIST": "NO", "EPICS_PVA_BROADCAST_PORT": str(PVA_BROADCAST_PORT)})  # fmt: skip
