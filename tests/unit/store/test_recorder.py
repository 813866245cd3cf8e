"""The recorder through real sockets and real HDF5 files: round trip, gaps, bad input, the
awkward orders messages can arrive in, and the HDF5 layout of DESIGN.md."""

from __future__ import annotations

import h5py
import hdf5plugin
import msgpack
import numpy as np
import pytest
from event_model import compose_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulators.synthetic import SyntheticRun
from streaming.app.demo import publish_synthetic_run
from streaming.errors import ConfigError
from streaming.store.recorder import RecorderConfig, RecorderThread, run_file_name
from streaming.store.replay import ReplayConfig, replay
from streaming.store.runreader import RunFileReader
from streaming.wire.transport import DocumentPublisher, FramePublisher
from tests.conftest import LOOPBACK, record_synthetic_run, recorder_config, wait_until, wait_until_closed


def message_order(path):
    """(kind, name or stream, seq) of every message in arrival order."""
    with RunFileReader(path) as reader:
        return [
            ("doc", m.document[0], None) if m.document else ("frame", m.frame[0].stream, m.frame[0].seq)
            for m in reader.messages()
        ]


def test_record_replay_record_round_trip_is_bit_identical(recorded_file, tmp_path, small_run):
    with (
        DocumentPublisher(LOOPBACK, block_when_full=True) as documents,
        FramePublisher(LOOPBACK, block_when_full=True) as frames,
        RunFileReader(recorded_file) as reader,
    ):
        thread = RecorderThread(recorder_config(tmp_path, documents, frames))
        try:
            documents.wait_for_subscribers(1, 10)
            frames.wait_for_subscribers(1, 10)
            stats = replay(reader, documents, frames, ReplayConfig(speed=None))
            wait_until_closed(thread.recorder)
        finally:
            recorder = thread.stop()
    (again,) = recorder.files.values()
    assert stats.frames_sent == small_run.n_frames
    with RunFileReader(recorded_file) as first, RunFileReader(again) as second:
        assert [d[:2] for d in first.documents()] == [d[:2] for d in second.documents()]
        pairs = list(zip(first.frames("pilatus"), second.frames("pilatus"), strict=True))
        assert len(pairs) == small_run.n_frames
        for (header_a, data_a, *_), (header_b, data_b, *_) in pairs:
            assert header_a == header_b
            assert data_a.dtype == data_b.dtype and data_a.tobytes() == data_b.tobytes()
    # order is kept within each channel; two sockets give no order between them
    for path in (recorded_file, again):
        order = message_order(path)
        with RunFileReader(path) as reader:
            assert [name for kind, name, _ in order if kind == "doc"] == [d[0] for d in reader.documents()]
        assert [seq for kind, _, seq in order if kind == "frame"] == list(range(small_run.n_frames))


def test_file_follows_the_design_layout(recorded_file, small_run):
    with h5py.File(recorded_file, "r") as file:  # closed cleanly: plain read mode works
        entry = file["entry"]
        assert entry.attrs["NX_class"] == "NXentry"
        assert bool(entry.attrs["complete"]) and entry.attrs["exit_status"] == "success"
        assert entry.attrs["plan_name"] == "synthetic_zigzag"
        detector = entry["instrument/pilatus"]
        assert detector.attrs["NX_class"] == "NXdetector"
        data = detector["data"]
        assert data.shape == (small_run.n_frames, *small_run.frame_shape)
        assert data.chunks == (1, *small_run.frame_shape)
        plist = data.id.get_create_plist()
        assert plist.get_nfilters() == 1 and plist.get_filter(0)[0] == hdf5plugin.BSHUF_ID
        for name in ("sequence", "timestamp", "recv_time", "arrival"):
            assert detector[name].shape == (small_run.n_frames,)
        assert sorted(detector["positions"]) == ["rotation", "translation"]
        assert sorted(detector["indices"]) == ["angle", "translation"]
        assert int(entry["diagnostics/pilatus/received"][()]) == small_run.n_frames
        assert int(entry["diagnostics/pilatus/missing"][()]) == 0
    with RunFileReader(recorded_file) as reader:
        names = [name for name, *_ in reader.documents()]
        assert names == ["start", "descriptor"] + ["event"] * small_run.n_frames + ["stop"]
        # frames are placed by their indices: the zigzag reverses odd lines
        translation = [h.indices["translation"] for h, *_ in reader.frames("pilatus")]
        assert translation[: small_run.n_translations] == list(range(small_run.n_translations))
        assert translation[small_run.n_translations : 2 * small_run.n_translations] == list(
            reversed(range(small_run.n_translations))
        )


