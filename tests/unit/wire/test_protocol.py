"""The wire protocol: round trips, every validation rule, and property-based garbage."""

from __future__ import annotations

import os
import pickle

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.errors import DocumentDecodeError, FrameDecodeError
from streaming.wire.batches import batch_header
from streaming.wire.protocol import (
    FRAME_DTYPES,
    PROTOCOL_VERSION,
    FrameHeader,
    decode_document,
    decode_frame,
    encode_document,
    encode_frame,
    pack_payload,
    unpack_payload,
)


def make_header(data: np.ndarray, **overrides) -> FrameHeader:
    fields = dict(
        run_uid="run-1",
        stream="pilatus",
        seq=3,
        timestamp=1700000000.25,
        dtype=data.dtype.str,
        shape=data.shape,
        positions={"rotation": 12.5, "translation": -0.04},
        indices={"angle": 1, "translation": 7},
    )
    fields.update(overrides)
    return FrameHeader(**fields)


def valid_parts(data: np.ndarray | None = None) -> list[bytes]:
    data = np.arange(12, dtype="<i4").reshape(3, 4) if data is None else data
    return [bytes(p) for p in encode_frame(make_header(data), data)]


def with_header(**changes) -> list[bytes]:
    topic, header, buffer = valid_parts()
    raw = msgpack.unpackb(header)
    for key, value in changes.items():
        if value is _DELETE:
            del raw[key]
        else:
            raw[key] = value
    return [topic, msgpack.packb(raw), buffer]


_DELETE = object()


@pytest.mark.parametrize("dtype", sorted(FRAME_DTYPES))
@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 80, 80), (0, 7)])
def test_frame_round_trip_is_exact_for_every_allowed_dtype(dtype, shape, rng):
    data = (rng.random(shape) * 100).astype(dtype)
    header = make_header(data)
    frame = decode_frame(encode_frame(header, data))
    assert frame.header == header
    assert frame.data.dtype == data.dtype and frame.data.shape == data.shape
    np.testing.assert_array_equal(frame.data, data)


def test_encode_does_not_copy_and_decode_views_the_buffer():
    data = np.arange(1679 * 1475, dtype="<i4").reshape(1679, 1475)
    parts = encode_frame(make_header(data), data)
    assert np.shares_memory(np.frombuffer(parts[2], "<i4"), data)
    frame = decode_frame(parts)
    assert np.shares_memory(frame.data, data)
    assert not frame.data.flags.writeable


def test_header_carries_the_fields_the_design_requires():
    data = np.zeros((2, 2), "<u2")
    raw = msgpack.unpackb(valid_parts(data)[1])
    assert {"version", "run_uid", "stream", "seq", "timestamp", "dtype", "shape", "positions", "indices"} <= set(raw)
    assert raw["version"] == PROTOCOL_VERSION


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        pytest.param(valid_parts()[:2], "parts", id="two-parts"),
        pytest.param([*valid_parts(), b"extra"], "parts", id="four-parts"),
        pytest.param([b"\xff\xfe", *valid_parts()[1:]], "topic", id="topic-not-utf8"),
        pytest.param([b"hexitec", *valid_parts()[1:]], "topic", id="topic-differs-from-stream"),
        pytest.param([valid_parts()[0], b"\xc1\xc1", valid_parts()[2]], "header", id="header-garbage"),
        pytest.param([valid_parts()[0], msgpack.packb([1, 2]), valid_parts()[2]], "header", id="header-not-map"),
        pytest.param(with_header(version=_DELETE), "version", id="version-missing"),
        pytest.param(with_header(version="1"), "version", id="version-str"),
        pytest.param(with_header(version=99), "version", id="version-unknown"),
        pytest.param(with_header(run_uid=_DELETE), "run_uid", id="run-uid-missing"),
        pytest.param(with_header(run_uid=""), "run_uid", id="run-uid-empty"),
        pytest.param(with_header(seq=-1), "seq", id="seq-negative"),
        pytest.param(with_header(seq=True), "seq", id="seq-bool"),
        pytest.param(with_header(seq=1.5), "seq", id="seq-float"),
        pytest.param(with_header(seq=2**64 - 1), "seq", id="seq-beyond-int64"),
        pytest.param(with_header(timestamp="now"), "timestamp", id="timestamp-str"),
        pytest.param(with_header(timestamp=float("nan")), "timestamp", id="timestamp-nan"),
        pytest.param(with_header(dtype=">i4"), "dtype", id="dtype-big-endian"),
        pytest.param(with_header(dtype="|O"), "dtype", id="dtype-object"),
        pytest.param(with_header(dtype=7), "dtype", id="dtype-int"),
        pytest.param(with_header(shape=[3, 5]), "shape", id="shape-times-itemsize-mismatch"),
        pytest.param(with_header(shape=[-3, -4]), "shape", id="shape-negative"),
        pytest.param(with_header(shape="3x4"), "shape", id="shape-str"),
        pytest.param(with_header(shape=[1] * 9 + [12]), "shape", id="shape-too-many-dims"),
        pytest.param(with_header(positions=[1.0]), "positions", id="positions-list"),
        pytest.param(with_header(positions={"x": "a"}), "positions", id="positions-str-value"),
        pytest.param(with_header(indices={"angle": 1.5}), "indices", id="indices-float"),
        pytest.param(with_header(stream=_DELETE), "stream", id="stream-missing"),
        pytest.param([b"../x", *with_header(stream="../x")[1:]], "stream", id="stream-path"),
        pytest.param(with_header(shape=[0, 2**62, 2**62]), "shape", id="shape-huge-dimension"),
        pytest.param(with_header(positions={"a/b": 1.0}), "positions", id="positions-key-path"),
        pytest.param(with_header(positions={"x": float("nan")}), "positions", id="positions-nan"),
        pytest.param(with_header(indices={"angle": -1}), "indices", id="indices-negative"),
    ],
)
def test_each_malformation_is_rejected_naming_its_field(parts, field):
    with pytest.raises(FrameDecodeError) as info:
        decode_frame(parts)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_size_cap_is_checked_before_anything_else():
    data = np.zeros(1000, "<f8")
    with pytest.raises(FrameDecodeError) as info:
        decode_frame(encode_frame(make_header(data), data), max_frame_bytes=7999)
    assert info.value.field == "size"
    assert decode_frame(encode_frame(make_header(data), data), max_frame_bytes=8000).data.nbytes == 8000


