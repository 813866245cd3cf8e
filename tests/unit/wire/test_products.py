"""The products channel over real sockets: full-state messages validated on receipt, requests
as subscriptions (withdrawn when a receiver leaves), malformed messages counted and skipped,
and a publisher that never blocks on a receiver that does not read."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
import zmq

from streaming.errors import ProductDecodeError
from streaming.wire.products import (
    Product,
    ProductPublisher,
    ProductSubscriber,
    decode_product,
    encode_product,
)
from tests.conftest import LOOPBACK, wait_until


def _received(subscriber: ProductSubscriber, name: str, timeout_s: float = 10.0) -> Product:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        product = subscriber.recv(0.1)
        if product is not None and product.name == name:
            return product
    raise AssertionError(f"no {name} within {timeout_s} s")


def test_a_product_crosses_the_socket_whole():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    with ProductPublisher(LOOPBACK) as publisher, ProductSubscriber(publisher.address) as subscriber:
        wait_until(lambda: publisher.requested("x") == set() and publisher.n_receivers == 1)
        sent = Product("xrdct.scan@12", {"lines_done": 3, "centre_px": None, "streams": {"a": [1, 2]}},
                       {"reconstruction": image, "filled": np.ones((2, 2), np.uint8)}, run_uid="abc")  # fmt: skip
        publisher.publish(sent)
        publisher.publish(sent)
        first, second = _received(subscriber, sent.name), _received(subscriber, sent.name)
    assert first.values == sent.values and first.run_uid == "abc"
    np.testing.assert_array_equal(first.arrays["reconstruction"], image)
    assert first.arrays["filled"].dtype == np.uint8 and not first.arrays["reconstruction"].flags.writeable
    assert (first.seq, second.seq) == (0, 1) and abs(first.time_s - time.time()) < 60


def test_requests_are_counted_while_their_receivers_are_connected():
    with ProductPublisher(LOOPBACK) as publisher:
        first, second = ProductSubscriber(publisher.address), ProductSubscriber(publisher.address)
        first.request("xrdct.channel", "412")
        second.request("xrdct.channel", "412")
        second.request("xrdct.channel", "7")
        wait_until(lambda: publisher.requested("xrdct.channel") == {"412", "7"})
        second.close()  # its requests leave with it
        wait_until(lambda: publisher.requested("xrdct.channel") == {"412"})
        first.withdraw("xrdct.channel", "412")
        wait_until(lambda: publisher.requested("xrdct.channel") == set())
        assert publisher.requested("other") == set()
        first.close()


def _header(arrays: list) -> bytes:
    return msgpack.packb({"version": 1, "name": "x", "values": {}, "arrays": arrays})


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ([b"x"], "parts"),
        ([b"x", b"\xc1garbage"], "header"),
        ([b"x", msgpack.packb({"version": 9})], "version"),
        ([b"y", msgpack.packb({"version": 1, "name": "x", "values": {}, "arrays": []})], "name"),
        ([b"x", msgpack.packb({"version": 1, "name": "x", "values": [], "arrays": []})], "values"),
        ([b"x", msgpack.packb({"version": 1, "name": "x", "values": {}, "arrays": []}), b"1234"], "arrays"),
        ([b"x", _header([{"key": "a", "dtype": "|O", "shape": [1]}]), b"12345678"], "dtype"),
        ([b"x", _header([{"key": "a", "dtype": "<f4", "shape": [3]}]), b"12345678"], "shape"),
    ],
)
def test_malformed_messages_name_their_field(parts, field):
    with pytest.raises(ProductDecodeError) as raised:
        decode_product(parts)
    assert raised.value.field == field


def test_a_product_that_would_be_refused_is_not_sent():
    with pytest.raises(ProductDecodeError, match="name"):
        encode_product(Product("?sneaky"))
    with pytest.raises(ProductDecodeError, match="dtype"):
        encode_product(Product("x", arrays={"a": np.array(["text"])}))
    with pytest.raises(ProductDecodeError, match="values"):
        encode_product(Product("x", values={"when": object()}))


def test_malformed_messages_are_counted_and_skipped_between_valid_ones():
    with ProductPublisher(LOOPBACK, hwm=100) as publisher, ProductSubscriber(publisher.address) as subscriber:
        wait_until(lambda: publisher.requested("x") == set() and publisher.n_receivers == 1)
        for _ in range(50):
            publisher.socket.send_multipart([b"xrdct.patterns", b"\xc1not msgpack"])
        publisher.publish(Product("xrdct.patterns", {"n": 1}))
        assert _received(subscriber, "xrdct.patterns").values == {"n": 1}
        assert subscriber.rejected.by_field["header"] == 50


def test_a_receiver_that_does_not_read_never_blocks_the_publisher():
    """2 MB products at 10x the high-water mark: publishing returns at once; the receiver gets
    the latest states it had room for, never a torn one."""
    big = np.empty((512, 1024), np.float32)
    with ProductPublisher(LOOPBACK, hwm=4) as publisher:
        subscriber = ProductSubscriber(publisher.address, hwm=4)
        subscriber.socket.setsockopt(zmq.RCVBUF, 1 << 16)
        wait_until(lambda: publisher.requested("x") == set() and publisher.n_receivers == 1)
        started = time.monotonic()
        for i in range(200):
            big[:] = i  # each state its own pixels: a torn message would mix them
            publisher.publish(Product("big", {"i": i}, {"image": big.copy()}))
        assert time.monotonic() - started < 10  # no wait on the receiver (200 x 2 MB)
        received = []
        while (product := subscriber.recv(0.5)) is not None:
            received.append(product.values["i"])
            image = product.arrays["image"]
            assert image.shape == big.shape and image.min() == image.max() == product.values["i"]
        subscriber.close()
    assert 0 < len(received) < 200 and received == sorted(received)