@pytest.fixture
def recording(tmp_path, publishers):
    """Publishers and a recorder thread (writing to ``tmp_path``), handshake done."""
    documents, frames = publishers
    thread = RecorderThread(recorder_config(tmp_path, documents, frames))
    try:
        documents.wait_for_subscribers(1, 10)
        frames.wait_for_subscribers(1, 10)
        yield documents, frames, thread.recorder
    finally:
        thread.stop()


def test_frames_skipped_at_the_sender_are_reported_with_exact_counts(recording):
    documents, frames, recorder = recording
    skipped = {0, 4, 5, 11, 12, 13, 28}  # a loss after the last frame received is invisible
    bundle = compose_run()
    uid = bundle.start_doc["uid"]
    documents("start", bundle.start_doc)
    for i in range(30):
        if i in skipped:
            frames.skip("hexitec", run_uid=uid)
        else:
            frames.publish("hexitec", np.full((80, 80), i, "<u2"), run_uid=uid)
    documents("stop", bundle.compose_stop())
    wait_until_closed(recorder)
    kept = [i for i in range(30) if i not in skipped]
    with RunFileReader(recorder.files[uid]) as reader:
        assert [s.missing for s in reader.summary().streams] == [len(skipped)]
        assert [(h.seq, int(d[0, 0])) for h, d, *_ in reader.frames("hexitec")] == list(zip(kept, kept, strict=True))


def test_frames_before_their_start_document_are_kept_and_the_start_leads(recording):
    documents, frames, recorder = recording
    bundle = compose_run()
    uid = bundle.start_doc["uid"]
    for i in range(5):
        frames.publish("pco", np.full((16, 16), i, "<u2"), run_uid=uid)
    wait_until(lambda: recorder.frames.n_received == 5)
    documents("start", bundle.start_doc)
    frames.publish("pco", np.full((16, 16), 5, "<u2"), run_uid=uid)
    documents("stop", bundle.compose_stop())
    wait_until_closed(recorder)
    order = message_order(recorder.files[uid])
    assert order[0] == ("doc", "start", None)
    assert [seq for kind, _, seq in order if kind == "frame"] == list(range(6))
    # the two channels are independent: only the stop's presence is promised, not its place
    assert ("doc", "stop", None) in order


def test_frames_whose_start_never_comes_get_a_file_of_their_own(tmp_path, publishers):
    documents, frames = publishers
    with RecorderThread(recorder_config(tmp_path, documents, frames, pending_timeout_s=0.2)) as thread:
        frames.wait_for_subscribers(1, 10)
        for i in range(3):
            frames.publish("pilatus", np.full((4, 4), i, "<i4"), run_uid="../../escape attempt")
        wait_until(lambda: len(thread.recorder.files) == 1)
    (path,) = thread.recorder.files.values()
    assert path.parent == tmp_path  # the uid from the wire cannot steer the path
    with RunFileReader(path) as reader:
        assert [int(d[0, 0]) for _, d, *_ in reader.frames("pilatus")] == [0, 1, 2]
        assert not reader.summary().complete


def test_a_frame_after_the_file_closed_reopens_it(recording):
    documents, frames, recorder = recording
    bundle = compose_run()
    uid = bundle.start_doc["uid"]
    documents("start", bundle.start_doc)
    frames.publish("pilatus", np.zeros((4, 4), "<i4"), run_uid=uid)
    documents("stop", bundle.compose_stop())
    wait_until_closed(recorder)
    frames.publish("pilatus", np.ones((4, 4), "<i4"), run_uid=uid)
    wait_until(lambda: recorder.frames.n_received == 2 and recorder.idle)
    with RunFileReader(recorder.files[uid]) as reader:
        assert [int(d.sum()) for _, d, *_ in reader.frames("pilatus")] == [0, 16]
        assert reader.summary().complete


