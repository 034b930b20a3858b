"""The add-on's client of the avatex backend: non-blocking, for Blender timers; blocking for scripts.

Blender must never freeze and must not run Python threads (docs/addon.md), so this client
does all its work inside :meth:`Client.poll`, which a ``bpy.app.timers`` callback calls with a small
time budget: it never waits longer than that budget. libzmq does the socket I/O in its own native
threads, so nothing here needs a Python thread. Scripts and tests use :meth:`Client.call`.

Pure pyzmq + numpy + the shared :mod:`protocol` module: no bpy, no torch.

Typical timer use::

    client = Client("tcp://127.0.0.1:5555")
    rid = client.submit("reconstruct", {"checkpoint": "ckpt.safetensors"}, {"image": rgba})
    def tick():
        for event in client.poll(budget_s=0.004):
            if event.type == "progress": ...        # event.stage, event.fraction, event.info
            elif event.type == "ok": ...            # event.result, event.arrays (zero-copy views)
            elif event.type in ("error", "cancelled"): ...   # event.code, event.message
            elif event.type == "connection": ...    # event.message, event.info["state"]
        return 0.05

Connection handling: a ``ping`` goes out whenever the backend has been silent for ``heartbeat_s``
(plus ZMTP heartbeats on the socket). No reply for ``timeout_s`` → state ``lost`` and a ``connection``
event with a clear message; the client then reconnects (state ``reconnecting``) and, once the backend
answers, re-attaches every unfinished job request to its job (``job.result`` with ``wait``), so a
restarted Blender timer or a network blip does not lose a running reconstruction or training.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import parse_monitor_message

from . import protocol

Event = protocol.Event

CONNECTING, CONNECTED, LOST, RECONNECTING, CLOSED = (
    "connecting", "connected", "lost", "reconnecting", "closed")

_MONITOR_EVENTS = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                   | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                   | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class BackendError(Exception):
    """An ``error`` or ``cancelled`` reply (or a client-side timeout) surfaced by :meth:`Client.call`."""

    def __init__(self, code: str, message: str, job: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.job = job


@dataclass(frozen=True)
class CurveKeys:
    """CurveZMQ keys of a client: the server's public key and this client's key pair (Z85 bytes)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_key_file: str | os.PathLike,
                   client_secret_file: str | os.PathLike) -> CurveKeys:
        """Read ``server.key`` (the server's public certificate) and ``NAME.key_secret``."""
        from zmq.auth import load_certificate

        server_public, _ = load_certificate(server_key_file)
        public, secret = load_certificate(client_secret_file)
        if secret is None:
            raise ValueError(f"{client_secret_file} holds no secret key (use NAME.key_secret)")
        return cls(server_public, public, secret)


@dataclass(frozen=True)
class Result:
    """What :meth:`Client.call` returns: the ``ok`` reply's result, arrays (read-only) and job id."""

    result: dict[str, Any]
    arrays: dict[str, np.ndarray]
    job: str | None


@dataclass
class _Pending:
    op: str
    sent: float
    deadline: float | None
    job: str | None = None
    reattached: bool = False


