"""Faults on the channels, with a real recorder and a real consumer on real sockets: a flood
of malformed messages while a valid run streams, and a publisher restarted mid-run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import cycle
from pathlib import Path

import msgpack
import numpy as np

from simulators.synthetic import SyntheticRun
from streaming.analysis.consumer import Consumer, ConsumerThread
from streaming.app.demo import publish_synthetic_run
from streaming.store.recorder import RecorderThread
from streaming.store.runreader import RunFileReader
from streaming.wire.protocol import FrameHeader, encode_frame
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, recorder_config, wait_until, wait_until_closed
from tests.unit.analysis.test_consumer import SequenceAnalysis

N_MALFORMED = 100_000


@contextmanager
def recorded_and_consumed(tmp_path: Path, documents: DocumentPublisher,
                          frames: FramePublisher) -> Iterator[tuple[RecorderThread, ConsumerThread]]:  # fmt: skip
    recorder = RecorderThread(recorder_config(tmp_path, documents, frames))
    consumer = ConsumerThread(Consumer(SequenceAnalysis, document_address=documents.address,
                                       frame_address=frames.address, run_directory=tmp_path, linger_s=2.0))  # fmt: skip
    try:
        documents.wait_for_subscribers(2, 10)
        frames.wait_for_subscribers(2, 10)
        yield recorder, consumer
        wait_until(lambda: len(consumer.consumer.finished) == 1, timeout_s=120)
        wait_until_closed(recorder.recorder)
    finally:
        consumer.stop()
        recorder.stop()


def _malformed_frames() -> Iterator[list[bytes]]:
    """Messages on the frame channel, under a topic every receiver takes, each wrong in its own way."""
    header = FrameHeader(run_uid="r", stream="pilatus", seq=0, dtype="<u2", shape=(4, 4), timestamp=1.0)
    good = encode_frame(header, np.zeros((4, 4), "<u2"))
    topic, packed = bytes(good[0]), bytes(good[1])
    wrong_shape = msgpack.unpackb(packed)
    wrong_shape["shape"] = [5, 5]
    return cycle([
        [topic],  # parts missing
        [topic, b"\xc1 not msgpack", b"\0" * 32],  # header undecodable
        [topic, packed, b"\0" * 7],  # buffer of the wrong size
        [topic, msgpack.packb(wrong_shape), b"\0" * 32],  # header and buffer disagree
        [topic, msgpack.packb({"proto": 99}), b""],  # a protocol from elsewhere
    ])  # fmt: skip


def test_a_flood_of_malformed_messages_costs_the_valid_run_nothing(tmp_path):
    run = SyntheticRun(n_angles=8, n_translations=25, frame_shape=(64, 64), seed=3)
    n_frames = run.n_angles * run.n_translations
    per_frame = N_MALFORMED // n_frames
    flood = _malformed_frames()
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
    ):
        with recorded_and_consumed(tmp_path, documents, frames) as (recorder, consumer):

            def flood_between_frames(n_sent: int) -> None:
                for _ in range(per_frame):
                    frames.socket.send_multipart(next(flood))
                for _ in range(3):
                    documents.socket.send(b"not a document")
                if n_sent == n_frames:  # the stop goes once the last frame is in (see _wait_for_frames)
                    _wait_for_frames(n_frames, recorder, consumer)

            publish_synthetic_run(run, documents, frames, after_frame=flood_between_frames)
    recorder, analysis = recorder.recorder, consumer.consumer.finished[0]
    assert recorder.frames.rejections.total == consumer.consumer.frames.rejections.total == per_frame * n_frames
    assert recorder.documents.rejections.total == 3 * n_frames
    assert len(recorder.frames.rejections.by_field) >= 4  # each named by the field at fault
    assert analysis.sequence == list(range(n_frames))  # every valid frame, once, in order
    assert analysis.delivery.live["pilatus"] == n_frames and not analysis.delivery.backfilled
    (path,) = recorder.files.values()
    with RunFileReader(path) as reader:
        (pilatus,) = reader.summary().streams
        assert pilatus.n_frames == n_frames and pilatus.missing == 0 and reader.summary().complete


def test_a_frame_publisher_restarted_mid_run_loses_nothing_once_its_receivers_are_back(tmp_path):
    """The detector's publisher goes away mid-run and comes back on the same address (a
    restarted streaming service), resuming its numbering and waiting for its receivers: they
    reconnect by themselves, and the run is recorded and analysed whole."""
    run = SyntheticRun(n_angles=6, n_translations=20, frame_shape=(32, 32), seed=4)
    messages = list(run.messages())
    halfway = len(messages) // 2
    with DocumentPublisher(LOOPBACK, block_when_full=True) as documents:
        first = FramePublisher(LOOPBACK, block_when_full=True)
        address = first.address
        with recorded_and_consumed(tmp_path, documents, first) as (recorder, consumer):
            sent = _send(messages[:halfway], documents, first)
            first.close()  # its queue leaves before it returns (streaming.wire.endpoint)
            wait_until(lambda: recorder.recorder.receiver.stats.frames_taken >= sent)
            with FramePublisher(address, block_when_full=True) as second:
                second.skip("pilatus", run_uid=messages[0].doc["uid"], n=sent)  # the numbering goes on
                second.wait_for_subscribers(2, timeout_s=30)  # the recorder and the consumer, reconnected
                _send(messages[halfway:-1], documents, second)
                _wait_for_frames(run.n_angles * run.n_translations, recorder, consumer)
                _send(messages[-1:], documents, second)  # the stop
    analysis = consumer.consumer.finished[0]
    n_frames = run.n_angles * run.n_translations
    assert analysis.sequence == list(range(n_frames))
    assert not analysis.delivery.backfilled and not analysis.delivery.unrecovered
    (path,) = recorder.recorder.files.values()
    with RunFileReader(path) as reader:
        (pilatus,) = reader.summary().streams
    assert pilatus.n_frames == n_frames and pilatus.missing == 0


def _wait_for_frames(n_frames: int, recorder: RecorderThread, consumer: ConsumerThread) -> None:
    """Until both have taken ``n_frames`` from their sockets. A synthetic run announces no frames
    (no StreamDatum documents, as a RunEngine's detectors send): without this wait its stop,
    on the other socket, could overtake its last frames and end the run before them."""
    wait_until(lambda: recorder.recorder.receiver.stats.frames_in >= n_frames
               and consumer.consumer.receiver.stats.frames_in >= n_frames, timeout_s=120)  # fmt: skip


def _send(messages: list, documents: DocumentPublisher, frames: FramePublisher) -> int:
    n_frames = 0
    for message in messages:
        if hasattr(message, "doc"):
            documents(message.name, message.doc)
        else:
            frames.publish(message.stream, message.data, run_uid=message.run_uid, positions=message.positions,
                           indices=message.indices, timestamp=message.timestamp)  # fmt: skip
            n_frames += 1
    return n_frames