def test_changing_shape_or_adding_positions_mid_run_loses_nothing(recording):
    documents, frames, recorder = recording
    bundle = compose_run()
    uid = bundle.start_doc["uid"]
    documents("start", bundle.start_doc)
    frames.publish("pco", np.zeros((4, 4), "<u2"), run_uid=uid, positions={"rotation": 0.0})
    frames.publish("pco", np.zeros((4, 4), "<u2"), run_uid=uid, positions={"rotation": 1.0, "y": 2.0})
    frames.publish("pco", np.zeros((8, 2), "<u2"), run_uid=uid, positions={"rotation": 2.0})
    documents("stop", bundle.compose_stop())
    wait_until_closed(recorder)
    with RunFileReader(recorder.files[uid]) as reader:
        assert sorted(reader.streams) == ["pco", "pco__1"]
        headers = [h for h, *_ in reader.frames("pco")]
        assert [h.positions for h in headers] == [{"rotation": 0.0}, {"rotation": 1.0, "y": 2.0}]
        ((sibling, data, *_),) = reader.frames("pco__1")
        assert sibling.stream == "pco" and data.shape == (8, 2) and sibling.seq == 2


def _good_parts(uid: str, seq: int) -> list[bytes]:
    header = {
        "version": 1,
        "run_uid": uid,
        "stream": "pilatus",
        "seq": seq,
        "timestamp": 1.0,
        "dtype": "<i4",
        "shape": [3, 3],
        "positions": {"rotation": float(seq)},
        "indices": {"angle": seq},
    }
    return [b"pilatus", msgpack.packb(header), np.full((3, 3), seq, "<i4").tobytes()]


_BAD_MESSAGES = st.sampled_from(
    [
        ([b"pilatus", b"\xc1", b""], "frame_header"),
        ([b"only-one-part"], "frame_parts"),
        ([b"pilatus", msgpack.packb({"version": 9}), b""], "frame_version"),
        ([b"pilatus", msgpack.packb({"version": 1, "run_uid": "x"}), b""], "frame_stream"),
    ]
)


@pytest.fixture(scope="module")
def live_recorder(tmp_path_factory):
    with DocumentPublisher(LOOPBACK) as documents, FramePublisher(LOOPBACK) as frames:
        thread = RecorderThread(recorder_config(tmp_path_factory.mktemp("fuzz"), documents, frames, linger_s=0.05))
        documents.wait_for_subscribers(1, 10)
        frames.wait_for_subscribers(1, 10)
        yield documents, frames, thread.recorder
        thread.stop()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.one_of(st.just(None), _BAD_MESSAGES), min_size=1, max_size=25))
def test_recorder_counts_malformed_messages_by_field_and_keeps_every_good_frame(live_recorder, plan):
    """``plan``: a sequence of good frames (``None``) and malformed messages, in any order."""
    documents, frames, recorder = live_recorder
    bundle = compose_run()
    uid = bundle.start_doc["uid"]
    documents("start", bundle.start_doc)
    wait_until(lambda: uid in recorder.files)
    rejected_before, received_before = recorder.frames.rejections.total, recorder.frames.n_received
    expected_invalid: dict[str, int] = {}
    expected_invalid_pilatus = 0
    seq = 0
    for item in plan:
        if item is None:
            frames.socket.send_multipart(_good_parts(uid, seq))
            seq += 1
        else:
            parts, field = item
            frames.socket.send_multipart(parts)
            expected_invalid[field] = expected_invalid.get(field, 0) + 1
            expected_invalid_pilatus += parts[0] == b"pilatus" and len(parts) == 3
    # the stop travels on the other socket: it goes once every frame message has been taken,
    # or the run could close (after its 0.05 s linger) before the last ones are counted
    n_invalid = sum(expected_invalid.values())
    wait_until(lambda: recorder.frames.rejections.total - rejected_before == n_invalid
               and recorder.frames.n_received - received_before == seq)  # fmt: skip
    documents("stop", bundle.compose_stop())
    wait_until(lambda: uid in recorder.closed_runs)
    with RunFileReader(recorder.files[uid]) as reader:
        stored = [(h.seq, h.indices, int(d[0, 0])) for h, d, *_ in reader.frames("pilatus")] if seq else []
        assert stored == [(i, {"angle": i}, i) for i in range(seq)]
        summary = reader.summary()
        assert summary.invalid_messages == expected_invalid
        assert [s.invalid for s in summary.streams] == ([expected_invalid_pilatus] if seq else [])


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"recorder\.compression: must be one of"):
        RecorderConfig(out_dir=tmp_path, compression="gzip")
    with pytest.raises(ConfigError, match=r"recorder\.flush_interval_s: must be a number > 0"):
        RecorderConfig(out_dir=tmp_path, flush_interval_s=0)
    with pytest.raises(ConfigError, match=r"recorder\.frame_hwm: must be an int > 0"):
        RecorderConfig(out_dir=tmp_path, frame_hwm=1.5)