def test_sender_refuses_a_header_that_does_not_describe_its_data():
    data = np.zeros((4, 4), "<u2")
    with pytest.raises(FrameDecodeError, match="dtype"):
        encode_frame(make_header(data, dtype="<u4"), data)
    with pytest.raises(FrameDecodeError, match="shape"):
        encode_frame(make_header(data, shape=(2, 8)), data)
    big_endian = data.astype(">u2")
    with pytest.raises(FrameDecodeError, match="dtype"):
        encode_frame(make_header(big_endian), big_endian)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_arbitrary_bytes_never_raise_anything_but_frame_decode_error(parts):
    try:
        frame = decode_frame(parts)
    except FrameDecodeError:
        return
    assert frame.data.nbytes == len(parts[2])


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["version", "run_uid", "stream", "seq", "timestamp", "dtype", "shape", "positions", "x"]),
        st.one_of(
            st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=5), st.none(), st.lists(st.integers(0, 9))
        ),
        max_size=9,
    )
)
def test_arbitrary_header_maps_are_rejected_or_fully_valid(raw):
    parts = [b"pilatus", msgpack.packb(raw), b"\x00" * 8]
    try:
        frame = decode_frame(parts)
    except FrameDecodeError:
        return
    assert frame.header.version == PROTOCOL_VERSION


# --- documents ---------------------------------------------------------------------------


def test_document_round_trip_and_numpy_values_become_plain():
    doc = {
        "uid": "u1",
        "time": np.float64(1.5),
        "num_points": np.int64(7),
        "shape": np.array([3, 4]),
        "nested": {"flag": np.bool_(True), "values": (1, 2)},
    }
    prefix, name, decoded = decode_document(encode_document("start", doc, prefix=b"beamline"))
    assert (prefix, name) == (b"beamline", "start")
    assert decoded == {
        "uid": "u1",
        "time": 1.5,
        "num_points": 7,
        "shape": [3, 4],
        "nested": {"flag": True, "values": [1, 2]},
    }
    assert type(decoded["num_points"]) is int


