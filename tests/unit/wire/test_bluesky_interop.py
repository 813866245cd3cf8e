"""A real RunEngine with ophyd.sim devices: this package's document channel is read by
bluesky's own RemoteDispatcher (msgpack deserializer) and by the recorder."""

from __future__ import annotations

import asyncio
import threading

import bluesky.plans as bp
import event_model
import pytest
from bluesky import RunEngine
from bluesky.callbacks.zmq import RemoteDispatcher
from ophyd.sim import det, motor

from streaming.store.recorder import RecorderThread
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import pack_payload, unpack_payload
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed


@pytest.fixture(scope="module")
def RE():
    return RunEngine({})


class DispatcherThread:
    """bluesky's RemoteDispatcher running in a thread, collecting what it dispatches."""

    def __init__(self, address: str):
        self.dispatcher = RemoteDispatcher(address.removeprefix("tcp://"), deserializer=unpack_payload)
        self.received: list[tuple[str, dict]] = []
        self.dispatcher.subscribe(lambda name, doc: self.received.append((name, doc)))
        self._thread = threading.Thread(target=self._run, name="remote-dispatcher")
        self._thread.start()

    def _run(self) -> None:
        try:
            self.dispatcher.start()
        except asyncio.CancelledError:
            pass

    def stop(self) -> None:
        wait_until(lambda: self.dispatcher._task is not None)
        self.dispatcher.loop.call_soon_threadsafe(self.dispatcher._task.cancel)
        self._thread.join(10)


def test_runengine_documents_reach_blueskys_remote_dispatcher_and_the_recorder(RE, tmp_path):
    local: list[tuple[str, dict]] = []
    with DocumentPublisher(LOOPBACK) as documents, FramePublisher(LOOPBACK) as frames:
        recorder_thread = RecorderThread(recorder_config(tmp_path, documents, frames))
        dispatcher = DispatcherThread(documents.address)
        try:
            documents.wait_for_subscribers(2, timeout_s=10)  # the recorder and the dispatcher
            tokens = [RE.subscribe(documents), RE.subscribe(lambda name, doc: local.append((name, doc)))]
            (uid,) = RE(bp.scan([det], motor, -1, 1, 7))
            for token in tokens:
                RE.unsubscribe(token)
            wait_until(lambda: len(dispatcher.received) == len(local))
            wait_until_closed(recorder_thread.recorder)
        finally:
            dispatcher.stop()
            recorder = recorder_thread.stop()

    # what crossed the wire is what the RunEngine emitted, in order (as plain msgpack data)
    expected = [(name, unpack_payload(pack_payload(doc))) for name, doc in local]
    assert [name for name, _ in expected] == ["start", "descriptor"] + ["event"] * 7 + ["stop"]
    assert dispatcher.received == expected
    with RunFileReader(recorder.files[uid]) as reader:
        recorded = [(name, doc) for name, doc, *_ in reader.documents()]
        assert reader.summary().plan_name == "scan"
    assert recorded == expected
    for name, doc in recorded:
        event_model.schema_validators[event_model.DocumentNames[name]].validate(doc)
