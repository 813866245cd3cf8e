"""The frame distributor of the scaled-out XRD-CT integration, through real sockets."""

from __future__ import annotations

import threading
import time

import numpy as np

from streaming.analysis.distribute import FrameDistributor
from streaming.wire.transport import FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK, wait_until


def test_frames_go_round_robin_to_the_workers_and_other_streams_stay_behind():
    with FramePublisher(LOOPBACK, block_when_full=True) as frames:
        with FrameDistributor(frames.address, LOOPBACK, streams=("pilatus",)) as distributor:
            workers = [FrameSubscriber(distributor.address, pattern="pull") for _ in range(2)]
            try:
                frames.wait_for_subscribers(1, 10)
                distributor.wait_for_workers(2, 10)
                for i in range(20):
                    frames.publish("pilatus", np.full(3, i, np.int32), run_uid="run", indices={"translation": i})
                    frames.publish("hexitec", np.zeros(2, np.uint16), run_uid="run")
                received = [[], []]
                deadline = time.monotonic() + 10
                while sum(map(len, received)) < 20 and time.monotonic() < deadline:
                    distributor.poll(0.01)
                    for worker, got in zip(workers, received, strict=True):
                        frame = worker.recv(timeout_s=0)
                        while frame is not None:
                            got.append(int(frame.data[0]))
                            frame = worker.recv(timeout_s=0)
            finally:
                for worker in workers:
                    worker.close()
    assert sorted(received[0] + received[1]) == list(range(20))
    assert received[0] and received[1]  # both took a share
    assert distributor.n_forwarded == 20


def test_a_distributor_without_workers_stops_when_asked():
    """With no worker to take it, a frame waits in the distributor; stopping does not hang
    on it (it is counted as dropped at stop)."""
    with FramePublisher(LOOPBACK, block_when_full=True) as frames:
        distributor = FrameDistributor(frames.address, LOOPBACK, streams=("pilatus",))
        stop = threading.Event()
        thread = threading.Thread(target=distributor.run, args=(stop,))
        try:
            frames.wait_for_subscribers(1, 10)
            thread.start()
            frames.publish("pilatus", np.zeros(3, np.int32), run_uid="run")
            time.sleep(0.3)
            stop.set()
            wait_until(lambda: not thread.is_alive(), timeout_s=5)
        finally:
            stop.set()
            thread.join(5)
            distributor.close()
    assert distributor.n_dropped_at_stop == 1 and distributor.n_forwarded == 0