def test_document_message_has_blueskys_wire_layout():
    message = encode_document("stop", {"uid": "s", "run_start": "r"}, prefix=b"p")
    prefix, name, payload = message.split(b" ", 2)
    assert (prefix, name) == (b"p", b"stop")
    assert unpack_payload(payload) == {"uid": "s", "run_start": "r"}
    assert unpack_payload(pack_payload({"a": np.float32(2.0)})) == {"a": 2.0}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        pytest.param(b"nospaces", "parts", id="no-spaces"),
        pytest.param(b" bogus " + msgpack.packb({"uid": "u"}), "name", id="unknown-name"),
        pytest.param(b" start \xc1", "payload", id="payload-garbage"),
        pytest.param(b" start " + msgpack.packb([1]), "payload", id="payload-not-map"),
        pytest.param(b" start " + msgpack.packb({"time": 1}), "uid", id="start-without-uid"),
        pytest.param(b" event " + msgpack.packb({"uid": "e"}), "descriptor", id="event-without-descriptor"),
        pytest.param(b" stop " + msgpack.packb({"uid": "s", "run_start": 5}), "run_start", id="stop-run-start-int"),
        pytest.param(b" \xff\xff " + msgpack.packb({}), "name", id="name-not-utf8"),
        pytest.param(b" start " + msgpack.packb({"uid": "u", "blob": b"\x00"}), "payload", id="payload-bytes"),
        pytest.param(b" start " + msgpack.packb({"uid": "u", 1: 2}), "payload", id="int-key"),
    ],
)
def test_each_document_malformation_is_rejected_naming_its_field(message, field):
    with pytest.raises(DocumentDecodeError) as info:
        decode_document(message)
    assert info.value.field == field


def test_document_size_cap():
    message = encode_document("start", {"uid": "u", "pad": "x" * 1000})
    with pytest.raises(DocumentDecodeError, match="size"):
        decode_document(message, max_document_bytes=len(message) - 1)


def test_prefix_with_space_and_unknown_names_are_refused_at_the_sender():
    with pytest.raises(ValueError, match="prefix"):
        encode_document("start", {"uid": "u"}, prefix=b"a b")
    with pytest.raises(ValueError, match="unknown document name"):
        encode_document("begin", {"uid": "u"})


class _Exploit:
    """Unpickling this would create a file: proof that a receiver ran foreign code."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_payloads_are_rejected_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(os.fspath(marker)))
    with pytest.raises(DocumentDecodeError) as info:
        decode_document(b" start " + payload)
    assert info.value.field == "payload"
    with pytest.raises(FrameDecodeError) as frame_info:
        decode_frame([b"pilatus", payload, b""])
    assert frame_info.value.field == "header"
    assert not marker.exists()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_document_bytes_never_raise_anything_but_document_decode_error(message):
    try:
        _, name, doc = decode_document(message)
    except DocumentDecodeError:
        return
    assert isinstance(doc, dict) and isinstance(name, str)


def test_a_batch_travels_as_one_message_and_splits_into_its_frames():
    data = np.arange(3 * 4 * 5, dtype="<u2").reshape(3, 4, 5)
    header = make_header(data, stream="hexitec", seq=10, timestamp=5.0, n_frames=3, timestamps=(5.0, 5.1, 5.2),
                         counter="frame", indices={"scan": 2, "frame": 7})  # fmt: skip
    frame = decode_frame(encode_frame(header, data))
    assert frame.header == header
    frames = frame.frames()
    assert [f.header.seq for f in frames] == [10, 11, 12]
    assert [f.header.timestamp for f in frames] == [5.0, 5.1, 5.2]
    assert [f.header.indices for f in frames] == [{"scan": 2, "frame": 7 + i} for i in range(3)]
    assert all(f.header.shape == (4, 5) and f.header.n_frames == 1 for f in frames)
    np.testing.assert_array_equal(frames[2].data, data[2])
    assert batch_header([f.header for f in frames]) == header  # the inverse
    # not a batch: a gap, or an index other than the counter that changes
    assert batch_header([frames[0].header, frames[2].header]) is None
    moved = FrameHeader(**{**frames[1].header.__dict__, "indices": {"scan": 3, "frame": 8}})
    assert batch_header([frames[0].header, moved]) is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"n_frames": 0}, "n_frames"),
        ({"n_frames": 4}, "n_frames"),  # the buffer holds 3
        ({"timestamps": [1.0, 2.0]}, "timestamps"),
        ({"timestamps": [1.0, float("inf"), 2.0]}, "timestamps"),
        ({"counter": "no/slash"}, "counter"),
    ],
)
def test_a_malformed_batch_header_names_its_field(override, field):
    data = np.zeros((3, 4), "<u2")
    wire = {**make_header(data, n_frames=3, timestamps=(1.0, 2.0, 3.0)).to_wire(), **override}
    with pytest.raises(FrameDecodeError) as raised:
        decode_frame([b"pilatus", msgpack.packb(wire), data.tobytes()])
    assert raised.value.field == field