class Client:
    """A DEALER connection to an avatex server. One client per thread (ZeroMQ sockets are not shared).

    Args:
        endpoint: server address, e.g. ``tcp://127.0.0.1:5555`` or ``ipc:///tmp/avatex.sock``.
        curve: keys for a CurveZMQ server (remote backends); None for loopback/ipc.
        heartbeat_s: ping the backend after this much silence.
        timeout_s: silence after which the connection counts as lost.
        client_name: sent in ``hello`` (the first message on every connection), for the server's log.
        owner: this client's owner secret, sent in every request header: the jobs it starts belong to
            it, and only requests with the same secret may list, watch, fetch or cancel them (routing
            ids and connections prove nothing). A fresh random one by default; pass a saved
            :attr:`owner` to take over the jobs of an earlier session. Servers with CurveZMQ keys
            identify clients by their public key instead.
        zero_copy_send: hand array buffers to libzmq without copying. pyzmq then starts a helper
            thread to release the buffers, which Blender forbids, so the default copies each outgoing
            array once (memcpy speed); scripts and benchmarks may turn it on. Received arrays are
            always zero-copy views of the received frames.
    """

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5555", *, curve: CurveKeys | None = None,
                 context: zmq.Context | None = None, heartbeat_s: float = 1.0, timeout_s: float = 5.0,
                 zero_copy_send: bool = False, limits: protocol.Limits = protocol.DEFAULT_LIMITS,
                 client_name: str = "avatex-client", owner: str | None = None):
        self.endpoint = endpoint
        self.owner = owner if owner is not None else protocol.new_owner_secret()
        protocol.encode_request("check", "ping", owner=self.owner)   # a malformed secret fails here
        self.curve = curve
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.zero_copy_send = zero_copy_send
        self.limits = limits
        self.client_name = client_name
        self.server_info: dict[str, Any] = {}     # the last ``hello`` result (versions, devices, ops)
        self._ctx = context or zmq.Context.instance()
        self._routing_id = b"c" + os.urandom(15)   # stable across reconnects: the server keeps routing
        self._prefix = os.urandom(3).hex()
        self._counter = 0
        self._pending: dict[str, _Pending] = {}
        self._internal: set[str] = set()           # pings and cancels: replies consumed here
        self._backlog: deque[Event] = deque()
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self.state = CONNECTING
        self.state_message = f"connecting to {endpoint}"
        self._last_rx = time.monotonic()
        self._ping: tuple[str, float] | None = None
        self._lost_at = 0.0
        self._lost_code: str | None = None
        self._attempts = 0
        self._open()
        self._send_ping(time.monotonic())

    # -- public API -------------------------------------------------------------------------------

    def submit(self, op: str, args: Mapping[str, Any] | None = None,
               arrays: Mapping[str, Any] | None = None, *, timeout_s: float | None = None) -> str:
        """Send a request without waiting; returns its request id. Raises BackendError if unsendable."""
        if self.state == CLOSED:
            raise BackendError("closed", "the client is closed")
        rid = self._next_id()
        frames = protocol.encode_request(rid, op, args, arrays, owner=self.owner)
        size = sum(memoryview(f).nbytes for f in frames)
        limit = self.server_info.get("limits", {}).get("max_message_bytes", self.limits.max_message_bytes)
        if size > limit:   # the server would drop the connection for it: say why instead
            raise BackendError("too_large", f"{op}: the request is {size} bytes, over the backend's limit "
                                            f"of {limit} bytes (avatex serve --max-message-mb)")
        self._send(frames)
        now = time.monotonic()
        deadline = None if timeout_s is None else now + timeout_s
        self._pending[rid] = _Pending(op=op, sent=now, deadline=deadline)
        return rid

    def poll(self, budget_s: float = 0.005, max_events: int = 1000) -> list[Event]:
        """Events that arrived, waiting at most ``budget_s`` seconds for the first one (0 = don't wait).

        Returns as soon as something arrived and nothing more is waiting. Also runs the heartbeat,
        connection-state changes and per-request timeouts. Never blocks longer than the budget: socket
        reads are non-blocking and array frames are not copied.
        """
        events: list[Event] = []
        while self._backlog and len(events) < max_events:
            events.append(self._backlog.popleft())
        self._collect(events, budget_s, max_events)
        return events

    def cancel(self, request_id: str) -> None:
        """Ask the server to cancel the job a request started; its final event says how it ended."""
        pending = self._pending.get(request_id)
        if pending is None:
            return
        self._send_internal("cancel", {"job": pending.job} if pending.job else {"request": request_id})

    def call(self, op: str, args: Mapping[str, Any] | None = None, arrays: Mapping[str, Any] | None = None,
             timeout: float = 60.0, on_progress: Callable[[Event], None] | None = None) -> Result:
        """Send a request and wait for its final reply (scripts and tests; not for Blender's UI thread).

        Raises :class:`BackendError` for error/cancelled replies and on timeout (the job is cancelled).
        Events of other requests stay queued for :meth:`poll`.
        """
        rid = self.submit(op, args, arrays)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.cancel(rid)
                self._pending.pop(rid, None)
                raise BackendError("timeout", f"{op} got no final reply within {timeout:g} s "
                                              f"(connection {self.state})")
            mine: Event | None = None
            events: list[Event] = []
            self._collect(events, min(remaining, 0.05), 1000)
            for event in events:
                if event.id != rid:
                    self._backlog.append(event)
                elif event.type == protocol.PROGRESS:
                    if on_progress is not None:
                        on_progress(event)
                else:
                    mine = event
            if mine is None:
                continue
            if mine.type == protocol.OK:
                return Result(mine.result, mine.arrays, mine.job)
            if mine.type == protocol.CANCELLED:
                raise BackendError("cancelled", mine.message, mine.job)
            raise BackendError(mine.code or "error", mine.message, mine.job)

    @property
    def pending(self) -> list[str]:
        """Request ids still waiting for their final event."""
        return list(self._pending)

    def job_of(self, request_id: str) -> str | None:
        """The server's job id for a request, once its first progress event arrived."""
        pending = self._pending.get(request_id)
        return pending.job if pending else None

    def close(self) -> None:
        """Close at once (LINGER=0): nothing is left queued to block Blender's exit."""
        self._close_sockets()
        self.state = CLOSED
        self.state_message = "closed"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sockets ----------------------------------------------------------------------------------

    def _open(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self._routing_id)
        sock.setsockopt(zmq.RECONNECT_IVL, 250)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(100, int(self.heartbeat_s * 1000)))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(200, int(self.timeout_s * 1000)))
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        if "[" in self.endpoint:
            sock.setsockopt(zmq.IPV6, 1)
        if self.curve is not None:
            sock.curve_serverkey = self.curve.server_public
            sock.curve_publickey = self.curve.public
            sock.curve_secretkey = self.curve.secret
        self._monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        sock.connect(self.endpoint)
        self._sock = sock

    def _close_sockets(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
            self._sock.close(linger=0)
            self._sock = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    def _send(self, frames: list[Any]) -> None:
        assert self._sock is not None
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=not self.zero_copy_send)
        except zmq.Again:
            news: list[Event] = []
            self._read_monitor(news)   # a refused handshake explains why nothing can be sent
            self._backlog.extend(news)
            raise BackendError("not_connected", f"cannot send to {self.endpoint}: too many requests are "
                                                f"waiting for the backend ({self.state_message})") from None

    def _next_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}-{self._counter}"

    # -- receiving --------------------------------------------------------------------------------

    def _collect(self, events: list[Event], budget_s: float, max_events: int) -> None:
        if self._sock is None:
            return
        self._read(events, time.monotonic() + max(0.0, budget_s), max_events)
        self._housekeeping(events, time.monotonic())

    def _read(self, events: list[Event], deadline: float, max_events: int) -> None:
        """Take what has arrived; wait (up to ``deadline``) only while nothing has."""
        assert self._sock is not None
        received = 0
        while len(events) < max_events:
            self._read_monitor(events)
            if self._sock is None:
                return
            if not self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:   # cheaper than catching Again
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if received or wait_ms <= 0 or not self._sock.poll(wait_ms, zmq.POLLIN):
                    return
                continue
            received += 1
            self._on_frames(self._sock.recv_multipart(zmq.NOBLOCK, copy=False), events)

    def _on_frames(self, frames: list[Any], events: list[Event]) -> None:
        self._last_rx = time.monotonic()
        try:
            event = protocol.decode_reply(frames, self.limits)
        except protocol.ProtocolError as exc:
            rid = protocol.request_id_of(frames[0], self.limits) if frames else None
            pending = self._pending.pop(rid, None) if rid is not None else None
            if pending is not None:   # e.g. a result over this client's size limit: end the request
                events.append(Event(type=protocol.ERROR, id=rid, job=pending.job, code=exc.code,
                                    message=f"the reply to {pending.op} was refused: {exc}"))
            else:
                events.append(Event(type="connection", id=None, code=exc.code,
                                    message=f"the backend sent a malformed reply ({exc}); ignored",
                                    info={"state": self.state}))
            return
        if self.state != CONNECTED:
            self._set_connected(events)
        if event.id is not None and self._ping is not None and event.id == self._ping[0]:
            if event.type == protocol.OK and "protocol" in event.result:
                self.server_info = event.result
            self._ping = None
            return
        if event.id in self._internal:
            if event.final:
                self._internal.discard(event.id)
            return
        pending = self._pending.get(event.id) if event.id is not None else None
        if pending is None:
            if event.id is None and event.type == protocol.ERROR:
                events.append(event)   # the server could not read one of our requests at all
            return                     # late events of a request we gave up on
        if event.job and not pending.job:
            pending.job = event.job
        if pending.reattached and event.type == protocol.ERROR and event.code == "not_found":
            event = Event(type=protocol.ERROR, id=event.id, job=pending.job, code="job_lost",
                          message=f"the backend was restarted and no longer has job {pending.job} "
                                  f"({pending.op}); run it again")
        if event.final:
            del self._pending[event.id]
        events.append(event)

    def _read_monitor(self, events: list[Event]) -> None:
        while self._monitor is not None and self._monitor.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            msg = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            kind = msg["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                continue   # the first reply (to a ping) marks us connected
            if kind == zmq.EVENT_DISCONNECTED and self.state == CONNECTED:
                self._set_lost(events, f"the backend at {self.endpoint} closed the connection")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._set_lost(events, f"the backend at {self.endpoint} refused this client's key "
                                       "(its public key is not in the server's authorized/ folder)",
                               code="auth_failed")
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self._set_lost(events, f"the security handshake with {self.endpoint} failed (wrong "
                                       "server key, or the server expects CurveZMQ keys)",
                               code="handshake_failed")

    # -- connection state ---------------------------------------------------------------------------

    def _housekeeping(self, events: list[Event], now: float) -> None:
        if self._ping is not None and now - self._ping[1] > self.timeout_s:
            if now - self._last_rx > self.timeout_s:
                silent = now - self._last_rx
                hint = " (is `avatex serve` running?)" if self.state == CONNECTING else ""
                self._set_lost(events, f"no reply from the backend at {self.endpoint} for {silent:.0f} s"
                               + hint)
            self._ping = None   # lost, or answered by other traffic: the next ping starts afresh
        if self.state == LOST and now - self._lost_at >= min(5.0, 0.5 * 2 ** self._attempts):
            self._reconnect(events)
        if self._ping is None and now - self._last_rx >= self.heartbeat_s:
            self._send_ping(now)
        for rid, pending in list(self._pending.items()):
            if pending.deadline is not None and now > pending.deadline:
                del self._pending[rid]
                events.append(Event(type=protocol.ERROR, id=rid, job=pending.job, code="timeout",
                                    message=f"{pending.op} got no final reply within its timeout"))
                if pending.job:
                    self._send_internal("cancel", {"job": pending.job})

    def _send_ping(self, now: float) -> None:
        """``ping``, or ``hello`` until the current connection has answered one (fills server_info)."""
        rid = self._next_id()
        op, args = ("ping", None) if self.state == CONNECTED and self.server_info else \
            ("hello", {"client": self.client_name[:200]})
        try:
            self._send(protocol.encode_request(rid, op, args, owner=self.owner))
        except BackendError:
            return
        self._ping = (rid, now)

    def _send_internal(self, op: str, args: dict[str, Any]) -> None:
        rid = self._next_id()
        try:
            self._send(protocol.encode_request(rid, op, args, owner=self.owner))
            self._internal.add(rid)
        except BackendError:
            pass

    def _set_lost(self, events: list[Event], message: str, code: str = "connection_lost") -> None:
        """Enter LOST (a fresh socket follows shortly); tell the caller once per kind of failure."""
        if self.state in (LOST, CLOSED):
            return
        if self.state == RECONNECTING:
            self._attempts += 1
        self.state, self._lost_at = LOST, time.monotonic()
        if code != self._lost_code:
            self.state_message, self._lost_code = message + "; reconnecting…", code
            events.append(Event(type="connection", id=None, code=code, message=self.state_message,
                                info={"state": LOST}))

    def _reconnect(self, events: list[Event]) -> None:
        """A fresh socket (same routing id): drops whatever was queued for the dead connection."""
        self._close_sockets()
        self._fail_unacknowledged(events, before=time.monotonic())
        self._open()
        self.state = RECONNECTING
        self.server_info = {}
        self._internal.clear()
        self._send_ping(time.monotonic())

    def _fail_unacknowledged(self, events: list[Event], before: float) -> None:
        """Requests without a job id sent before ``before`` may never have arrived: say so."""
        for rid, pending in list(self._pending.items()):
            if pending.job is None and pending.sent < before:
                del self._pending[rid]
                events.append(Event(type=protocol.ERROR, id=rid, code="connection_lost",
                                    message=f"{pending.op} was interrupted by a lost connection "
                                            "before the backend acknowledged it; send it again"))

    def _set_connected(self, events: list[Event]) -> None:
        was = self.state
        self.state, self.state_message = CONNECTED, f"connected to {self.endpoint}"
        events.append(Event(type="connection", id=None, message=self.state_message,
                            info={"state": CONNECTED, "reconnected": was != CONNECTING}))
        self._lost_code, self._attempts = None, 0
        if was == CONNECTING:
            return
        self._fail_unacknowledged(events, before=self._lost_at)
        for rid, pending in self._pending.items():
            if pending.job is not None:    # follow the job again: its events may have gone missing
                pending.reattached = True
                try:
                    self._send(protocol.encode_request(rid, "job.result", {"job": pending.job, "wait": True},
                                                      owner=self.owner))
                except BackendError:
                    break
