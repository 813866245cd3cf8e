"""An analysis that starts while a run is under way: the run so far from the recorder's SWMR
file, then live, every frame and document exactly once (real RunEngine, sockets, recorder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devices import FrameSink, sim_xrdct_beamline
from plans import xrdct_zigzag
from streaming.analysis.consumer import Consumer, ConsumerThread
from streaming.store.recorder import RecorderThread
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import Frame
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed


class LoggingAnalysis:
    """Every document uid and frame sequence number it is handed, in order."""

    streams = ("pilatus",)
    delivery = None

    def __init__(self, start: dict[str, Any]) -> None:
        self.start, self.documents, self.sequence, self.stop = start, [], [], None

    def document(self, name: str, doc: dict[str, Any]) -> None:
        self.documents.append(doc["uid"])

    def frame(self, frame: Frame) -> None:
        self.sequence.append(frame.header.seq)

    def finish(self, stop: dict[str, Any] | None) -> None:
        self.stop = stop


def _late_consumer(RE, tmp_path, *, after_events: int, finishes: bool = True, **options) -> tuple[Consumer, Path, int]:
    """A tiny zigzag recorded from its start; a consumer that connects after ``after_events``
    lines (and ``finishes`` the run). Returns the consumer (stopped), the run file and the
    frames sent before it joined."""
    joined = {}
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        recorder = RecorderThread(recorder_config(tmp_path, documents, frames))
        consumer = None

        def join_late(name: str, doc: dict[str, Any]) -> None:
            nonlocal consumer
            if name == "event" and doc["seq_num"] == after_events and consumer is None:
                consumer = ConsumerThread(Consumer(LoggingAnalysis, document_address=documents.address,
                                                   frame_address=frames.address, linger_s=2.0, **options))  # fmt: skip
                documents.wait_for_subscribers(2, 10)
                frames.wait_for_subscribers(2, 10)
                joined["frames_sent"] = frames.n_sent

        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            beamline = sim_xrdct_beamline(preset="tiny", sink=FrameSink(frames, run_directory=tmp_path))
            tokens = [RE.subscribe(beamline.sink), RE.subscribe(documents), RE.subscribe(join_late)]
            kwargs = beamline.zigzag_kwargs()
            kwargs["n_angles"] = 6
            try:
                RE(xrdct_zigzag(beamline.pilatus, beamline.translation, beamline.rotation, **kwargs))
            finally:
                for token in tokens:
                    RE.unsubscribe(token)
            if finishes:
                wait_until(lambda: consumer is not None and len(consumer.consumer.finished) == 1, timeout_s=60)
            else:  # it looked for the run, once, after its grace period
                wait_until(lambda: consumer is not None and consumer.consumer.late_runs.looked_for == 1, timeout_s=60)
            wait_until_closed(recorder.recorder)
        finally:
            done = consumer.stop() if consumer is not None else None
            recorded = recorder.stop()
    (path,) = recorded.files.values()
    return done, path, joined["frames_sent"]


def test_a_consumer_that_joins_mid_run_catches_up_from_the_file_then_goes_live(RE, tmp_path):
    consumer, path, sent_before = _late_consumer(RE, tmp_path, after_events=3, run_directory=tmp_path)
    (analysis,) = consumer.finished
    with RunFileReader(path) as reader:
        documents = [doc["uid"] for name, doc, *_ in reader.documents() if name not in ("start", "stop")]
        n_frames = reader.n_frames("pilatus")
    assert 0 < sent_before < n_frames
    assert analysis.sequence == list(range(n_frames))  # every frame once, in order
    assert analysis.documents == documents  # every document once, in order
    assert analysis.stop is not None and analysis.stop["exit_status"] == "success"
    delivery = analysis.delivery
    assert delivery.backfilled["pilatus"] >= sent_before and not delivery.unrecovered
    assert delivery.backfilled["pilatus"] + delivery.live["pilatus"] == n_frames
    assert consumer.late_runs.caught_up == 1 and consumer.errors == 0


def test_without_the_recorders_folder_a_late_run_is_left_alone_and_said_so(RE, tmp_path, caplog):
    consumer, _, _ = _late_consumer(RE, tmp_path, after_events=3, finishes=False)
    assert consumer.late_runs.caught_up == 0 and consumer.errors == 0
    assert "began before this analysis; set live.run_dir" in caplog.text
