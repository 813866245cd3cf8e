"""A simulated EPICS IOC on loopback serving the PVs a README example reads (caproto, pure
Python): ``python -m tests.readme.pv_ioc NAME=VALUE ...``. It prints ``serving NAME ...`` once
it answers searches, and serves until SIGINT/SIGTERM."""

from __future__ import annotations

import sys

from caproto import ChannelDouble
from caproto.server import run


def main(assignments: list[str]) -> None:
    pvdb = {}
    for assignment in assignments:
        name, _, value = assignment.rpartition("=")
        pvdb[name] = ChannelDouble(value=float(value))

    async def announce(async_lib: object) -> None:
        print("serving", " ".join(pvdb), flush=True)

    run(pvdb, interfaces=["127.0.0.1"], startup_hook=announce)


if __name__ == "__main__":
    main(sys.argv[1:])
