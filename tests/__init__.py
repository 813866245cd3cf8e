"""The tests. Imported before any conftest: what must hold before anything imports ophyd."""

import os
import socket


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Channel Access on loopback, on a port of this session's own (the simulated IOC's tests), as
# devices.ioc.serve.ca_environment has it: ophyd's pyepics layer takes the client's settings
# when it is imported
CA_SERVER_PORT = _free_tcp_port()
os.environ.update({"EPICS_CA_SERVER_PORT": str(CA_SERVER_PORT), "EPICS_CA_ADDR_LIST": "127.0.0.1",
                   "EPICS_CA_AUTO_ADDR_LIST": "NO"})  # fmt: skip
