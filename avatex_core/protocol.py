"""The avatex wire protocol, version 1: a JSON header plus raw array frames (spec: docs/protocol.md).

Every message is a ZeroMQ multipart. Frame 0 is a UTF-8 JSON object, the *header*; frames 1..n are the
raw bytes of n numpy arrays, each described in the header by ``{"name", "dtype", "shape"}``. Arrays
are never serialised: a sender hands its array buffers to ZeroMQ, and a receiver wraps the received
frames with ``np.frombuffer`` — no copy on either side, which is what lets meshes of millions of
vertices cross the wire at memory speed. Nothing here unpickles anything.

The same functions decode on both ends, so the server and the Blender client validate alike: the
dtype must be on an allow-list, the shape must be non-negative integers whose byte size equals the
frame's length, the frame count must match the descriptors, and everything is bounded by
:class:`Limits` before any large allocation happens.

This module is shared with the Blender add-on (vendored into its zip), so it stays pure: standard
library and numpy only. It does not even import pyzmq: frames are anything with a buffer (``bytes``,
``memoryview``, numpy arrays, or ``zmq.Frame`` through its ``.buffer``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1

# The dtypes that may travel, always little-endian on the wire. Anything else (object, strings,
# structured, complex, float128) is refused: it could not be read without trusting the sender.
DTYPES: tuple[str, ...] = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32",
                           "uint64", "int64", "float16", "float32", "float64")
_WIRE_DTYPE: dict[str, np.dtype] = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}

# Reply types. ``ok``, ``error`` and ``cancelled`` end a request; ``progress`` may come any number of
# times before them (long jobs only).
OK, ERROR, PROGRESS, CANCELLED = "ok", "error", "progress", "cancelled"
REPLY_TYPES = (OK, ERROR, PROGRESS, CANCELLED)
FINAL_TYPES = frozenset((OK, ERROR, CANCELLED))

# Error codes of the protocol layer (the server adds its own: see docs/protocol.md).
BAD_MESSAGE = "bad_message"      # header frame is not UTF-8 JSON of an object
BAD_VERSION = "bad_version"      # protocol version other than PROTOCOL_VERSION
BAD_REQUEST = "bad_request"      # missing or mistyped header fields
BAD_ARRAY = "bad_array"          # an array descriptor is wrong or does not match its frame
TOO_LARGE = "too_large"          # a limit of :class:`Limits` is exceeded

_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_OP_RE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_DESCRIPTOR_KEYS = frozenset(("name", "dtype", "shape"))
# The owner secret a client may put in its request headers: who it is, across reconnects (which change
# nothing a server can trust about a connection). Long and random by construction; never logged.
_OWNER_RE = re.compile(r"[A-Za-z0-9_\-]{22,128}")
_HEADER_KEYS = frozenset(("v", "id", "op", "args", "arrays", "owner"))


@dataclass(frozen=True)
class Limits:
    """Bounds checked before anything is allocated; the server also sets ZMQ_MAXMSGSIZE from them."""

    max_message_bytes: int = 1 << 30   # header + all array frames of one message
    max_header_bytes: int = 1 << 20    # the JSON header frame alone
    max_arrays: int = 64               # array frames per message
    max_ndim: int = 8


DEFAULT_LIMITS = Limits()


class ProtocolError(Exception):
    """A message that breaks the protocol. ``code`` is the error code sent back; the text says why.

    ``request_id`` is the id of the offending request when its header was readable enough to have one,
    so the error reply can be matched to the request by the sender.
    """

    def __init__(self, code: str, message: str, request_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.request_id = request_id


@dataclass
class Request:
    """A decoded, validated request. ``arrays`` are read-only views of the received frames."""

    id: str
    op: str
    args: dict[str, Any]
    arrays: dict[str, np.ndarray]
    owner: str | None = None


@dataclass
class Event:
    """One decoded reply (or, on the client, a connection event of type ``"connection"``).

    Which fields are set depends on ``type``: ``ok`` → ``result``/``arrays``; ``error`` →
    ``code``/``message``; ``progress`` → ``stage``/``fraction``/``info``; ``cancelled`` → ``message``.
    ``job`` is the job id for requests that run as server-side jobs.
    """

    type: str
    id: str | None
    job: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    code: str | None = None
    message: str = ""
    stage: str = ""
    fraction: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """True for the reply that ends a request (ok, error, cancelled)."""
        return self.type in FINAL_TYPES


# --------------------------------------------------------------------------------------------------
# JSON


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars, small arrays, paths and tuples turned into plain JSON values.

    Non-finite floats become ``null``: JSON has no NaN, and a header must parse everywhere.
    """
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, PurePath):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} cannot be sent in a JSON header; send arrays as frames")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (after :func:`jsonable` when it holds non-JSON values)."""
    try:   # fast path: plain dicts of str/int/float/list, the common case
        text = _ENCODER.encode(obj)
    except (TypeError, ValueError):
        text = _ENCODER.encode(jsonable(obj))
    return text.encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.dumps/loads with options would build a new encoder/decoder per message.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_header(frame: Any, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The header frame as a dict; :class:`ProtocolError` (``bad_message``/``too_large``) otherwise."""
    buf = _buffer(frame)
    if buf.nbytes > limits.max_header_bytes:
        raise ProtocolError(TOO_LARGE, f"header frame of {buf.nbytes} bytes exceeds the limit of "
                                       f"{limits.max_header_bytes} bytes")
    if buf.nbytes == 0:
        raise ProtocolError(BAD_MESSAGE, "empty header frame: frame 0 must be a UTF-8 JSON object")
    try:
        text = bytes(buf).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(BAD_MESSAGE, f"header frame is not valid UTF-8 ({exc.reason} at byte "
                                         f"{exc.start})") from None
    try:
        header = _DECODER.decode(text)
    except RecursionError:
        raise ProtocolError(BAD_MESSAGE, "header JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers beyond Python's digit limit
        raise ProtocolError(BAD_MESSAGE, f"header frame is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_MESSAGE, f"header must be a JSON object, not {_json_type(header)}")
    return header


# --------------------------------------------------------------------------------------------------
# Arrays


def encode_arrays(arrays: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[Any]]:
    """Descriptors and frame buffers for ``arrays`` (name → array-like), in order.

    Buffers are the arrays' own memory whenever they are already C-contiguous little-endian, so a
    ``send_multipart(..., copy=False)`` sends them without a copy. Callers must not modify an array
    until ZeroMQ has sent it.
    """
    descriptors: list[dict[str, Any]] = []
    frames: list[Any] = []
    for name, value in (arrays or {}).items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ProtocolError(BAD_ARRAY, f"array name {name!r} is not allowed (letters, digits, "
                                           "'_', '.', '-'; at most 64 characters)")
        arr = np.asarray(value)
        if arr.dtype.name not in _WIRE_DTYPE or arr.dtype.fields is not None:
            raise ProtocolError(BAD_ARRAY, f"array {name!r}: dtype {arr.dtype} cannot be sent "
                                           f"(allowed: {', '.join(DTYPES)})")
        wire = _WIRE_DTYPE[arr.dtype.name]
        if arr.dtype != wire:
            arr = arr.astype(wire)
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")   # (not ascontiguousarray: it turns 0-d arrays into 1-d)
        descriptors.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        frames.append(memoryview(arr.reshape(-1)).cast("B") if arr.size else b"")
    return descriptors, frames


def decode_arrays(descriptors: Any, frames: Sequence[Any],
                  limits: Limits = DEFAULT_LIMITS) -> dict[str, np.ndarray]:
    """Read-only arrays viewing ``frames`` (no copy), after checking each against its descriptor."""
    if not isinstance(descriptors, list):
        raise ProtocolError(BAD_REQUEST, "'arrays' must be a list of {name, dtype, shape} objects, not "
                                         f"{_json_type(descriptors)}")
    if len(descriptors) > limits.max_arrays:
        raise ProtocolError(TOO_LARGE, f"{len(descriptors)} arrays exceed the limit of "
                                       f"{limits.max_arrays} per message")
    if len(frames) != len(descriptors):
        raise ProtocolError(BAD_ARRAY, f"the header describes {len(descriptors)} array(s) but "
                                       f"{len(frames)} array frame(s) follow it")
    out: dict[str, np.ndarray] = {}
    for index, (desc, frame) in enumerate(zip(descriptors, frames, strict=True)):
        name, dtype, shape = _check_descriptor(index, desc, limits)
        if name in out:
            raise ProtocolError(BAD_ARRAY, f"array name {name!r} appears twice")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > limits.max_message_bytes:
            raise ProtocolError(TOO_LARGE, f"array {name!r} ({dtype.name} {shape}) would be {nbytes} "
                                           f"bytes, over the limit of {limits.max_message_bytes}")
        buf = _buffer(frame)
        if buf.nbytes != nbytes:
            raise ProtocolError(BAD_ARRAY, f"array {name!r} ({dtype.name} {shape}) needs {nbytes} "
                                           f"bytes but its frame has {buf.nbytes}")
        arr = np.frombuffer(buf, dtype=dtype) if nbytes else np.empty(0, dtype=dtype)
        try:
            arr = arr.reshape(shape)
        except ValueError:  # an empty array whose other dimensions overflow numpy's index type
            raise ProtocolError(BAD_ARRAY, f"array {name!r}: shape {_short(shape)} is too large") from None
        arr.flags.writeable = False
        out[name] = arr
    return out


def _check_descriptor(index: int, desc: Any, limits: Limits) -> tuple[str, np.dtype, list[int]]:
    where = f"array descriptor {index}"
    if not isinstance(desc, dict):
        raise ProtocolError(BAD_ARRAY, f"{where} must be an object with name, dtype and shape, not "
                                       f"{_json_type(desc)}")
    if set(desc) != _DESCRIPTOR_KEYS:
        missing, extra = sorted(_DESCRIPTOR_KEYS - set(desc)), sorted(set(desc) - _DESCRIPTOR_KEYS)
        raise ProtocolError(BAD_ARRAY, f"{where} must have exactly name, dtype and shape"
                                       + (f"; missing {missing}" if missing else "")
                                       + (f"; unexpected {extra}" if extra else ""))
    name, dtype_name, shape = desc["name"], desc["dtype"], desc["shape"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ProtocolError(BAD_ARRAY, f"{where}: name {name!r} is not allowed (letters, digits, "
                                       "'_', '.', '-'; at most 64 characters)")
    where = f"array {name!r}"
    if not isinstance(dtype_name, str) or dtype_name not in _WIRE_DTYPE:
        raise ProtocolError(BAD_ARRAY, f"{where}: dtype {dtype_name!r} is not allowed "
                                       f"(allowed: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > limits.max_ndim:
        raise ProtocolError(BAD_ARRAY, f"{where}: shape must be a list of at most {limits.max_ndim} "
                                       f"non-negative integers, got {_short(shape)}")
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ProtocolError(BAD_ARRAY, f"{where}: shape {_short(shape)} has {dim!r}, dimensions "
                                           "must be non-negative integers")
    return name, _WIRE_DTYPE[dtype_name], shape


# --------------------------------------------------------------------------------------------------
# Requests


def new_owner_secret() -> str:
    """A fresh owner secret (192 random bits, URL-safe) for :func:`encode_request`'s ``owner``."""
    import secrets

    return secrets.token_urlsafe(24)


def encode_request(request_id: str, op: str, args: Mapping[str, Any] | None = None,
                   arrays: Mapping[str, Any] | None = None, owner: str | None = None) -> list[Any]:
    """Frames of a request: ``[header, *array_buffers]`` (send with ``copy=False``).

    ``owner`` is the client's owner secret (:func:`new_owner_secret`): jobs it starts belong to it, and
    only requests carrying the same secret may see, fetch or cancel them.
    """
    if not isinstance(request_id, str) or not _ID_RE.fullmatch(request_id):
        raise ProtocolError(BAD_REQUEST, f"request id {request_id!r} is not allowed (1-128 of "
                                         "A-Z a-z 0-9 . _ : -)")
    if not isinstance(op, str) or not _OP_RE.fullmatch(op):
        raise ProtocolError(BAD_REQUEST, f"operation name {op!r} is not allowed")
    descriptors, frames = encode_arrays(arrays)
    header = {"v": PROTOCOL_VERSION, "id": request_id, "op": op, "args": dict(args or {}),
              "arrays": descriptors}
    if owner is not None:
        if not isinstance(owner, str) or not _OWNER_RE.fullmatch(owner):
            raise ProtocolError(BAD_REQUEST, "owner secret must be 22-128 characters of A-Z a-z 0-9 _ -")
        header["owner"] = owner
    return [dumps(header), *frames]


def request_id_of(header_frame: Any, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The request id in a header frame if it is readable and valid, else None (for error replies)."""
    try:
        request_id = decode_header(header_frame, limits).get("id")
    except ProtocolError:
        return None
    return request_id if isinstance(request_id, str) and _ID_RE.fullmatch(request_id) else None


def decode_request(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Request:
    """A validated :class:`Request` from received frames, or :class:`ProtocolError`."""
    if not frames:
        raise ProtocolError(BAD_MESSAGE, "empty message")
    header = decode_header(frames[0], limits)   # bounded by max_header_bytes
    request_id = header.get("id")
    known_id = request_id if isinstance(request_id, str) and _ID_RE.fullmatch(request_id) else None
    try:
        _check_total(frames, limits)
        _check_version(header)
        if known_id is None:
            raise ProtocolError(BAD_REQUEST, "header field 'id' must be a string of 1-128 characters "
                                             f"from A-Z a-z 0-9 . _ : -, got {_short(request_id)}")
        op = header.get("op")
        if not isinstance(op, str) or not _OP_RE.fullmatch(op):
            raise ProtocolError(BAD_REQUEST, "header field 'op' must be an operation name such as "
                                             f"\"hello\", got {_short(op)}")
        args = header.get("args", {})
        if not isinstance(args, dict):
            raise ProtocolError(BAD_REQUEST, f"header field 'args' must be an object, not "
                                             f"{_json_type(args)}")
        extra = sorted(set(header) - _HEADER_KEYS)
        if extra:
            raise ProtocolError(BAD_REQUEST, f"unknown header field(s) {extra}")
        owner = header.get("owner")
        if owner is not None and not (isinstance(owner, str) and _OWNER_RE.fullmatch(owner)):
            raise ProtocolError(BAD_REQUEST, "header field 'owner' must be a secret of 22-128 characters "
                                             "of A-Z a-z 0-9 _ -")
        arrays = decode_arrays(header.get("arrays", []), frames[1:], limits)
    except ProtocolError as exc:
        exc.request_id = known_id
        raise
    return Request(id=known_id, op=op, args=args, arrays=arrays, owner=owner)


# --------------------------------------------------------------------------------------------------
# Replies


def ok_reply(request_id: str | None, result: Mapping[str, Any] | None = None,
             arrays: Mapping[str, Any] | None = None, job: str | None = None) -> list[Any]:
    descriptors, frames = encode_arrays(arrays)
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "type": OK,
                              "result": dict(result or {}), "arrays": descriptors}
    if job is not None:
        header["job"] = job
    return [dumps(header), *frames]


def error_reply(request_id: str | None, code: str, message: str, job: str | None = None) -> list[Any]:
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "type": ERROR,
                              "error": {"code": code, "message": message}}
    if job is not None:
        header["job"] = job
    return [dumps(header)]


def progress_reply(request_id: str | None, job: str, stage: str, fraction: float | None = None,
                   info: Mapping[str, Any] | None = None) -> list[Any]:
    return [dumps({"v": PROTOCOL_VERSION, "id": request_id, "type": PROGRESS, "job": job,
                   "stage": stage, "fraction": fraction, "info": dict(info or {})})]


def cancelled_reply(request_id: str | None, message: str, job: str | None = None) -> list[Any]:
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": request_id, "type": CANCELLED,
                              "message": message}
    if job is not None:
        header["job"] = job
    return [dumps(header)]


def decode_reply(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Event:
    """A validated :class:`Event` from a reply's frames (client side), or :class:`ProtocolError`."""
    if not frames:
        raise ProtocolError(BAD_MESSAGE, "empty reply")
    _check_total(frames, limits)
    header = decode_header(frames[0], limits)
    _check_version(header)
    kind = header.get("type")
    if kind not in REPLY_TYPES:
        raise ProtocolError(BAD_REQUEST, f"reply type {_short(kind)} is not one of {REPLY_TYPES}")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(BAD_REQUEST, f"reply id must be a string or null, got {_short(request_id)}")
    job = header.get("job")
    if job is not None and not isinstance(job, str):
        raise ProtocolError(BAD_REQUEST, f"reply job must be a string, got {_short(job)}")
    event = Event(type=kind, id=request_id, job=job)
    if kind == OK:
        result = header.get("result", {})
        if not isinstance(result, dict):
            raise ProtocolError(BAD_REQUEST, "reply 'result' must be an object")
        event.result = result
        event.arrays = decode_arrays(header.get("arrays", []), frames[1:], limits)
        return event
    if len(frames) != 1:
        raise ProtocolError(BAD_ARRAY, f"a {kind} reply carries no arrays, got {len(frames) - 1} frames")
    if kind == ERROR:
        err = header.get("error")
        if not (isinstance(err, dict) and isinstance(err.get("code"), str)
                and isinstance(err.get("message"), str)):
            raise ProtocolError(BAD_REQUEST, "error reply needs error.code and error.message strings")
        event.code, event.message = err["code"], err["message"]
    elif kind == PROGRESS:
        stage, fraction, info = header.get("stage", ""), header.get("fraction"), header.get("info", {})
        if not isinstance(stage, str) or not isinstance(info, dict) or not (
                fraction is None or (isinstance(fraction, int | float) and not isinstance(fraction, bool))):
            raise ProtocolError(BAD_REQUEST, "progress reply needs stage (string), fraction (number or "
                                             "null) and info (object)")
        event.stage, event.fraction, event.info = stage, fraction, info
    else:
        message = header.get("message", "")
        event.message = message if isinstance(message, str) else str(message)
    return event


# --------------------------------------------------------------------------------------------------
# helpers


def _buffer(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", frame)   # zmq.Frame exposes its memory as .buffer
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _check_total(frames: Sequence[Any], limits: Limits) -> None:
    if len(frames) > limits.max_arrays + 1:
        raise ProtocolError(TOO_LARGE, f"message has {len(frames)} frames, over the limit of "
                                       f"{limits.max_arrays + 1} (a header and {limits.max_arrays} arrays)")
    total = sum(_buffer(f).nbytes for f in frames)
    if total > limits.max_message_bytes:
        raise ProtocolError(TOO_LARGE, f"message of {total} bytes exceeds the limit of "
                                       f"{limits.max_message_bytes} bytes")


def _check_version(header: dict[str, Any]) -> None:
    version = header.get("v")
    if version is None:
        raise ProtocolError(BAD_REQUEST, f"header field 'v' (protocol version, {PROTOCOL_VERSION}) "
                                         "is missing")
    if type(version) is not int or version != PROTOCOL_VERSION:   # 1.0 and true are not 1
        raise ProtocolError(BAD_VERSION, f"protocol version {_short(version)} is not supported; this "
                                         f"side speaks version {PROTOCOL_VERSION}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