def test_file_names_carry_time_scan_and_uid_and_nothing_from_the_wire_can_escape():
    name = run_file_name("0123abcd-ffff", {"time": 0.0, "scan_id": 42})
    assert name.endswith("_scan00042_0123abcd.h5")
    assert "/" not in run_file_name("../../etc/passwd", None)


def test_a_small_run_records_in_one_file_per_run(tmp_path):
    first = record_synthetic_run(tmp_path, SyntheticRun(n_angles=1, n_translations=2, frame_shape=(8, 8), seed=1))
    second = record_synthetic_run(tmp_path, SyntheticRun(n_angles=1, n_translations=2, frame_shape=(8, 8), seed=2))
    assert first != second and first.exists() and second.exists()


def test_replaying_a_run_into_the_recorder_that_holds_it_makes_a_new_file(recording):
    documents, frames, recorder = recording
    run = SyntheticRun(n_angles=2, n_translations=5, frame_shape=(16, 16), seed=3)
    publish_synthetic_run(run, documents, frames)
    wait_until_closed(recorder)
    (original,) = recorder.files.values()
    with RunFileReader(original) as reader:
        replay(reader, documents, frames, ReplayConfig(speed=None))
    wait_until(lambda: len(recorder.closed_runs) == 1 and recorder.idle and recorder.files[reader.run_uid] != original)
    again = recorder.files[reader.run_uid]
    with RunFileReader(original) as first, RunFileReader(again) as second:
        assert first.n_frames("pilatus") == second.n_frames("pilatus") == run.n_frames
        (stream,) = second.summary().streams
        assert (stream.missing, stream.late) == (0, 0)
        assert [d[:2] for d in first.documents()] == [d[:2] for d in second.documents()]


def test_a_batch_is_recorded_frame_by_frame_and_replayed_as_the_batch_it_was(recording):
    """Batches (a fast detector's frames, a thousand to a message) become a row per frame, with
    each frame's sequence number, time stamp and counter; a lost batch counts as all its
    frames; a replay sends each batch as it came."""
    documents, frames, recorder = recording
    bundle = compose_run()
    uid = bundle.start_doc["uid"]
    documents("start", bundle.start_doc)
    sent = []
    for b in range(4):
        data = np.full((5, 8, 8), b, "<u2")
        times = [100.0 + b + i / 10 for i in range(5)]
        if b == 2:  # lost on the way: five frames
            frames.skip("hexitec", run_uid=uid, n=5)
            continue
        sent.append(frames.publish("hexitec", data, run_uid=uid, indices={"position": b, "frame": 0},
                                   timestamps=times, counter="frame"))  # fmt: skip
    documents("stop", bundle.compose_stop())
    wait_until_closed(recorder)
    with RunFileReader(recorder.files[uid]) as reader:
        rows = [(h.seq, h.timestamp, h.indices["frame"], int(d[0, 0])) for h, d, *_ in reader.frames("hexitec")]
        (stream,) = reader.summary().streams
        replayed = [m.frame[0] for m in reader.messages() if m.frame is not None]
    assert rows == [(5 * b + i, 100.0 + b + i / 10, i, b) for b in (0, 1, 3) for i in range(5)]
    assert (stream.n_frames, stream.missing) == (15, 5)
    assert replayed == sent


def test_a_replay_counts_the_frames_of_its_batches_as_receivers_do(recording):
    """Receivers confirm frames, not messages: a replay of three batches of five says 15
    frames (before: 3, so a receiver confirming 15 looked like one that got more than sent)."""
    documents, frames, recorder = recording
    bundle = compose_run()
    uid = bundle.start_doc["uid"]
    documents("start", bundle.start_doc)
    for b in range(3):
        frames.publish("hexitec", np.full((5, 8, 8), b, "<u2"), run_uid=uid, indices={"frame": 0},
                       timestamps=[100.0 + b + i / 10 for i in range(5)], counter="frame")  # fmt: skip
    documents("stop", bundle.compose_stop())
    wait_until_closed(recorder)
    updates = []
    with (
        RunFileReader(recorder.files[uid]) as reader,
        DocumentPublisher(LOOPBACK) as again_documents,
        FramePublisher(LOOPBACK) as again_frames,
    ):
        stats = replay(reader, again_documents, again_frames, ReplayConfig(speed=None), on_frames=updates.append)
    assert (stats.frames_sent, dict(stats.frames_by_stream), updates) == (15, {"hexitec": 15}, [5, 5, 5])
