"""A helper that kills one Dask worker while it is running tasks (the fault a cluster sees
when a node dies): ``python -m tests.flows.dask_saboteur SCHEDULER``. It connects to the
scheduler, waits until a worker has tasks in flight, and kills that worker's process
(SIGKILL: no goodbye to the scheduler), printing the worker's address and how many tasks it
was running."""

from __future__ import annotations

import os
import signal
import sys
import time

from dask.distributed import Client


def main(scheduler: str) -> None:
    with Client(scheduler, timeout=30) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = {worker: keys for worker, keys in client.processing().items() if keys}
            if busy:
                worker, keys = next(iter(busy.items()))
                (pid,) = client.run(os.getpid, workers=[worker]).values()
                os.kill(pid, signal.SIGKILL)
                print(f"killed {worker} (pid {pid}) running {len(keys)} task(s)", flush=True)
                return
            time.sleep(0.005)
    sys.exit("no worker ever had a task in flight")


if __name__ == "__main__":
    main(sys.argv[1])
