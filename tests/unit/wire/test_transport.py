"""ZeroMQ endpoints on real loopback sockets: handshake, patterns, gaps, filters, lifecycle."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming.errors import HandshakeTimeoutError
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK


def test_publishers_bind_to_loopback_on_a_free_port_by_request():
    with FramePublisher(LOOPBACK) as frames, DocumentPublisher(LOOPBACK) as documents:
        for endpoint in (frames, documents):
            assert endpoint.address.startswith("tcp://127.0.0.1:")
            assert int(endpoint.address.rsplit(":", 1)[1]) > 0


def test_no_message_is_lost_to_a_slow_joiner_after_the_handshake():
    with FramePublisher(LOOPBACK) as publisher, FrameSubscriber(publisher.address) as subscriber:
        publisher.wait_for_subscribers(1, timeout_s=5)
        # fewer frames than the high-water marks hold: PUB drops beyond them by design
        sent = [publisher.publish("pilatus", np.full((8, 8), i, "<i4"), run_uid="r") for i in range(80)]
        received = []
        while (frame := subscriber.recv(timeout_s=5)) is not None:
            received.append(frame)
            if len(received) == len(sent):
                break
    assert [frame.header for frame in received] == sent
    assert [int(frame.data[0, 0]) for frame in received] == list(range(80))
    counts = subscriber.sequences.counts[("r", "pilatus")]
    assert (counts.received, counts.missing, counts.late) == (80, 0, 0)


def test_handshake_times_out_with_a_clear_error():
    with FramePublisher(LOOPBACK) as publisher:
        with pytest.raises(HandshakeTimeoutError, match="0 of 1 subscribers"):
            publisher.wait_for_subscribers(1, timeout_s=0.2)


def test_handshake_counts_each_subscriber():
    with (
        DocumentPublisher(LOOPBACK) as publisher,
        DocumentSubscriber(publisher.address) as first,
        DocumentSubscriber(publisher.address) as second,
    ):
        publisher.wait_for_subscribers(2, timeout_s=5)
        publisher("start", {"uid": "u", "time": 1.0})
        assert first.recv(5) == ("start", {"uid": "u", "time": 1.0})
        assert second.recv(5) == ("start", {"uid": "u", "time": 1.0})


def test_gaps_made_at_the_sender_are_counted_exactly():
    with FramePublisher(LOOPBACK) as publisher, FrameSubscriber(publisher.address) as subscriber:
        publisher.wait_for_subscribers(1, timeout_s=5)
        frame = np.zeros(4, "<u2")
        publisher.skip("hexitec", run_uid="r", n=2)  # lost before the first frame
        for i in range(30):
            if i in (5, 6, 7, 20):
                publisher.skip("hexitec", run_uid="r")
            else:
                publisher.publish("hexitec", frame, run_uid="r")
        seqs = [subscriber.recv(5).header.seq for _ in range(26)]
    assert seqs == [i + 2 for i in range(30) if i not in (5, 6, 7, 20)]
    counts = subscriber.sequences.counts[("r", "hexitec")]
    assert (counts.received, counts.missing) == (26, 6)


def test_a_subscriber_that_falls_behind_loses_frames_and_counts_them_exactly():
    with (
        FramePublisher(LOOPBACK, hwm=4) as publisher,
        FrameSubscriber(publisher.address, hwm=4) as subscriber,
    ):
        publisher.wait_for_subscribers(1, timeout_s=5)
        for i in range(300):  # nobody reads meanwhile: PUB drops at the high-water mark
            publisher.publish("pilatus", np.full(20_000, i, "<i4"), run_uid="r")
        seqs = []
        while (frame := subscriber.recv(timeout_s=0.5)) is not None:
            seqs.append(frame.header.seq)
            assert int(frame.data[0]) == frame.header.seq
    counts = subscriber.sequences.counts[("r", "pilatus")]
    assert 0 < len(seqs) < 300 and seqs == sorted(seqs)
    assert counts.received == len(seqs)
    assert counts.missing == seqs[-1] + 1 - len(seqs)


def test_block_when_full_makes_a_fast_sender_wait_for_a_slow_subscriber():
    with (
        FramePublisher(LOOPBACK, hwm=4, block_when_full=True) as publisher,
        FrameSubscriber(publisher.address, hwm=4) as subscriber,
    ):
        publisher.wait_for_subscribers(1, timeout_s=5)
        sender = threading.Thread(
            target=lambda: [publisher.publish("pilatus", np.full(20_000, i, "<i4"), run_uid="r") for i in range(300)]
        )
        sender.start()
        seqs = []
        while len(seqs) < 300 and (frame := subscriber.recv(timeout_s=10)) is not None:
            seqs.append(frame.header.seq)
        sender.join(10)
    assert seqs == list(range(300))
    assert subscriber.sequences.counts[("r", "pilatus")].missing == 0


def test_push_pull_balances_over_workers_and_loses_nothing():
    with (
        FramePublisher(LOOPBACK, pattern="push") as publisher,
        FrameSubscriber(publisher.address, pattern="pull") as worker_a,
        FrameSubscriber(publisher.address, pattern="pull") as worker_b,
    ):
        publisher.wait_for_subscribers(2, timeout_s=5)
        for i in range(100):
            publisher.publish("pilatus", np.array([i], "<i8"), run_uid="r")
        got: dict[str, list[int]] = {"a": [], "b": []}
        while len(got["a"]) + len(got["b"]) < 100:
            for name, worker in (("a", worker_a), ("b", worker_b)):
                frame = worker.recv(timeout_s=0.05)
                if frame is not None:
                    got[name].append(frame.header.seq)
    assert sorted(got["a"] + got["b"]) == list(range(100))
    assert got["a"] and got["b"], "both workers must get a share"
    assert worker_a.sequences is None  # a worker sees a share: gap counting would lie


def test_stream_filter_is_exact_not_a_prefix_match():
    with (
        FramePublisher(LOOPBACK) as publisher,
        FrameSubscriber(publisher.address, streams=["hexitec"]) as subscriber,
    ):
        publisher.wait_for_subscribers(1, timeout_s=5)
        for stream in ("pilatus", "hexitec2", "hexitec"):
            publisher.publish(stream, np.zeros(2, "<u2"), run_uid="r")
        frame = subscriber.recv(5)
        assert frame.header.stream == "hexitec"
        assert subscriber.recv(0.2) is None


def test_high_water_marks_are_explicit():
    with (
        FramePublisher(LOOPBACK, hwm=7) as publisher,
        FrameSubscriber(publisher.address, hwm=9) as subscriber,
    ):
        assert publisher.socket.getsockopt(zmq.SNDHWM) == 7
        assert subscriber.socket.getsockopt(zmq.RCVHWM) == 9


def test_use_after_close_raises():
    publisher = FramePublisher(LOOPBACK)
    publisher.close()
    with pytest.raises(RuntimeError, match="closed"):
        publisher.publish("pilatus", np.zeros(1, "<u2"), run_uid="r")
    documents = DocumentPublisher(LOOPBACK)
    documents.close()
    with pytest.raises(RuntimeError, match="closed"):
        documents("start", {"uid": "u"})


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(ValueError, match="pattern"):
        FramePublisher(LOOPBACK, pattern="bcast")
    with pytest.raises(ValueError, match="prefix"):
        DocumentPublisher(LOOPBACK, prefix=b"has space")
    with pytest.raises(ValueError, match="hwm"):
        FramePublisher(LOOPBACK, hwm=-1)


# --- malformed messages at a live subscriber ----------------------------------------------

_GOOD = np.arange(6, dtype="<u2").reshape(2, 3)


def _good_parts(seq: int) -> list[bytes]:
    header = {
        "version": 1,
        "run_uid": "r",
        "stream": "pilatus",
        "seq": seq,
        "timestamp": 1.0,
        "dtype": "<u2",
        "shape": [2, 3],
        "positions": {},
        "indices": {},
    }
    return [b"pilatus", msgpack.packb(header), _GOOD.tobytes()]


def _malformed() -> st.SearchStrategy[tuple[list[bytes], str]]:
    """A malformed message and the field it must be rejected on."""

    def mutate(field_value: tuple[str, object]) -> tuple[list[bytes], str]:
        field, value = field_value
        topic, header, buffer = _good_parts(0)
        raw = msgpack.unpackb(header)
        raw[field] = value
        return [topic, msgpack.packb(raw), buffer], field

    header_mutations = st.one_of(
        st.tuples(st.just("version"), st.integers(2, 1000)),
        st.tuples(st.just("seq"), st.one_of(st.integers(-(2**63), -1), st.text(max_size=3))),
        st.tuples(st.just("dtype"), st.sampled_from([">u2", "|O", "<c16", "<U4", "float32"])),
        st.tuples(st.just("shape"), st.lists(st.integers(0, 50), max_size=3).filter(lambda s: np.prod(s) != 6)),
        st.tuples(st.just("timestamp"), st.one_of(st.text(max_size=3), st.none())),
        st.tuples(st.just("indices"), st.dictionaries(st.text(max_size=3), st.floats(), min_size=1)),
    ).map(mutate)
    wrong_parts = (
        st.lists(st.binary(max_size=16), min_size=1, max_size=6)
        .filter(lambda p: len(p) != 3)
        .map(lambda p: (p, "parts"))
    )
    garbage_header = (
        st.binary(min_size=1, max_size=1)
        .filter(lambda b: b[0] in (0xC1,))
        .map(lambda b: ([b"pilatus", b, _GOOD.tobytes()], "header"))
    )
    short_buffer = st.integers(0, 11).map(lambda n: ([*_good_parts(0)[:2], b"\x00" * n], "shape"))
    return st.one_of(header_mutations, wrong_parts, garbage_header, short_buffer)


@pytest.fixture(scope="module")
def raw_pair():
    """A publisher socket and a subscriber, connected once for all examples."""
    with FramePublisher(LOOPBACK) as publisher, FrameSubscriber(publisher.address) as subscriber:
        publisher.wait_for_subscribers(1, timeout_s=5)
        yield publisher, subscriber


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=_malformed())
def test_malformed_messages_are_rejected_counted_and_the_next_good_one_arrives(raw_pair, bad):
    publisher, subscriber = raw_pair
    parts, field = bad
    before = subscriber.rejections.by_field[field]
    seq = subscriber.n_received
    publisher.socket.send_multipart(parts)
    publisher.socket.send_multipart(_good_parts(seq))
    frame = subscriber.recv(timeout_s=5)
    assert frame is not None and frame.header.seq == seq
    np.testing.assert_array_equal(frame.data, _GOOD)
    assert subscriber.rejections.by_field[field] == before + 1
    assert subscriber.rejections.last_error.startswith(f"{field}: ")


_UNCLOSED_PUBLISHER = """
import sys, numpy as np
from streaming.wire.transport import FramePublisher
frames = FramePublisher("tcp://127.0.0.1:0", block_when_full=True)
print(frames.address, flush=True)
frames.wait_for_subscribers(1, 30)
for i in range(40):  # zero-copy sends of arrays nobody else holds
    frames.publish("pilatus", np.full((512, 512), i, np.int32), run_uid="script", indices={"i": i})
# the end of the script: the publisher is never closed
"""


def test_a_script_that_never_closes_its_publisher_exits_cleanly_and_its_frames_arrive():
    """An unclosed publisher is closed at interpreter exit, its queued zero-copy frames sent
    before teardown frees their arrays (libzmq aborted with "Bad address" before)."""
    import subprocess
    import sys
    from pathlib import Path

    script = subprocess.Popen([sys.executable, "-c", _UNCLOSED_PUBLISHER], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3])  # fmt: skip
    address = script.stdout.readline().strip()
    with FrameSubscriber(address) as receiver:
        received = []
        while len(received) < 40 and (frame := receiver.recv(timeout_s=20)) is not None:
            received.append(int(frame.data[0, 0]))
    _, stderr = script.communicate(timeout=60)
    assert script.returncode == 0, stderr[-2000:]
    assert received == list(range(40))
