"""CURVE on real sockets: authorised clients receive and send; an unauthorised key, a wrong
server key or no CURVE at all gets nothing through, and the refusals are counted; binding
beyond loopback without keys is refused with one line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from streaming.errors import ConfigError
from streaming.wire.products import Product, ProductPublisher, ProductSubscriber
from streaming.wire.security import Security, current_security, is_local_address, make_keys, use_security
from streaming.wire.transport import DocumentPublisher, DocumentSubscriber, FramePublisher, FrameSubscriber
from tests.conftest import LOOPBACK, wait_until


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A key folder: the servers' pair, 'client' authorised, 'intruder' made but not authorised."""
    folder = tmp_path / "keys"
    make_keys(folder, ("client", "intruder"))
    (folder / "authorized" / "intruder.key").unlink()
    return folder


@contextmanager
def secured(security: Security) -> Iterator[None]:
    """Sockets opened inside use ``security`` (the setting is process-wide)."""
    before = current_security()
    use_security(security)
    try:
        yield
    finally:
        use_security(before)


@pytest.fixture(autouse=True)
def _plain_afterwards() -> Iterator[None]:
    yield
    use_security(Security())


def _frames_received(subscriber: FrameSubscriber, timeout_s: float, n: int | None = None) -> list:
    """What arrives within ``timeout_s`` (or as soon as ``n`` frames have)."""
    received, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline and (n is None or len(received) < n):
        frame = subscriber.recv(0.05)
        if frame is not None:
            received.append(frame)
    return received


def test_an_authorised_client_receives_and_an_unauthorised_one_gets_nothing(keys):
    with secured(Security(keys=keys)):
        publisher = FramePublisher(LOOPBACK)
        friend = FrameSubscriber(publisher.address)
    with secured(Security(keys=keys, client="intruder")):
        intruder = FrameSubscriber(publisher.address)
    with secured(Security()):  # no CURVE at all
        plain = FrameSubscriber(publisher.address)
    with publisher, friend, intruder, plain:
        publisher.wait_for_subscribers(1, timeout_s=10)
        wait_until(lambda: publisher.refused_handshakes >= 1)
        sent = [publisher.publish("pilatus", np.full((16, 16), i, "<u4"), run_uid="r") for i in range(20)]
        got = _frames_received(friend, 30.0, n=len(sent))
        assert [frame.header for frame in got] == sent
        assert np.array_equal(got[7].data, np.full((16, 16), 7, "<u4"))
        assert _frames_received(intruder, 0.5) == [] and _frames_received(plain, 0.2) == []
        assert publisher.n_subscriptions == 1  # neither outsider's subscription was accepted
        assert publisher.refused_handshakes >= 1  # the unauthorised key (no CURVE: no handshake to refuse)


def _handshake_fails(socket: zmq.Socket, timeout_s: float = 20.0) -> bool:
    """Whether the socket's (repeated) handshakes fail within ``timeout_s``, by its monitor."""
    failed = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
              zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_DISCONNECTED}  # fmt: skip
    monitor = socket.get_monitor_socket()
    deadline = time.monotonic() + timeout_s
    try:
        while monitor.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            if recv_monitor_message(monitor)["event"] in failed:
                return True
        return False
    finally:
        socket.disable_monitor()
        monitor.close()


def test_a_client_with_the_wrong_server_key_receives_nothing(keys, tmp_path):
    impostor = tmp_path / "impostor"  # a folder of its own: another server key, the same client pair
    make_keys(impostor, ())
    for name in ("client.key", "client.key_secret"):
        (impostor / name).write_bytes((keys / name).read_bytes())
    with secured(Security(keys=keys)):
        publisher = DocumentPublisher(LOOPBACK)
    with secured(Security(keys=impostor)):
        fooled = DocumentSubscriber(publisher.address)
    with publisher, fooled:
        assert _handshake_fails(fooled.socket)
        assert publisher.n_subscriptions == 0
        publisher("start", {"uid": "u", "time": 1.0})
        assert fooled.recv(0.5) is None


def test_a_bound_receiver_accepts_frames_only_from_authorised_senders(keys):
    """The builder's pattern port (a bound PULL) and the workers that push to it."""
    with secured(Security(keys=keys)):
        builder = FrameSubscriber(LOOPBACK, pattern="pull", bind=True)
        worker = FramePublisher(builder.address, pattern="push", bind=False)
    with secured(Security(keys=keys, client="intruder")):
        forger = FramePublisher(builder.address, pattern="push", bind=False, linger_s=0)
    with builder, worker, forger:
        for _ in range(5):
            forger.publish("pilatus.integrated", np.full(8, -1.0, "<f4"), run_uid="r")
        wait_until(lambda: builder.refused_handshakes >= 1)
        sent = [worker.publish("pilatus.integrated", np.full(8, i, "<f4"), run_uid="r") for i in range(5)]
        got = _frames_received(builder, 30.0, n=len(sent))
        assert _frames_received(builder, 0.3) == []  # and nothing of the forger's after them
    assert [frame.header for frame in got] == sent
    assert all(frame.data[0] >= 0 for frame in got)


