"""The PV Access frame bridge: a p4p server's NTNDArray updates (as NDPluginPva sends them) on
loopback, through the bridge, onto a real frame channel."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from p4p.nt import NTNDArray
from p4p.server import Server
from p4p.server.thread import SharedPV
from p4p.util import ThreadedWorkQueue

from streaming.app.bridge import PvaFrameBridge, frame_metadata
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK, wait_until

PV = "BRIDGETEST:Pva1:Image"
SHAPE = (195, 487)  # a Pilatus module


@pytest.fixture
def server() -> Iterator[tuple[SharedPV, dict[str, str]]]:
    queue = ThreadedWorkQueue(name="test server", maxsize=0, daemon=True).start()
    # raw Values: NDPluginPva's uniqueId and time stamp are ours to set
    image = SharedPV(initial=_image(0, 0), queue=queue)
    conf = {"EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
            "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_PVAS_SERVER_PORT": "0",
            "EPICS_PVAS_BROADCAST_PORT": "0"}  # fmt: skip
    pva = Server(providers=[{PV: image}], conf=conf, useenv=False)
    client_conf = {key: value for key, value in pva.conf().items() if key.startswith("EPICS_PVA_")}
    try:
        yield image, client_conf
    finally:
        pva.stop()
        queue.stop()


def _image(unique_id: int, value: int, **attributes):
    wrapped = NTNDArray().wrap(np.full(SHAPE, value, np.int32), attrib=attributes)
    wrapped["uniqueId"] = unique_id
    now = time.time()
    wrapped["timeStamp.secondsPastEpoch"], wrapped["timeStamp.nanoseconds"] = int(now), int(now % 1 * 1e9)
    return wrapped


def _post(image: SharedPV, unique_id: int, value: int, **attributes) -> None:
    image.post(_image(unique_id, value, **attributes))


@pytest.fixture
def channels(server) -> Iterator[tuple]:
    image, client_conf = server
    with (
        DocumentPublisher(LOOPBACK) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        subscriber = DocumentSubscriber(documents.address)
        receiver = FrameSubscriber(frames.address)
        bridge = PvaFrameBridge(PV, "pilatus", documents=subscriber, frames=frames, pva_conf=client_conf)
        stop = threading.Event()
        thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
        try:
            documents.wait_for_subscribers(1)
            frames.wait_for_subscribers(1)
            bridge.start()
            thread.start()
            yield image, documents, receiver, bridge
        finally:
            stop.set()
            thread.join(10)
            bridge.close()
            subscriber.close()
            receiver.close()


def _received(receiver: FrameSubscriber, n: int) -> list:
    frames = []
    deadline = time.monotonic() + 20
    while len(frames) < n and time.monotonic() < deadline:
        frame = receiver.recv(timeout_s=0.1)
        if frame is not None:
            frames.append(frame)
    return frames


def test_updates_become_the_open_runs_frames_numbered_by_unique_id(channels):
    image, documents, receiver, bridge = channels
    time.sleep(0.2)  # the bridge's subscription is up: its first update is the PV's initial value
    documents("start", {"uid": "run-1", "time": time.time() - 5})
    wait_until(lambda: bridge.run_uid == "run-1")
    for unique_id in (10, 11, 12, 14):  # 13 never came
        _post(image, unique_id, unique_id, **{"position:rotation": 0.5 * unique_id, "index:angle": unique_id - 10})
        time.sleep(0.02)  # a monitor sends the latest value: these are a detector's 50 Hz
    frames = _received(receiver, 4)[-4:]
    assert [f.header.seq for f in frames] == [0, 1, 2, 4]
    assert [int(f.data[0, 0]) for f in frames] == [10, 11, 12, 14]
    assert frames[0].header.shape == SHAPE and frames[0].header.dtype == np.dtype(np.int32).str
    assert frames[-1].header.positions == {"rotation": 7.0} and frames[-1].header.indices == {"angle": 4}
    assert all(f.header.run_uid == "run-1" and f.header.stream == "pilatus" for f in frames)
    assert bridge.counts.missing == 1


def test_frames_before_the_start_wait_for_it_and_older_ones_are_dropped(channels):
    image, documents, receiver, bridge = channels
    time.sleep(0.2)
    _post(image, 1, 1)
    wait_until(lambda: len(bridge._waiting) >= 1)
    documents("start", {"uid": "run-2", "time": time.time() + 10})  # the frame is older than the run
    wait_until(lambda: bridge.run_uid == "run-2")
    assert bridge.counts.dropped_before_run >= 1
    _post(image, 2, 2)
    (frame,) = _received(receiver, 1)
    assert (frame.header.run_uid, frame.header.seq, int(frame.data[0, 0])) == ("run-2", 0, 2)


def test_ndattributes_give_positions_and_indices():
    positions, indices = frame_metadata({"position:translation": "1.25", "index:line": 3.0, "ColorMode": 0})
    assert positions == {"translation": 1.25} and indices == {"line": 3}
