"""avatex_core.protocol: encoding, validation of every field and frame, zero-copy decoding over sockets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zmq

from avatex_core import protocol
from avatex_core.protocol import Limits, ProtocolError


def _header(frames):
    return json.loads(bytes(frames[0]))


def _raw(header: dict, *frames) -> list:
    return [json.dumps(header).encode(), *frames]


def test_request_round_trip_keeps_values_dtypes_and_shapes():
    arrays = {"v": np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32),
              "f": np.arange(6, dtype=np.int32).reshape(2, 3),
              "m": np.array([True, False, True]),
              "e": np.zeros((0, 3), np.float64),
              "s": np.float16(1.5) * np.ones((), np.float16)}
    frames = protocol.encode_request("r-1", "echo", {"x": [1, "a"]}, arrays)
    req = protocol.decode_request(frames)
    assert (req.id, req.op, req.args) == ("r-1", "echo", {"x": [1, "a"]})
    for name, arr in arrays.items():
        got = req.arrays[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        assert not got.flags.writeable


def test_encode_makes_big_endian_and_strided_arrays_little_endian_contiguous():
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    strided = np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2]
    descriptors, frames = protocol.encode_arrays({"big": big, "strided": strided})
    assert descriptors == [{"name": "big", "dtype": "float32", "shape": [2, 3]},
                           {"name": "strided", "dtype": "int64", "shape": [4, 3]}]
    decoded = protocol.decode_arrays(descriptors, frames)
    np.testing.assert_array_equal(decoded["big"], big.astype("<f4"))
    np.testing.assert_array_equal(decoded["strided"], strided)


def test_encode_shares_memory_with_contiguous_arrays():
    arr = np.arange(1000, dtype=np.float32)
    _, frames = protocol.encode_arrays({"a": arr})
    assert np.shares_memory(np.frombuffer(frames[0], np.float32), arr)


@pytest.mark.parametrize("value", [np.array(["a"]), np.array([1 + 2j]), np.zeros(2, dtype=[("a", "f4")]),
                                   np.array([object()])])
def test_encode_refuses_dtypes_off_the_allow_list(value):
    with pytest.raises(ProtocolError) as info:
        protocol.encode_arrays({"x": value})
    assert info.value.code == protocol.BAD_ARRAY


@pytest.mark.parametrize(("frames", "code", "words"), [
    ([], protocol.BAD_MESSAGE, "empty"),
    ([b""], protocol.BAD_MESSAGE, "empty header"),
    ([b"\xff\xfe{}"], protocol.BAD_MESSAGE, "UTF-8"),
    ([b"{nope"], protocol.BAD_MESSAGE, "JSON"),
    ([b"[1, 2]"], protocol.BAD_MESSAGE, "object"),
    ([b'{"v": 1, "id": "a", "op": "x", "args": {"f": NaN}}'], protocol.BAD_MESSAGE, "NaN"),
    ([b"[" * 100_000], protocol.BAD_MESSAGE, "JSON"),
    ([b'{"v": 1, "id": "a", "op": "x", "n": ' + b"9" * 5000 + b"}"], protocol.BAD_MESSAGE, "JSON"),
    (_raw({"id": "a", "op": "x"}), protocol.BAD_REQUEST, "'v'"),
    (_raw({"v": 2, "id": "a", "op": "x"}), protocol.BAD_VERSION, "version 2"),
    (_raw({"v": True, "id": "a", "op": "x"}), protocol.BAD_VERSION, "version"),
    (_raw({"v": 1, "op": "x"}), protocol.BAD_REQUEST, "'id'"),
    (_raw({"v": 1, "id": 7, "op": "x"}), protocol.BAD_REQUEST, "'id'"),
    (_raw({"v": 1, "id": "has space", "op": "x"}), protocol.BAD_REQUEST, "'id'"),
    (_raw({"v": 1, "id": "a"}), protocol.BAD_REQUEST, "'op'"),
    (_raw({"v": 1, "id": "a", "op": ["x"]}), protocol.BAD_REQUEST, "'op'"),
    (_raw({"v": 1, "id": "a", "op": "x", "args": []}), protocol.BAD_REQUEST, "'args'"),
    (_raw({"v": 1, "id": "a", "op": "x", "extra": 1}), protocol.BAD_REQUEST, "unknown header"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": {}}), protocol.BAD_REQUEST, "'arrays'"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": []}, b"1234"), protocol.BAD_ARRAY, "0 array"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [4]}]}),
     protocol.BAD_ARRAY, "1 array"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [7]}, b""), protocol.BAD_ARRAY, "must be an object"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8"}]}, b""),
     protocol.BAD_ARRAY, "missing"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [1], "o": 1}]},
          b"1"), protocol.BAD_ARRAY, "unexpected"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a/b", "dtype": "uint8", "shape": [1]}]},
          b"1"), protocol.BAD_ARRAY, "name"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "object", "shape": [1]}]},
          b"1"), protocol.BAD_ARRAY, "not allowed"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "<f4", "shape": [1]}]},
          b"1234"), protocol.BAD_ARRAY, "not allowed"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [-1]}]},
          b"1"), protocol.BAD_ARRAY, "non-negative"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [1.0]}]},
          b"1"), protocol.BAD_ARRAY, "non-negative"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [True]}]},
          b"1"), protocol.BAD_ARRAY, "non-negative"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": "4"}]},
          b"1234"), protocol.BAD_ARRAY, "shape"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [1] * 9}]},
          b"1"), protocol.BAD_ARRAY, "at most 8"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "float32", "shape": [2, 3]}]},
          b"x" * 23), protocol.BAD_ARRAY, "needs 24 bytes but its frame has 23"),
    (_raw({"v": 1, "id": "a", "op": "x",
           "arrays": [{"name": "a", "dtype": "float64", "shape": [2**40, 2**40]}]}, b"x"),
     protocol.TOO_LARGE, "would be"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [0, 2**70]}]},
          b""), protocol.BAD_ARRAY, "too large"),
    (_raw({"v": 1, "id": "a", "op": "x", "arrays": [{"name": "a", "dtype": "uint8", "shape": [1]}] * 2},
          b"1", b"2"), protocol.BAD_ARRAY, "twice"),
])
def test_decode_request_rejects_with_a_code_and_a_reason(frames, code, words):
    with pytest.raises(ProtocolError) as info:
        protocol.decode_request(frames)
    assert info.value.code == code
    assert words in str(info.value)


def test_errors_carry_the_request_id_when_it_was_readable():
    with pytest.raises(ProtocolError) as info:
        protocol.decode_request(_raw({"v": 1, "id": "keep-me", "op": "x", "args": 3}))
    assert info.value.request_id == "keep-me"
    with pytest.raises(ProtocolError) as info:
        protocol.decode_request([b"{oops"])
    assert info.value.request_id is None


def test_limits_bound_headers_frames_and_total_size():
    small = Limits(max_message_bytes=1000, max_header_bytes=200, max_arrays=2)
    with pytest.raises(ProtocolError, match="header frame of"):
        protocol.decode_request([b" " * 201], small)
    frames = protocol.encode_request("a", "x", arrays={"a": np.zeros(3), "b": np.zeros(3), "c": np.zeros(3)})
    with pytest.raises(ProtocolError, match="frames, over the limit") as info:
        protocol.decode_request(frames, small)
    assert info.value.code == protocol.TOO_LARGE
    frames = protocol.encode_request("a", "x", arrays={"a": np.zeros(200)})
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        protocol.decode_request(frames, small)


def test_replies_round_trip():
    arr = np.arange(9, dtype=np.int64).reshape(3, 3)
    frames = protocol.ok_reply("r", {"n": np.int64(3), "x": float("nan")}, {"a": arr}, job="j1")
    ok = protocol.decode_reply(frames)
    assert (ok.type, ok.id, ok.job, ok.result, ok.final) == ("ok", "r", "j1", {"n": 3, "x": None}, True)
    np.testing.assert_array_equal(ok.arrays["a"], arr)
    err = protocol.decode_reply(protocol.error_reply(None, "busy", "full"))
    assert (err.type, err.id, err.code, err.message) == ("error", None, "busy", "full")
    prog = protocol.decode_reply(protocol.progress_reply("r", "j1", "grid", 0.25, {"points": 10}))
    assert (prog.stage, prog.fraction, prog.info, prog.final) == ("grid", 0.25, {"points": 10}, False)
    can = protocol.decode_reply(protocol.cancelled_reply("r", "stopped", job="j1"))
    assert (can.type, can.message, can.job) == ("cancelled", "stopped", "j1")


@pytest.mark.parametrize("header", [
    {"v": 1, "id": "r", "type": "maybe"},
    {"v": 1, "id": 5, "type": "ok"},
    {"v": 1, "id": "r", "type": "error", "error": "x"},
    {"v": 1, "id": "r", "type": "progress", "fraction": "half"},
    {"v": 1, "id": "r", "type": "ok", "result": []},
    {"v": 3, "id": "r", "type": "ok"},
])
def test_decode_reply_rejects_malformed_replies(header):
    with pytest.raises(ProtocolError):
        protocol.decode_reply(_raw(header))


def test_jsonable_refuses_bytes_in_headers():
    with pytest.raises(TypeError, match="frames"):
        protocol.dumps({"a": b"raw"})


def test_received_frames_are_wrapped_without_a_copy():
    """A large array decoded from a real ZeroMQ message points into the message's own buffer."""
    ctx = zmq.Context()
    try:
        pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        arr = np.random.default_rng(1).random((300_000, 3), dtype=np.float32)
        push.send_multipart(protocol.encode_request("r", "echo", arrays={"v": arr}), copy=False)
        frames = pull.recv_multipart(copy=False)
        req = protocol.decode_request(frames)
        got = req.arrays["v"]
        frame_address = np.frombuffer(frames[1].buffer, np.uint8).ctypes.data
        assert got.ctypes.data == frame_address
        np.testing.assert_array_equal(got, arr)
        push.close(0)
        pull.close(0)
    finally:
        ctx.term()
