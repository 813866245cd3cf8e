"""The consumer loop with a real RunEngine, real sockets and a recorded file replayed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from devices import FrameSink, sim_xrdct_beamline
from plans import xrdct_zigzag
from streaming.analysis.consumer import Consumer, ConsumerThread
from streaming.store.recorder import RecorderThread
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import Frame
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed


class CountingAnalysis:
    """Places each frame's indices; a stand-in for the real analyses."""

    streams = ("pilatus",)

    def __init__(self, start: dict[str, Any]) -> None:
        self.start = start
        self.placed: Counter[tuple[int, int]] = Counter()
        self.documents: Counter[str] = Counter()
        self.stop: dict[str, Any] | None = None
        self.finished = False

    def document(self, name: str, doc: dict[str, Any]) -> None:
        self.documents[name] += 1

    def frame(self, frame: Frame) -> None:
        self.placed[frame.header.indices["angle"], frame.header.indices["translation"]] += 1

    def finish(self, stop: dict[str, Any] | None) -> None:
        self.stop, self.finished = stop, True


@pytest.fixture(scope="module")
def beamline_simulation():
    return sim_xrdct_beamline(preset="tiny").pilatus.simulation


def run_and_consume(RE, tmp_path, simulation, n_angles=6):
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        consumer = ConsumerThread(Consumer(CountingAnalysis, document_address=documents.address,
                                           frame_address=frames.address, linger_s=2.0))  # fmt: skip
        recorder = RecorderThread(recorder_config(tmp_path, documents, frames))
        try:
            documents.wait_for_subscribers(2, 10)
            frames.wait_for_subscribers(2, 10)
            bl = sim_xrdct_beamline(preset="tiny", sink=FrameSink(frames, run_directory=tmp_path))
            bl.pilatus.simulation = simulation
            RE.subscribe(bl.sink)
            RE.subscribe(documents)
            kwargs = bl.zigzag_kwargs()
            kwargs["n_angles"] = n_angles
            RE(xrdct_zigzag(bl.pilatus, bl.translation, bl.rotation, **kwargs))
            wait_until(lambda: len(consumer.consumer.finished) == 1)
            wait_until_closed(recorder.recorder)
        finally:
            done = consumer.stop()
            (path,) = recorder.stop().files.values()
    return done.finished[0], path, kwargs


def test_a_consumer_gets_every_frame_of_a_live_run_and_finishes_it(RE, tmp_path, beamline_simulation):
    analysis, _, kwargs = run_and_consume(RE, tmp_path, beamline_simulation)
    assert analysis.finished and analysis.stop["exit_status"] == "success"
    assert len(analysis.placed) == 6 * kwargs["n_translations"] and set(analysis.placed.values()) == {1}
    assert analysis.documents["stream_datum"] == 6 and analysis.documents["event"] == 6


def test_a_replayed_run_reaches_a_consumer_as_the_live_one_did(RE, tmp_path, beamline_simulation):
    live, path, _ = run_and_consume(RE, tmp_path, beamline_simulation)
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        consumer = ConsumerThread(Consumer(CountingAnalysis, document_address=documents.address,
                                           frame_address=frames.address, linger_s=2.0))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            with RunFileReader(path) as reader:
                replay(reader, documents, frames, ReplayConfig(speed=None))
            wait_until(lambda: len(consumer.consumer.finished) == 1)
        finally:
            replayed = consumer.stop().finished[0]
    assert replayed.placed == live.placed and replayed.documents == live.documents
    assert replayed.start["uid"] == live.start["uid"]


def test_a_backlog_larger_than_one_poll_loses_no_frame():
    """A poll handles a bounded batch; frames beyond it wait for the next poll (one frame
    received past the bound used to be dropped: 3 of the small demo's 38 400 on replay)."""
    import time

    import numpy as np

    start = {"uid": "backlog-run", "time": 0.0}
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        consumer = Consumer(CountingAnalysis, document_address=documents.address, frame_address=frames.address,
                            max_per_poll=5)  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            documents("start", start)
            wait_until(lambda: consumer.poll(0.01) or consumer.runs_seen == 1)
            for i in range(23):
                frames.publish("pilatus", np.full(4, i, np.int32), run_uid=start["uid"],
                               indices={"angle": 0, "translation": i})  # fmt: skip
            deadline = time.monotonic() + 10
            analysis = consumer._runs[start["uid"]].analysis
            while len(analysis.placed) < 23 and time.monotonic() < deadline:
                assert consumer.poll(0.05) <= 5
        finally:
            consumer.close()
    assert sorted(t for _, t in analysis.placed) == list(range(23))
    assert consumer.frames.n_received == 23
