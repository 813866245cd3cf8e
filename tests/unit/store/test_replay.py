"""Replay: original order and headers, pacing by the speed factor, time windows."""

from __future__ import annotations

import numpy as np
import pytest

from streaming.errors import ConfigError
from streaming.store.replay import ReplayConfig, confirm_delivery, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK

_STRUCTURAL = {"start", "descriptor", "stop"}


class SimulatedClock:
    """A clock that advances only when slept on: pacing is checked without timing anything."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def replay_and_receive(path, config, clock=None):
    """Replay ``path`` into live subscribers; return the stats and what arrived."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
        DocumentSubscriber(documents.address) as doc_sub,
        FrameSubscriber(frames.address) as frame_sub,
        RunFileReader(path) as reader,
    ):
        documents.wait_for_subscribers(1, 10)
        frames.wait_for_subscribers(1, 10)
        kwargs = {"clock": clock, "sleep": clock.sleep} if clock else {}
        stats = replay(reader, documents, frames, config, **kwargs)
        docs = [doc_sub.recv(5) for _ in range(stats.documents_sent)]
        received = [frame_sub.recv(5) for _ in range(stats.frames_sent)]
        assert doc_sub.recv(0.1) is None and frame_sub.recv(0.1) is None
        return stats, docs, [(f.header, np.array(f.data)) for f in received]


def message_offsets(path):
    with RunFileReader(path) as reader:
        messages = list(reader.messages())
    first = messages[0].recv_time
    return [(m, m.recv_time - first) for m in messages]


def test_replay_sends_everything_with_the_original_headers(recorded_file, small_run):
    stats, docs, frames = replay_and_receive(recorded_file, ReplayConfig(speed=None))
    with RunFileReader(recorded_file) as reader:
        assert docs == [(name, doc) for name, doc, *_ in reader.documents()]
        for (header, data), (original, original_data, *_) in zip(frames, reader.frames("pilatus"), strict=True):
            assert header == original
            np.testing.assert_array_equal(data, original_data)
    assert stats.frames_sent == small_run.n_frames


@pytest.mark.parametrize("speed", [0.5, 1.0, 4.0])
def test_replay_keeps_the_original_pace_scaled_by_the_speed_factor(recorded_file, speed):
    clock = SimulatedClock()
    replay_and_receive(recorded_file, ReplayConfig(speed=speed), clock)
    paced = [
        offset for m, offset in message_offsets(recorded_file) if not (m.document and m.document[0] in _STRUCTURAL)
    ]
    assert clock.now == pytest.approx(max(paced) / speed, rel=1e-9, abs=1e-12)


def test_as_fast_as_possible_never_sleeps(recorded_file):
    clock = SimulatedClock()
    replay_and_receive(recorded_file, ReplayConfig(speed=None), clock)
    assert clock.sleeps == []


def test_a_window_sends_the_run_frame_and_only_the_frames_inside(recorded_file):
    offsets = message_offsets(recorded_file)
    frame_offsets = sorted(offset for m, offset in offsets if m.frame)
    start_s, stop_s = frame_offsets[3], frame_offsets[-4]
    _, docs, frames = replay_and_receive(recorded_file, ReplayConfig(speed=None, start_s=start_s, stop_s=stop_s))
    expected_seqs = [m.frame[0].seq for m, offset in offsets if m.frame and start_s <= offset < stop_s]
    assert [header.seq for header, _ in frames] == expected_seqs
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop" and "descriptor" in names
    assert 0 < len(expected_seqs) < len(frame_offsets)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speed": 0}, r"replay\.speed: must be > 0"),
        ({"speed": -2.0}, r"replay\.speed: must be > 0"),
        ({"start_s": -1.0}, r"replay\.start_s: must be >= 0"),
        ({"start_s": 5.0, "stop_s": 2.0}, r"replay\.stop_s: must be after start_s"),
    ],
)
def test_bad_replay_settings_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ReplayConfig(**kwargs)


def test_a_replay_reconciles_its_receivers_receipts_with_what_it_sent(recorded_file):
    """Receipts reconciled: one receiver that lacks two frames, one that takes no part in the
    run, one that never confirms, and one that cannot (not this project's)."""
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
        DocumentSubscriber(documents.address, receiver="short") as short_docs,
        FrameSubscriber(frames.address, receiver="short") as short_frames,
        DocumentSubscriber(documents.address, receiver="other technique") as other_docs,
        DocumentSubscriber(documents.address, receiver="silent") as silent_docs,
        DocumentSubscriber(documents.address),  # bluesky's RemoteDispatcher, say
        RunFileReader(recorded_file) as reader,
    ):
        documents.wait_for_subscribers(4, 10)
        frames.wait_for_subscribers(1, 10)
        stats = replay(reader, documents, frames, ReplayConfig(speed=None))
        assert stats.run_uid == reader.run_uid and sum(stats.frames_by_stream.values()) == stats.frames_sent
        (stream,) = stats.frames_by_stream
        short_docs.confirm(stats.run_uid, documents=stats.documents_sent)
        short_frames.confirm(stats.run_uid, frames={stream: stats.frames_sent - 2})
        other_docs.confirm(stats.run_uid, ignored=True)
        report = confirm_delivery(stats, documents, frames, timeout_s=1.0)
        assert silent_docs.receiver == "silent"  # connected all along, and said nothing
    by_receiver = {(r.receiver, r.channel): r for r in report.receivers}
    assert by_receiver["short", "documents"].missing == 0
    assert by_receiver["short", "frames"].confirmed == stats.frames_sent - 2
    assert by_receiver["short", "frames"].missing == 2
    assert by_receiver["other technique", "documents"].ignored
    assert by_receiver["silent", "documents"].confirmed is None
    assert report.undelivered == 2 and [r.receiver for r in report.unconfirmed] == ["silent"]
    assert report.unconfirmable == {"documents": 1, "frames": 0}
    assert not report.complete
    text = "\n".join(report.lines())
    assert f"short: {stats.frames_sent - 2} of {stats.frames_sent} frames confirmed, 2 missing" in text
    assert "1 documents subscription(s) cannot confirm" in text
