"""A simulated end station's IOC in a process of its own, and a run recorded through it: the
helpers of the EPICS tests (``test_epics_*``)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py

from streaming.app.bridge import PvaFrameBridge, run_bridges
from streaming.store.recorder import RecorderThread
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher
from tests import CA_SERVER_PORT, PVA_SERVER_PORT
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed

ROOT = Path(__file__).resolve().parents[3]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def sim_ioc(station: str, prefix: str, *options: str) -> Iterator[subprocess.Popen]:
    """``operando sim-ioc --station STATION`` on the session's Channel Access and PV Access
    ports (``tests/__init__.py``), until the block ends: then SIGTERM, and it must exit 0
    (unless the test killed it)."""
    command = [sys.executable, "-m", "streaming.app.cli", "sim-ioc", "--station", station, "--prefix", prefix,
               "--port", str(CA_SERVER_PORT), "--pva-port", str(PVA_SERVER_PORT), *options]  # fmt: skip
    log = tempfile.TemporaryFile("w+")  # not a pipe: nobody reads it while the IOC runs, and a full one blocks it
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        # listening on both: a name searched for before it answers is looked for again only after a back-off
        serving = (CA_SERVER_PORT, PVA_SERVER_PORT)
        wait_until(lambda: process.poll() is not None or all(map(listening, serving)), timeout_s=60)
        assert process.poll() is None, f"the IOC did not start: {_printed(log)}"
        yield process
    finally:
        killed = process.poll() is not None
        if not killed:
            process.terminate()
        process.wait(timeout=20)
    printed = _printed(log)
    log.close()
    assert killed or process.returncode == 0, f"the IOC did not stop cleanly ({process.returncode}): {printed}"


def _printed(log) -> str:
    log.seek(0)
    return log.read()[-2000:]


def connected(devices: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    """``devices``, each connected to its PVs."""
    for device in devices.values():
        device.wait_for_connection(timeout=timeout_s)
    return devices


def record(RE, out_dir: Path, plan_for: Callable, *, bridge_pvs: dict[str, str] | None = None,
           during: Callable[[], None] | None = None) -> tuple[Path, list, list[PvaFrameBridge]]:  # fmt: skip
    """Run the plan ``plan_for(frames)`` returns (with the RunEngine tokens to drop after it)
    into a recorder on real sockets; with ``bridge_pvs`` (stream: NTNDArray PV) the frames come
    from the IOC through bridges (``frames`` is then None). Returns the run file, the documents
    and the bridges."""
    emitted: list = []
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
        contextlib.ExitStack() as stack,
    ):
        recorder = RecorderThread(recorder_config(out_dir, documents, frames))
        stack.callback(recorder.stop)
        bridges, stop = [], threading.Event()
        tokens = [RE.subscribe(documents), RE.subscribe(lambda name, doc: emitted.append((name, doc)))]
        stack.callback(lambda: [RE.unsubscribe(token) for token in tokens])
        documents.wait_for_subscribers(1, 10)
        frames.wait_for_subscribers(1, 10)
        for stream, pv in (bridge_pvs or {}).items():
            subscriber = stack.enter_context(DocumentSubscriber(documents.address))
            bridges.append(PvaFrameBridge(pv, stream, documents=subscriber, frames=frames))
            stack.callback(bridges[-1].close)
        if bridges:
            documents.wait_for_subscribers(1 + len(bridges), 10)
            for bridge in bridges:
                bridge.start()
            thread = threading.Thread(target=run_bridges, args=(bridges, stop), daemon=True)
            thread.start()
            stack.callback(thread.join, 10)
            stack.callback(stop.set)
        plan, more_tokens = plan_for(None if bridges else frames)
        tokens += more_tokens
        try:
            RE(plan)
        finally:
            wait_until_closed(recorder.recorder)
    (path,) = recorder.recorder.files.values()
    return path, emitted, bridges


def layout(path: Path) -> dict[str, tuple]:
    """Every dataset of an HDF5 file: its shape and dtype."""
    found: dict[str, tuple] = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: found.__setitem__(name, (item.shape, item.dtype.str))
                        if isinstance(item, h5py.Dataset) else None)  # fmt: skip
    return found
