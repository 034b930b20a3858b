"""Fuzz: 10,000 malformed or mutated messages over a real socket; every one is answered, none crashes.

The messages come from a seeded generator with one strategy per kind of damage (bad JSON, bad UTF-8,
wrong frame counts, shapes that lie about their frames, huge sizes, unknown operations, wrong types,
missing fields, negative dimensions, unknown dtypes, random byte flips and truncations of valid
requests, ...). A raw DEALER sends them in pipelined batches; the test checks that each message gets
exactly one well-formed reply, that deliberately invalid ones get an ``error`` (never ``ok``), and
that the server then still serves valid requests.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

from avatex_core import protocol
from avatex_core.client import Client
from tests.helpers.server import running_server

COUNT = 10_000
BATCH = 500
VALID = {"v": 1, "id": "x", "op": "echo", "args": {"data": 1},
         "arrays": [{"name": "a", "dtype": "float32", "shape": [4, 3]}]}
VALID_FRAME = np.arange(12, dtype=np.float32).tobytes()


def _msg(header, *frames) -> list[bytes]:
    return [json.dumps(header).encode() if not isinstance(header, bytes) else header, *frames]


def _with(rid: str, **changes) -> dict:
    header = json.loads(json.dumps(VALID))
    header["id"] = rid
    for key, value in changes.items():
        if value is _DROP:
            header.pop(key, None)
        else:
            header[key] = value
    return header


_DROP = object()
_JUNK_VALUES = [None, True, 0, -1, 1.5, "", "x" * 300, [], {}, [1, "a"], {"a": None}, 2**70]


# Kinds whose header is readable JSON with a valid id: their error reply must carry that id.
ECHO_KINDS = frozenset((4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 20))


def invalid_message(rng: np.random.Generator, rid: str) -> tuple[int, list[bytes]]:
    """(kind, message): wrong in one randomly chosen way (the server must answer ``error``)."""
    kind = int(rng.integers(22))
    return kind, _invalid(rng, rid, kind)


def _invalid(rng: np.random.Generator, rid: str, kind: int) -> list[bytes]:
    junk = _JUNK_VALUES[int(rng.integers(len(_JUNK_VALUES)))]
    desc = dict(VALID["arrays"][0])
    if kind == 0:   # bad UTF-8
        return [bytes(rng.integers(128, 256, size=int(rng.integers(1, 64)), dtype=np.uint8))]
    if kind == 1:   # not JSON
        text = bytes(rng.integers(32, 127, size=int(rng.integers(0, 40)), dtype=np.uint8))
        return [b"{" + text, VALID_FRAME]
    if kind == 2:   # JSON, not an object
        return [json.dumps(rng.choice(["[1,2]", "3", '"s"', "null", "true"]).item()).encode()]
    if kind == 3:   # missing field
        field = ["v", "id", "op"][int(rng.integers(3))]
        return _msg(_with(rid, **{field: _DROP}), VALID_FRAME)
    if kind == 4:   # wrong version
        return _msg(_with(rid, v=int(rng.integers(2, 1000))), VALID_FRAME)
    if kind == 5:   # wrong types of header fields
        field = ["op", "args", "arrays"][int(rng.integers(3))]
        value = junk if not (field == "arrays" and isinstance(junk, list)) else 7
        if field == "args" and isinstance(value, dict):
            value = [value]
        if field == "op" and isinstance(value, str):
            value = "BAD OP"
        return _msg(_with(rid, **{field: value}), VALID_FRAME)
    if kind == 6:   # unknown operation
        name = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz._"), size=int(rng.integers(1, 20))))
        return _msg(_with(rid, op="zz" + name), VALID_FRAME)
    if kind == 7:   # too many frames for the descriptors
        return _msg(_with(rid), VALID_FRAME, *([b"extra"] * int(rng.integers(1, 5))))
    if kind == 8:   # too few frames
        return _msg(_with(rid, arrays=[desc, dict(desc, name="b")]), VALID_FRAME)
    if kind == 9:   # the shape lies about the frame
        shape = [int(rng.integers(1, 50)), 3]
        size = shape[0] * 12 + int(rng.choice([-12, -5, -1, 1, 4, 100]))
        return _msg(_with(rid, arrays=[dict(desc, shape=shape)]), bytes(size))
    if kind == 10:  # huge sizes
        shape = [int(x) for x in rng.integers(2**20, 2**40, size=int(rng.integers(2, 5)))]
        return _msg(_with(rid, arrays=[dict(desc, shape=shape)]), VALID_FRAME)
    if kind == 11:  # negative or non-integer dimensions
        bad = [-1, -(2**40), 1.5, "3", None, True, [2]][int(rng.integers(7))]
        return _msg(_with(rid, arrays=[dict(desc, shape=[bad, 3])]), VALID_FRAME)
    if kind == 12:  # unknown dtypes
        dtype = ["float128", "object", "O", "<U8", "V4", "complex64", "F4", "", "float", ">f4"][
            int(rng.integers(10))]
        return _msg(_with(rid, arrays=[dict(desc, dtype=dtype)]), VALID_FRAME)
    if kind == 13:  # descriptor not an object / missing keys / extra keys
        bad = [junk, {"name": "a"}, dict(desc, extra=1), {"dtype": "float32", "shape": [4, 3]}][
            int(rng.integers(4))]
        return _msg(_with(rid, arrays=[bad]), VALID_FRAME)
    if kind == 14:  # too many dimensions
        return _msg(_with(rid, arrays=[dict(desc, shape=[1] * int(rng.integers(9, 30)))]), bytes(4))
    if kind == 15:  # NaN / Infinity / deep nesting / giant integers in the header
        head = '{"v":1,"id":"' + rid + '","op":"echo","args":{"data":'
        text = [head + "NaN}}", head + "-Infinity}}", "[" * 50_000 + "]" * 50_000,
                head + "7" * 6000 + "}}"][int(rng.integers(4))]
        return [text.encode()]
    if kind == 16:  # arguments that break an operation's schema
        op, args = [("hello", {"client": 5}), ("hello", {"nope": 1}), ("job.status", {}),
                    ("job.status", {"job": 7}), ("job.result", {"job": "j", "wait": "yes"}),
                    ("checkpoints.list", {"limit": -3}), ("checkpoints.list", {"limit": "x"}),
                    ("evaluate", {"k": "eight"}), ("reconstruct", {"resolution": 10**9}),
                    ("cancel", {"job": None, "request": None}), ("train.status", {"job": [1]})][
            int(rng.integers(11))]
        return _msg({"v": 1, "id": rid, "op": op, "args": args, "arrays": []})
    if kind == 17:  # arrays an operation does not accept
        return _msg({"v": 1, "id": rid, "op": "evaluate", "args": {},
                     "arrays": [{"name": "vertices", "dtype": "int8", "shape": [4, 2]}]}, bytes(8))
    if kind == 18:  # empty header frame, or nothing but frames
        return [b"", VALID_FRAME] if rng.random() < 0.5 else [b""]
    if kind == 19:  # a header over the size limit
        return _msg(_with(rid, args={"data": "x" * (1 << 20)}), VALID_FRAME)
    if kind == 20:  # more array frames than allowed
        many = [dict(desc, name=f"a{i}") for i in range(70)]
        return _msg(_with(rid, arrays=many), *([VALID_FRAME] * 70))
    # kind 21: duplicate names, or a bad request id
    if rng.random() < 0.5:
        return _msg(_with(rid, arrays=[desc, desc]), VALID_FRAME, VALID_FRAME)
    return _msg(_with(["", "a b", "é", "x" * 200, 12][int(rng.integers(5))]), VALID_FRAME)


def mutated_message(rng: np.random.Generator, rid: str) -> list[bytes]:
    """A valid inline request with random bytes flipped, inserted, or cut (may stay valid)."""
    op = ["ping", "hello", "echo"][int(rng.integers(3))]
    header = bytearray(json.dumps({"v": 1, "id": rid, "op": op, "args": {},
                                   "arrays": [{"name": "a", "dtype": "float32", "shape": [4, 3]}]}).encode())
    for _ in range(int(rng.integers(1, 4))):
        pos = int(rng.integers(len(header)))
        action = int(rng.integers(3))
        if action == 0:
            header[pos] = int(rng.integers(256))
        elif action == 1:
            header.insert(pos, int(rng.integers(256)))
        else:
            del header[pos:]
            if not header:
                header = bytearray(b"{")
    frame = VALID_FRAME if rng.random() < 0.8 else VALID_FRAME[: int(rng.integers(len(VALID_FRAME)))]
    return [bytes(header), frame]


@pytest.mark.timeout(120)   # bounded: about 5 s here
@pytest.mark.slow
def test_ten_thousand_bad_messages_each_get_one_error_and_the_server_survives():
    rng = np.random.default_rng(20261123)
    with running_server(max_queue=4) as server:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.endpoint)
        must_fail: set[str] = set()
        must_echo: set[str] = set()
        replies: list[protocol.Event] = []
        sent = 0
        try:
            while sent < COUNT:
                for _ in range(min(BATCH, COUNT - sent)):
                    rid = f"f{sent}"
                    if rng.random() < 0.8:
                        kind, message = invalid_message(rng, rid)
                        must_fail.add(rid)
                        if kind in ECHO_KINDS:
                            must_echo.add(rid)
                    else:
                        message = mutated_message(rng, rid)
                    sock.send_multipart(message)
                    sent += 1
                deadline = time.monotonic() + 30
                while len(replies) < sent:
                    assert sock.poll(int(max(0.0, deadline - time.monotonic()) * 1000)), \
                        f"no reply: {len(replies)} replies for {sent} messages"
                    replies.append(protocol.decode_reply(sock.recv_multipart()))   # all well-formed
        finally:
            sock.close(0)
            ctx.term()
        assert len(replies) == COUNT
        assert all(r.type in ("ok", "error") for r in replies), {r.type for r in replies}
        wrongly_ok = [r.id for r in replies if r.type == "ok" and r.id in must_fail]
        assert not wrongly_ok, wrongly_ok[:5]
        echoed = {r.id for r in replies if r.type == "error" and r.id in must_echo}
        assert echoed == must_echo   # every request with a readable id got its own error reply
        codes = {r.code for r in replies if r.type == "error"}
        assert {"bad_message", "bad_request", "bad_version", "bad_array", "too_large", "unknown_op",
                "bad_args"} <= codes, codes
        assert all(r.message for r in replies if r.type == "error")
        # still serving
        with Client(server.endpoint) as client:
            assert client.call("hello", timeout=10).result["protocol"] == 1
            arr = np.arange(1000, dtype=np.float64)
            np.testing.assert_array_equal(client.call("echo", {}, {"a": arr}, timeout=10).arrays["a"], arr)
        assert server.jobs.counts() == {}   # no malformed request started a job


def test_a_frame_over_the_size_limit_is_dropped_and_the_server_keeps_serving():
    with running_server(limits=protocol.Limits(max_message_bytes=1 << 20)) as server:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.endpoint)
        try:
            header = _msg(_with("big", arrays=[{"name": "a", "dtype": "uint8", "shape": [2 << 20]}]))
            sock.send_multipart([*header, bytes(2 << 20)])
            assert not sock.poll(1000), "an oversized frame got a reply instead of being dropped"
        finally:
            sock.close(0)
            ctx.term()
        with Client(server.endpoint) as client:
            assert client.call("ping", timeout=10).result["time"] > 0
            small = np.zeros(1000, np.uint8)
            with_limit = client.call("echo", {}, {"a": small}, timeout=10)
            assert with_limit.arrays["a"].shape == (1000,)
