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


def _image(unique_id: int, value: int, *, stamp_s: float | None = None, **attributes):
    wrapped = NTNDArray().wrap(np.full(SHAPE, value, np.int32), attrib=attributes)
    wrapped["uniqueId"] = unique_id
    stamp_s = time.time() if stamp_s is None else stamp_s
    wrapped["timeStamp.secondsPastEpoch"], wrapped["timeStamp.nanoseconds"] = int(stamp_s), int(stamp_s % 1 * 1e9)
    return wrapped


def _post(image: SharedPV, unique_id: int, value: int, **kwargs) -> None:
    image.post(_image(unique_id, value, **kwargs))
    time.sleep(0.02)  # a detector's 50 Hz


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
    wait_until(lambda: bridge._connected)  # the PV's value when it connected is skipped: an old frame
    documents("start", {"uid": "run-1", "time": time.time() - 5})
    wait_until(lambda: bridge.run_uid == "run-1")
    for unique_id in (10, 11, 12, 14):  # 13 never came
        _post(image, unique_id, unique_id, **{"position:rotation": 0.5 * unique_id, "index:angle": unique_id - 10})
    frames = _received(receiver, 4)
    assert [f.header.seq for f in frames] == [0, 1, 2, 4]
    assert [int(f.data[0, 0]) for f in frames] == [10, 11, 12, 14]
    assert frames[0].header.shape == SHAPE and frames[0].header.dtype == np.dtype(np.int32).str
    assert frames[-1].header.positions == {"rotation": 7.0} and frames[-1].header.indices == {"angle": 4}
    assert all(f.header.run_uid == "run-1" and f.header.stream == "pilatus" for f in frames)
    assert bridge.counts.missing == 1


def test_each_frame_goes_to_the_run_of_its_time_stamp_whatever_came_first(channels):
    image, documents, receiver, bridge = channels
    wait_until(lambda: bridge._connected)
    now = time.time()
    _post(image, 1, 1, stamp_s=now - 20)  # before any run: it waits, then is in none
    documents("start", {"uid": "run-1", "time": now - 10})
    documents("stop", {"uid": "stop-1", "run_start": "run-1", "time": now - 5, "exit_status": "success"})
    documents("start", {"uid": "run-2", "time": now - 2})
    wait_until(lambda: bridge.run_uid == "run-2")
    _post(image, 2, 2, stamp_s=now - 7)  # run-1's last frame, after run-2 opened
    _post(image, 3, 3, stamp_s=now)  # run-2's first
    _post(image, 4, 4, stamp_s=now - 3.5)  # between the runs: in neither
    frames = _received(receiver, 2)
    assert [(f.header.run_uid, f.header.seq, int(f.data[0, 0])) for f in frames] == [("run-1", 0, 2), ("run-2", 0, 3)]
    wait_until(lambda: bridge.counts.dropped_outside_runs == 2)


def test_a_frame_before_its_start_document_waits_for_it(channels):
    image, documents, receiver, bridge = channels
    wait_until(lambda: bridge._connected)
    _post(image, 7, 7)
    wait_until(lambda: len(bridge._waiting) == 1)
    documents("start", {"uid": "run-3", "time": time.time() - 0.5})
    (frame,) = _received(receiver, 1)
    assert (frame.header.run_uid, frame.header.seq, int(frame.data[0, 0])) == ("run-3", 0, 7)


def test_a_restarted_count_goes_on_and_a_bad_update_is_counted_and_skipped(channels):
    image, documents, receiver, bridge = channels
    wait_until(lambda: bridge._connected)
    documents("start", {"uid": "run-4", "time": time.time() - 5})
    wait_until(lambda: bridge.run_uid == "run-4")
    _post(image, 100, 1)
    _post(image, 101, 2, **{"index:angle": "not a number"})  # skipped, counted
    _post(image, 1, 3)  # the IOC restarted: numbering goes on after the last frame sent
    frames = _received(receiver, 2)
    assert [(f.header.seq, int(f.data[0, 0])) for f in frames] == [(0, 1), (1, 3)]
    assert (bridge.counts.invalid, bridge.counts.restarts, bridge.counts.sent) == (1, 1, 2)


def test_ndattributes_give_positions_and_indices():
    positions, indices = frame_metadata({"position:translation": "1.25", "index:line": 3.0, "ColorMode": 0})
    assert positions == {"translation": 1.25} and indices == {"line": 3}