def test_products_cross_only_to_authorised_receivers(keys):
    with secured(Security(keys=keys)):
        publisher = ProductPublisher(LOOPBACK)
        dashboard = ProductSubscriber(publisher.address)
    with secured(Security(keys=keys, client="intruder")):
        snoop = ProductSubscriber(publisher.address)
    with publisher, dashboard, snoop:
        wait_until(lambda: publisher.n_receivers == 1 and publisher.refused_handshakes >= 1)
        publisher.publish(Product("xrdct.series", {"n": 3}, {"x": np.arange(3.0)}, run_uid="r"))
        product = dashboard.recv(5.0)
        assert product is not None and product.values == {"n": 3}
        assert snoop.recv(0.3) is None


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:0", "tcp://*:0"])
def test_binding_beyond_loopback_without_curve_is_refused_in_one_line(address, keys):
    with pytest.raises(ConfigError, match="beyond loopback without CURVE is refused") as refused:
        FramePublisher(address)
    assert "\n" not in str(refused.value) and address in str(refused.value)
    with secured(Security(insecure=True)), FramePublisher(address) as publisher:  # said so
        assert publisher.address.startswith("tcp://0.0.0.0:")
    with secured(Security(keys=keys)), FramePublisher(address) as publisher:
        assert publisher.address.startswith("tcp://0.0.0.0:")


@pytest.mark.parametrize(
    ("address", "local"),
    [("tcp://127.0.0.1:5577", True), ("tcp://127.3.2.1:1", True), ("tcp://[::1]:5577", True),
     ("ipc:///tmp/x", True), ("inproc://x", True), ("tcp://0.0.0.0:1", False), ("tcp://*:5577", False),
     ("tcp://10.1.2.3:1", False), ("tcp://eth0:5577", False), ("tcp://[::]:1", False), ("tcp://localhost:1", False),
     ("tcp://127.0.0.1.evil:1", False), ("tcp://[::ffff:127.0.0.1]:1", False), ("tcp://eth0;127.0.0.1:1", False),
     ("tcp://127.0.0.1;0.0.0.0:1", False), ("tcp://127.1:1", False)],
)  # fmt: skip
def test_what_counts_as_local(address, local):
    assert is_local_address(address) is local


def test_keys_are_made_once_and_secrets_kept_private(tmp_path):
    folder = tmp_path / "k"
    written = make_keys(folder)
    assert {path.name for path in written} == {"server.key", "server.key_secret", "client.key", "client.key_secret"}
    for secret in folder.glob("*.key_secret"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    public, _ = zmq.auth.load_certificate(folder / "client.key")
    assert set(zmq.auth.load_certificates(folder / "authorized")) == {public}
    server_before = (folder / "server.key_secret").read_bytes()
    make_keys(folder, ("beamline-pc",))  # another client; the servers' pair stays
    assert (folder / "server.key_secret").read_bytes() == server_before
    assert len(zmq.auth.load_certificates(folder / "authorized")) == 2
    with pytest.raises(ConfigError, match="exists"):
        make_keys(folder, ("client",))
    with pytest.raises(ConfigError, match="a client's name"):
        make_keys(folder, ("server",))


def test_missing_key_files_are_one_line_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"security\.keys: no such folder"):
        use_security(Security(keys=tmp_path / "nowhere"))
    client_only = tmp_path / "client-only"
    make_keys(client_only)
    (client_only / "server.key_secret").unlink()
    with secured(Security(keys=client_only)):
        with pytest.raises(ConfigError, match=r"security.keys: .*server.key_secret is missing \(to bind"):
            FramePublisher(LOOPBACK)


def test_the_command_line_refuses_a_wide_bind_and_makes_keys(tmp_path, recorded_file):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    command = [sys.executable, "-m", "streaming.app.cli"]
    refused = subprocess.run([*command, "replay", str(recorded_file), "--docs", "tcp://0.0.0.0:0", "--fast", "-q"],
                             capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "beyond loopback without CURVE" in refused.stderr
    made = subprocess.run([*command, "keys", str(tmp_path / "keys")], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip
    assert made.returncode == 0 and (tmp_path / "keys" / "authorized" / "client.key").is_file()


def test_a_spawned_recorder_takes_its_parents_keys_and_records_a_run(keys, tmp_path, small_run):
    from streaming.app.demo import publish_synthetic_run
    from streaming.app.processes import RecorderProcess
    from streaming.store.recorder import RecorderConfig
    from streaming.store.runreader import RunFileReader

    with secured(Security(keys=keys)):
        documents, frames = (
            DocumentPublisher(LOOPBACK, block_when_full=True),
            FramePublisher(LOOPBACK, block_when_full=True),
        )
        with documents, frames:
            recorder = RecorderProcess(RecorderConfig(out_dir=tmp_path, document_address=documents.address,
                                                      frame_address=frames.address, linger_s=0.3))  # fmt: skip
            try:
                documents.wait_for_subscribers(1, 60)
                frames.wait_for_subscribers(1, 60)
                run_uid = publish_synthetic_run(small_run, documents, frames)
                path = recorder.wait_closed(run_uid, timeout_s=60)
            finally:
                recorder.stop()
            assert documents.refused_handshakes == frames.refused_handshakes == 0
    with RunFileReader(path) as reader:
        assert reader.n_frames("pilatus") == small_run.n_angles * small_run.n_translations


def test_refused_workers_do_not_count_as_connected_ones(keys):
    """A distributor counts its workers by their handshakes: refusals must not unbalance it."""
    with secured(Security(keys=keys)):
        distributor = FramePublisher(LOOPBACK, pattern="push")
    with secured(Security(keys=keys, client="intruder")):
        intruder = FrameSubscriber(distributor.address, pattern="pull")
    with distributor, intruder:
        wait_until(lambda: distributor.refused_handshakes >= 1)
        with secured(Security(keys=keys)):
            workers = [FrameSubscriber(distributor.address, pattern="pull") for _ in range(2)]
        try:
            distributor.wait_for_subscribers(2, timeout_s=30)
            sent = [distributor.publish("pilatus", np.full(4, i, "<u2"), run_uid="r") for i in range(10)]
            got = [frame.header for worker in workers for frame in _frames_received(worker, 30.0, n=5)]
        finally:
            for worker in workers:
                worker.close()
    assert sorted(got, key=lambda header: header.seq) == sent
