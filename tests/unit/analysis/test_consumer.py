"""The consumer loop with a real RunEngine, real sockets and a recorded file replayed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def consuming(analysis, *, linger_s: float) -> Iterator[tuple[DocumentPublisher, FramePublisher, ConsumerThread]]:
    """Publishers that wait for their receivers, on loopback, and a consumer thread of
    ``analysis`` subscribed to both (stopped on the way out)."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        consumer = ConsumerThread(Consumer(analysis, document_address=documents.address,
                                           frame_address=frames.address, linger_s=linger_s))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            yield documents, frames, consumer
        finally:
            consumer.stop()


def run_and_consume(RE, tmp_path, simulation, n_angles=6, *, analysis=CountingAnalysis, blocking=True,
                    **consumer_options):  # fmt: skip
    """A tiny zigzag of ``n_angles`` under a real RunEngine, recorded and consumed by
    ``analysis``; publishers that wait for their receivers (``blocking``) or a live detector's
    (which drop for a receiver that falls behind). (finished analysis, run file, plan keywords,
    recorder)."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=blocking) as documents,
        FramePublisher(LOOPBACK, block_when_full=blocking) as frames,
    ):
        consumer = ConsumerThread(Consumer(analysis, document_address=documents.address,
                                           frame_address=frames.address, linger_s=2.0, **consumer_options))  # fmt: skip
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
            wait_until(lambda: len(consumer.consumer.finished) == 1, timeout_s=60)
            wait_until_closed(recorder.recorder)
        finally:
            done = consumer.stop()
            recorded = recorder.stop()
    (path,) = recorded.files.values()
    return done.finished[0], path, kwargs, recorded


def test_a_consumer_gets_every_frame_of_a_live_run_and_finishes_it(RE, tmp_path, beamline_simulation):
    analysis, _, kwargs, _ = run_and_consume(RE, tmp_path, beamline_simulation)
    assert analysis.finished and analysis.stop["exit_status"] == "success"
    assert len(analysis.placed) == 6 * kwargs["n_translations"] and set(analysis.placed.values()) == {1}
    assert analysis.documents["stream_datum"] == 6 and analysis.documents["event"] == 6


def test_a_replayed_run_reaches_a_consumer_as_the_live_one_did(RE, tmp_path, beamline_simulation):
    live, path, _, _ = run_and_consume(RE, tmp_path, beamline_simulation)
    with consuming(CountingAnalysis, linger_s=2.0) as (documents, frames, consumer):
        with RunFileReader(path) as reader:
            replay(reader, documents, frames, ReplayConfig(speed=None))
        wait_until(lambda: len(consumer.consumer.finished) == 1)
    replayed = consumer.consumer.finished[0]
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


class SayingAnalysis(CountingAnalysis):
    def progress(self) -> str:
        return f"{len(self.placed)} placed"


def test_a_consumer_says_where_each_run_in_progress_stands_and_a_bar_follows_it():
    """What ``operando analyze`` draws its progress bar from: frames handed to the analysis
    and the analysis' own words, read from another thread."""
    import io

    import numpy as np

    from streaming.app.progress import AnalysisProgress

    start = {"uid": "progress-run", "time": 0.0}
    drawn = io.StringIO()
    with consuming(SayingAnalysis, linger_s=0.5) as (documents, frames, consumer):
        with AnalysisProgress([consumer.consumer], 12, "progress-run", interval_s=0.01, file=drawn):
            documents("start", start)
            wait_until(lambda: consumer.consumer.runs_seen == 1)
            for i in range(10):
                frames.publish("pilatus", np.full(4, i, np.int32), run_uid=start["uid"],
                               indices={"angle": 0, "translation": i})  # fmt: skip
            frames.publish("other", np.zeros(4, np.int32), run_uid=start["uid"])  # not the analysis' stream
            wait_until(lambda: consumer.consumer.n_frames_analysed == 10)
            (run,) = consumer.consumer.progress()
            assert (run.uid, run.frames_analysed, run.status) == ("progress-run", 10, "10 placed")
            wait_until(lambda: "10 placed" in drawn.getvalue())  # the bar shows the analysis' words
            documents("stop", {"uid": "progress-stop", "run_start": start["uid"], "exit_status": "success"})
            wait_until(lambda: len(consumer.consumer.finished) == 1)
        assert consumer.consumer.progress() == []
    assert "10/12" in drawn.getvalue().rsplit("\r", 1)[-1]  # its last state: every frame the analysis took


class StallingAnalysis(CountingAnalysis):
    """Stops for ``stall_s`` at its ``at_frame``-th frame, as a long reconstruction would, and
    records the order frames came in."""

    stall_s = 3.0
    at_frame = 200
    delivery = None  # the consumer's RunDelivery, set before finish

    def __init__(self, start: dict[str, Any]) -> None:
        super().__init__(start)
        self.sequence: list[int] = []

    def frame(self, frame: Frame) -> None:
        if len(self.sequence) == self.at_frame:
            time.sleep(self.stall_s)
        self.sequence.append(frame.header.seq)
        super().frame(frame)


