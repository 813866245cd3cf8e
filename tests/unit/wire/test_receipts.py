"""Receipts upstream on real sockets, and publishers that keep their queue until it has left."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zmq

from streaming.errors import MessageDecodeError
from streaming.wire.receipts import RECEIPT_TOPIC, Receipt, decode_receipt, encode_receipt, receiver_name
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK, wait_until


def test_a_receipt_survives_its_encoding():
    receipt = Receipt("consumer host pid 1 #0", "run", "uid-1", documents=None, frames={"pilatus": 3072, "i0": 0})
    assert decode_receipt(encode_receipt(receipt)) == receipt
    hello = Receipt("recorder h pid 2 #3", "hello", subscriptions=2, streams=("hexitec", "pco"))
    assert decode_receipt(encode_receipt(hello)) == hello


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        (b"pilatus", "does not start"),
        (RECEIPT_TOPIC + b"\xc1", "not msgpack"),
        (RECEIPT_TOPIC + b"\x93\x01\x02\x03", "must be a map"),
        (RECEIPT_TOPIC + b"\x83\xa8receiver\xa1r\xa4kind\xa3bad\xa3run\xa1u", "kind must be"),
        (RECEIPT_TOPIC + b"\x82\xa8receiver\xa1r\xa4kind\xa3run", "run must be a run uid"),
        (RECEIPT_TOPIC + b"\x84\xa8receiver\xa1r\xa4kind\xa3run\xa3run\xa1u\xa6frames\x81\xa1p\xff", "frames must"),
        (RECEIPT_TOPIC + b"\x00" * 5000, "more than"),
    ],
)
def test_a_malformed_receipt_names_its_problem(topic, problem):
    with pytest.raises(MessageDecodeError, match=problem):
        decode_receipt(topic)


def test_receivers_say_hello_and_confirm_runs_without_counting_as_subscriptions():
    with (
        DocumentPublisher(LOOPBACK) as documents,
        FramePublisher(LOOPBACK) as frames,
        DocumentSubscriber(documents.address, receiver="analysis A") as doc_a,
        FrameSubscriber(frames.address, receiver="analysis A", streams=("pilatus", "i0")) as frames_a,
        DocumentSubscriber(documents.address) as plain,  # bluesky's RemoteDispatcher confirms nothing
    ):
        documents.wait_for_subscribers(2, timeout_s=5)
        frames.wait_for_subscribers(2, timeout_s=5)
        wait_until(lambda: set(documents.receivers) == {"analysis A"}, timeout_s=5)
        wait_until(lambda: set(frames.receivers) == {"analysis A"}, timeout_s=5)
        assert (documents.n_subscriptions, frames.n_subscriptions) == (2, 2)  # hellos are not subscriptions
        assert frames.receivers["analysis A"].streams == ("i0", "pilatus")
        assert frames.receivers["analysis A"].subscriptions == 2
        assert documents.wait_for_receipts("run-1", timeout_s=0.2) == {}  # not yet confirmed: times out

        assert doc_a.confirm("run-1", documents=12)
        assert frames_a.confirm("run-1", frames={"pilatus": 100, "i0": 100})
        assert not plain.confirm("run-1", documents=12)  # no name, no receipt
        doc_receipts = documents.wait_for_receipts("run-1", timeout_s=5)
        frame_receipts = frames.wait_for_receipts("run-1", timeout_s=5)
        assert doc_receipts["analysis A"].documents == 12
        assert frame_receipts["analysis A"].frames == {"pilatus": 100, "i0": 100}
        assert (documents.n_subscriptions, frames.n_subscriptions) == (2, 2)  # a receipt is withdrawn at once
        doc_a.close()
        wait_until(lambda: not documents.receivers, timeout_s=5)  # the hello goes with its receiver


def test_a_malformed_receipt_is_counted_and_skipped():
    with DocumentPublisher(LOOPBACK) as documents, DocumentSubscriber(documents.address, receiver="good") as good:
        raw = zmq.Context.instance().socket(zmq.SUB)
        try:
            raw.connect(documents.address)
            raw.setsockopt(zmq.SUBSCRIBE, RECEIPT_TOPIC + b"\xc1 not msgpack")
            wait_until(lambda: documents.n_subscriptions == 1 and documents.bad_receipts == 1, timeout_s=5)
            good.confirm("run-2", documents=3)
            assert documents.wait_for_receipts("run-2", timeout_s=5)["good"].documents == 3
        finally:
            raw.close(linger=0)


def test_a_pull_receiver_cannot_confirm():
    with FramePublisher(LOOPBACK, pattern="push") as frames:
        with FrameSubscriber(frames.address, pattern="pull", receiver="worker") as worker:
            assert worker.receiver is None
            assert not worker.confirm("run-3", frames={"pilatus": 1})


def test_receiver_names_are_unique_in_a_process():
    assert receiver_name("consumer") != receiver_name("consumer")


_PUBLISH_AND_EXIT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from streaming.wire.transport import FramePublisher

    address_file, n_frames = sys.argv[1], int(sys.argv[2])
    with FramePublisher("tcp://127.0.0.1:0", block_when_full=True, linger_s=60) as frames:
        open(address_file, "w").write(frames.address)
        frames.wait_for_subscribers(1, timeout_s=30)
        for i in range(n_frames):
            frames.publish("pilatus", np.full((256, 256), i, "<i4"), run_uid="r")  # 256 kB, sent without a copy
    print("sent", n_frames, flush=True)
    """
)


def test_a_process_that_publishes_and_exits_delivers_its_whole_queue(tmp_path):
    """The replay's tail: a publisher process ends while its queue (high-water mark, socket
    buffers) is still full, because its receiver is slower. Everything arrives, in order,
    and the process ends cleanly (before: the tail was lost, and libzmq could abort on
    zero-copy buffers freed under it)."""
    n_frames = 1500
    address_file = tmp_path / "address"
    publisher = subprocess.Popen([sys.executable, "-c", _PUBLISH_AND_EXIT, str(address_file), str(n_frames)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_until(lambda: address_file.exists() and address_file.read_text(), timeout_s=30)
        seen = []
        with FrameSubscriber(address_file.read_text()) as frames:
            while len(seen) < n_frames and (frame := frames.recv(timeout_s=10)) is not None:
                seen.append(int(frame.data[0, 0]))
                time.sleep(0.001)  # slower than the sender: its queue is full when it sends the last
        out, err = publisher.communicate(timeout=60)
    finally:
        publisher.kill()
    assert publisher.returncode == 0, err[-2000:]
    assert out.strip() == f"sent {n_frames}"
    assert seen == list(range(n_frames))


def test_closing_a_publisher_waits_for_its_queue_to_leave():
    """In one process: frames queued when the publisher closes still reach a receiver that
    reads them only afterwards."""
    with FramePublisher(LOOPBACK, block_when_full=True, linger_s=30) as frames:
        receiver = FrameSubscriber(frames.address)
        frames.wait_for_subscribers(1, timeout_s=5)
        for i in range(60):
            frames.publish("pilatus", np.full((64, 64), i, "<i4"), run_uid="r")
    with receiver:
        seen = [int(f.data[0, 0]) for f in iter(lambda: receiver.recv(timeout_s=2), None)]
    assert seen == list(range(60))