def live_run_with_a_stall(RE, tmp_path, simulation, **consumer_options):
    """A live run with default (non-blocking) publishers, recorded (every frame), and consumed
    by a :class:`StallingAnalysis`; (the analysis, the run's frame count)."""
    analysis, _, kwargs, recorded = run_and_consume(RE, tmp_path, simulation, 12, analysis=StallingAnalysis,
                                                    blocking=False, **consumer_options)  # fmt: skip
    assert recorded.sequences.counts[(analysis.start["uid"], "pilatus")].missing == 0
    return analysis, 12 * kwargs["n_translations"]


def test_a_stalled_analysis_costs_buffer_not_frames(RE, tmp_path, beamline_simulation):
    """The analysis stops for 3 s mid-scan while a non-blocking publisher goes on: the receive
    thread holds what comes meanwhile, nothing is dropped, and the buffer's peak is told."""
    analysis, n_frames = live_run_with_a_stall(RE, tmp_path, beamline_simulation)
    assert analysis.sequence == list(range(n_frames))
    delivery = analysis.delivery
    assert delivery.live["pilatus"] == n_frames and not delivery.backfilled and not delivery.unrecovered
    assert delivery.peak_backlog_frames > 100  # a 3 s stall at the scan's pace (~100 frames/s)
    assert delivery.peak_buffer_bytes >= delivery.peak_backlog_frames * 1000
    assert f"receive buffer peak {delivery.peak_backlog_frames} frames" in delivery.report_line()


def test_frames_dropped_at_a_full_buffer_come_back_from_the_recorders_file(RE, tmp_path, beamline_simulation):
    """The same stall with a buffer of 1 MB: the publisher drops frames for the consumer (its
    socket fills), and the consumer fetches exactly those from the recorder's file, so the
    analysis still gets every frame, once, in sequence order."""
    analysis, n_frames = live_run_with_a_stall(RE, tmp_path, beamline_simulation, max_buffer_bytes=1 << 20)
    assert analysis.sequence == list(range(n_frames))
    assert set(analysis.placed.values()) == {1} and len(analysis.placed) == n_frames
    delivery = analysis.delivery
    assert delivery.backfilled["pilatus"] > 0 and not delivery.unrecovered
    assert delivery.live["pilatus"] + delivery.backfilled["pilatus"] == n_frames
    assert delivery.source.endswith(".h5") and delivery.peak_buffer_bytes <= (1 << 20) + 200_000


class SequenceAnalysis:
    """Records the sequence numbers of the frames it gets, in order."""

    streams = ("pilatus",)
    delivery = None

    def __init__(self, start: dict[str, Any]) -> None:
        self.start, self.sequence = start, []

    def document(self, name: str, doc: dict[str, Any]) -> None:
        pass

    def frame(self, frame: Frame) -> None:
        self.sequence.append(frame.header.seq)

    def finish(self, stop: dict[str, Any] | None) -> None:
        pass


def test_frames_missed_before_the_run_file_is_named_are_fetched_once_it_is(recorded_file):
    """Frames lost before the run's StreamResource names the recorder's file (a detector
    describes its frames after the first ones) wait for it, then come from the file."""
    with RunFileReader(recorded_file) as reader:
        start = next(doc for name, doc, *_ in reader.documents() if name == "start")
        stop = next(doc for name, doc, *_ in reader.documents() if name == "stop")
        frames_recorded = [(header, data) for header, data, *_ in reader.frames("pilatus")]
    resource = {"uid": "resource-1", "run_start": start["uid"], "uri": recorded_file.as_uri(),
                "parameters": {"dataset": "/entry/instrument/pilatus/data"}}  # fmt: skip
    with DocumentPublisher(LOOPBACK) as documents, FramePublisher(LOOPBACK) as frames:
        consumer = ConsumerThread(Consumer(SequenceAnalysis, document_address=documents.address,
                                           frame_address=frames.address, linger_s=1.0))  # fmt: skip
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            documents("start", start)
            wait_until(lambda: consumer.consumer.runs_seen == 1)
            for header, data in frames_recorded[5:]:  # the first five never arrive
                frames.send(header, data)
            wait_until(lambda: consumer.consumer.receiver.stats.frames_taken == len(frames_recorded) - 5)
            documents("stream_resource", resource)
            documents("stop", stop)
            wait_until(lambda: len(consumer.consumer.finished) == 1)
        finally:
            done = consumer.stop()
    (analysis,) = done.finished
    n = len(frames_recorded)
    assert analysis.sequence == [*range(5, n), *range(5)]  # placed by index, order does not matter
    assert analysis.delivery.backfilled["pilatus"] == 5 and not analysis.delivery.unrecovered
