"""The socket loop: one ROUTER socket, requests in, replies and job events out.

Only the loop thread touches the socket (ZeroMQ sockets are not thread-safe). Workers report progress
and results through a queue plus a wake-up socketpair polled beside the ROUTER, so a finished job is
sent at once without busy polling. Inline operations are answered on the loop; job operations are
queued to :class:`~backend.server.jobs.JobManager` and answered with a ``progress`` event carrying the
job id (stage ``queued``), later progress, and one final ``ok`` / ``error`` / ``cancelled``.

Robustness, in the order a message meets it:

* libzmq drops any frame over ``ZMQ_MAXMSGSIZE`` (and the connection that sent it); it applies per
  frame, and libzmq hands over a multipart message only once all of it has arrived, so a message of n
  frames may cost n × the limit before the loop sees it (``ZMQ_RCVHWM`` bounds how many such messages
  wait per connection); the loop then refuses it (``too_large``) and lets go of it at once;
* :func:`avatex_core.protocol.decode_request` checks the header, the version, every descriptor and the frame
  sizes; the operation's schema checks arguments and arrays; every failure is an ``error`` reply that
  names the problem, and the loop goes on;
* sends never block (``ROUTER_MANDATORY`` + ``NOBLOCK``): a vanished or stalled client costs nothing,
  and its job results stay fetchable with ``job.result``;
* replies are bounded in bytes, not only in count: every frame of 64 KiB or more is sent zero-copy with
  a tracker, and a :class:`ReplyLedger` counts the bytes libzmq still holds per client and in all. A
  reply that would pass either budget is not queued; a short ``slow_client`` error goes instead (small
  frames are copied by libzmq and bounded by ``ZMQ_SNDHWM`` messages per client);
* job inputs are bounded in bytes too (``busy`` before ``max_queued_bytes`` would be passed).

Jobs are owned (docs/protocol.md, Security): the identity is the CurveZMQ public key when keys are on
(the ZAP ``User-Id`` of the message), else the owner secret of the request header, hashed; a request
without one gets a fresh secret back in its ``queued`` event.

The configuration is :mod:`.config`, the reply byte budget :mod:`.ledger`; both are re-exported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import socket
import threading
import time
from typing import Any

import zmq

from avatex_core import protocol
from backend import __version__
from backend.errors import AvatexError, CancelledError, InputError, NotAvailableError
from backend.server import jobs as jobs_mod
from backend.server.config import ServerConfig
from backend.server.jobs import (
    CANCELLED,
    DONE,
    FAILED,
    INTERRUPTED,
    Context,
    Job,
    JobManager,
    JobNotFound,
    JobStore,
)
from backend.server.keys import load_server_keys
from backend.server.ledger import TRACK_BYTES, ReplyLedger
from backend.server.ops import DEFER, OPERATIONS, Forbidden, Operation
from backend.server.paths import PathPolicy
from backend.server.schema import validate_args, validate_arrays
from backend.server.security import check_bind, is_local_peer

log = logging.getLogger("avatex.server")


class Server:
    """An avatex server. ``start()`` binds; ``serve_forever()`` runs the loop until ``stop()``.

    ``operations`` defaults to :data:`backend.server.ops.OPERATIONS`; tests and embedders may pass a
    table with more operations.
    """

    def __init__(self, config: ServerConfig, operations: dict[str, Operation] | None = None,
                 context: zmq.Context | None = None):
        self.config = config
        self.operations = dict(OPERATIONS if operations is None else operations)
        # Refuse bad configurations before anything (context, threads, files) is created.
        self.paths = PathPolicy(config.roots)
        self._bind = check_bind(config.bind, have_keys=config.keys is not None)
        self._keys = load_server_keys(config.keys) if config.keys is not None else None
        self._store = JobStore(config.state_dir) if config.state_dir is not None else None
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._outbox: queue.SimpleQueue[tuple[Job, str]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._force = False
        self._sock: zmq.Socket | None = None
        self._auth = None
        self.endpoint: str | None = None
        self.jobs = JobManager(devices=config.devices, resolve_path=self.paths.resolve, notify=self._notify,
                               workers=config.workers, device_jobs=config.device_jobs,
                               max_queue=config.max_queue, store=self._store, retain_jobs=config.retain_jobs,
                               retain_s=config.retain_s, retain_bytes=config.retain_bytes,
                               max_input_bytes=config.max_queued_bytes)
        self.replies = ReplyLedger(config.reply_budget_bytes, config.reply_budget_total_bytes)
        self.started_at = time.time()
        self.stats = {"requests": 0, "errors": 0, "dropped_replies": 0}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> str:
        """Bind the socket, start authentication and workers, resume jobs; returns the endpoint."""
        if self._sock is not None:
            return self.endpoint or ""
        sock = self._ctx.socket(zmq.ROUTER)
        limits = self.config.limits
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)   # unroutable sends raise instead of vanishing
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)    # a reconnecting client keeps its replies
        sock.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
        sock.setsockopt(zmq.HEARTBEAT_IVL, self.config.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self.config.heartbeat_timeout_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, self.config.heartbeat_timeout_ms)
        sock.setsockopt(zmq.HANDSHAKE_IVL, self.config.handshake_timeout_ms)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.SNDHWM, self.config.send_hwm)   # replies queued per client before drops
        sock.setsockopt(zmq.RCVHWM, self.config.recv_hwm)
        if self._bind.ipv6:
            sock.setsockopt(zmq.IPV6, 1)
        if self._keys is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("avatex.server.auth"))
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self._keys.authorized_dir))
            sock.curve_secretkey = self._keys.secret
            sock.curve_publickey = self._keys.public
            sock.curve_server = True
        endpoint = self.config.bind
        if self._bind.transport == "tcp" and self._bind.host == "localhost":
            endpoint = endpoint.replace("//localhost:", "//127.0.0.1:", 1)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._release()
            raise InputError(f"cannot bind {self.config.bind}: {exc.strerror} (is another server "
                             "using it?)") from None
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        for job in self.jobs.restore(self.operations.get, resume=self.config.resume_jobs):
            log.info("resuming job %s (%s), attempt %d", job.id, job.op, job.attempts + 1)
        self.jobs.start()
        log.info("avatex server %s listening on %s (%s; devices %s)", __version__, self.endpoint,
                 "CurveZMQ" if self._keys else "loopback only", ", ".join(self.config.devices))
        return self.endpoint

    def stop(self, force: bool = False) -> None:
        """Ask the loop to finish (thread- and signal-safe). ``force`` skips waiting for jobs."""
        self._force = self._force or force or self._stop.is_set()
        self._stop.set()
        self._wake()

    def start_thread(self) -> threading.Thread:
        """Bind, then run the loop on a daemon thread (tests, embedding)."""
        self.start()
        thread = threading.Thread(target=self.serve_forever, name="avatex-server", daemon=True)
        thread.start()
        return thread

    def serve_forever(self) -> None:
        self.start()
        assert self._sock is not None
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        next_housekeeping = time.monotonic() + 5.0
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(500))
                if self._sock in ready:
                    self._drain_socket()
                if self._wake_r.fileno() in ready:
                    self._drain_wake()
                self._drain_outbox()
                if time.monotonic() >= next_housekeeping:
                    self.jobs.evict()
                    next_housekeeping = time.monotonic() + 5.0
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("stopping: %s", "now" if self._force else
                 f"waiting up to {self.config.shutdown_grace_s:.0f} s for running jobs")
        self.jobs.stop(grace_s=0.0 if self._force else self.config.shutdown_grace_s,
                       abort=lambda: self._force)   # a second Ctrl-C ends the wait
        self._drain_outbox()
        if self._sock is not None:
            self._sock.close(linger=0 if self._force else 1000)
            self._sock = None
        self._release()
        log.info("stopped")

    def _release(self) -> None:
        """Authenticator, wake-up sockets, state-folder lock and our own context."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._wake_r.close()
        self._wake_w.close()
        if self._store is not None:
            self._store.close()
        if self._own_context:
            self._ctx.term()

    # -- information for operations ----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        limits = self.config.limits
        return {"protocol": protocol.PROTOCOL_VERSION, "server": f"avatex {__version__}",
                "devices": list(self.config.devices), "device": self.config.devices[0],
                "device_jobs": self.config.device_jobs, "workers": self.config.workers,
                "max_queue": self.config.max_queue, "curve": self._keys is not None,
                "roots": [str(r) for r in self.paths.roots], "dtypes": list(protocol.DTYPES),
                "limits": {"max_message_bytes": limits.max_message_bytes,
                           "max_header_bytes": limits.max_header_bytes,
                           "max_arrays": limits.max_arrays, "max_ndim": limits.max_ndim,
                           "max_queued_bytes": self.config.max_queued_bytes,
                           "reply_budget_bytes": self.config.reply_budget_bytes},
                "heartbeat_ms": self.config.heartbeat_ivl_ms, "uptime_s": time.time() - self.started_at,
                "operations": {name: op.describe() for name, op in self.operations.items()},
                "jobs": self.jobs.counts()}

    def job_of_request(self, routing_id: bytes, request_id: str, owner: str | None = None) -> str:
        for job in self.jobs.jobs_of(owner):
            if (routing_id, request_id) in job.subscribers:
                return job.id
        raise JobNotFound(f"no unfinished job started by your request {request_id!r}")

    # -- receiving ---------------------------------------------------------------------------------

    def _drain_socket(self, budget: int = 256) -> None:
        assert self._sock is not None
        for _ in range(budget):
            if not self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
            first = self._sock.recv(zmq.NOBLOCK, copy=False)
            parts = [first]
            extra = 0
            more = first.more
            while more:   # the whole multipart is already here: libzmq delivers it atomically
                frame = self._sock.recv(copy=False)
                more = frame.more
                if len(parts) <= self.config.limits.max_arrays + 2:
                    parts.append(frame)
                else:
                    extra += 1   # let go at once (libzmq held the whole message until now)
            identity, message = parts[0].bytes, parts[1:]
            self.stats["requests"] += 1
            if extra:
                rid = protocol.request_id_of(message[0], self.config.limits)
                self._send(identity, protocol.error_reply(
                    rid, protocol.TOO_LARGE, f"message has {len(parts) - 1 + extra} frames, over the "
                    f"limit of {self.config.limits.max_arrays + 1}"))
                continue
            self._handle(identity, message)

    def _handle(self, identity: bytes, message: list[zmq.Frame]) -> None:
        try:
            request = protocol.decode_request(message, self.config.limits)
        except protocol.ProtocolError as exc:
            self.stats["errors"] += 1
            self._send(identity, protocol.error_reply(exc.request_id, exc.code, str(exc)))
            return
        op = self.operations.get(request.op)
        if op is None:
            self.stats["errors"] += 1
            self._send(identity, protocol.error_reply(
                request.id, "unknown_op", f"unknown operation {request.op!r}; this server knows: "
                f"{', '.join(sorted(self.operations))}"))
            return
        subscriber = (identity, request.id)
        ctx = Context(device=self.config.devices[0], resolve_path=self.paths.resolve, server=self,
                      request=subscriber,
                      peer_local=lambda: is_local_peer(self._bind, _peer_address(message)))
        ctx.owner = self._owner_of(message, request)
        try:
            missing = op.missing()
            if missing:
                raise NotAvailableError(f"{op.name} is not available on this server: the module "
                                        f"{missing} is not installed")
            args = validate_args(op.name, op.args, request.args)
            arrays = request.arrays if op.arrays is None else validate_arrays(op.name, op.arrays,
                                                                              request.arrays)
            if op.local_only and not ctx.is_local():
                raise Forbidden(f"{op.name} is only accepted from this machine (loopback or ipc "
                                f"clients); your address is {_peer_address(message) or 'unknown'}")
            if op.job:
                self._submit(op, args, arrays, ctx, subscriber)
                return
            out = op.handler(args, arrays, ctx)
            if out is DEFER:
                return
            result, out_arrays = out
            self._send(identity, protocol.ok_reply(request.id, result, out_arrays, job=ctx.reply_job))
        except CancelledError as exc:
            self._send(identity, protocol.cancelled_reply(request.id, str(exc), job=ctx.reply_job))
        except (AvatexError, protocol.ProtocolError) as exc:
            self.stats["errors"] += 1
            self._send(identity, protocol.error_reply(request.id, exc.code, str(exc), job=ctx.reply_job))
        except Exception as exc:  # a bug in an inline handler: report it, keep serving
            log.exception("operation %s failed", op.name)
            self.stats["errors"] += 1
            self._send(identity, protocol.error_reply(request.id, "internal",
                                                      f"{op.name} failed: {type(exc).__name__}: {exc}"))

    def _owner_of(self, message: list[Any], request: protocol.Request) -> str | None:
        """The requester's identity: its CurveZMQ key (proven by the handshake) when keys are on, else
        its owner secret, hashed so job records on disk never hold a usable secret."""
        if self._keys is not None:
            try:
                user = message[0].get("User-Id")
            except (AttributeError, zmq.ZMQError, IndexError):
                user = None
            return f"key:{user}" if user else None
        if request.owner is None:
            return None
        return "secret:" + hashlib.sha256(request.owner.encode("ascii")).hexdigest()

    def _submit(self, op: Operation, args: dict, arrays: dict, ctx: Context, subscriber) -> None:
        info: dict[str, Any] = {}
        if ctx.owner is None and self._keys is None:
            # A client that sent no owner secret gets one: it must send it to see this job again.
            secret = protocol.new_owner_secret()
            ctx.owner = "secret:" + hashlib.sha256(secret.encode("ascii")).hexdigest()
            info["owner"] = secret
        prepared = op.prepare(args, arrays, ctx) if op.prepare else args
        if isinstance(prepared, Job):
            job = prepared
        else:
            job = self.jobs.submit(op.name, prepared, arrays, op.handler, subscriber=subscriber,
                                   uses_device=op.device, resumable=op.resumable,
                                   timeout_s=prepared.get("timeout_s"), owner=ctx.owner)
        info["queued"] = self.jobs.counts().get(jobs_mod.QUEUED, 0)
        self._send(subscriber[0], protocol.progress_reply(subscriber[1], job.id, jobs_mod.QUEUED, 0.0, info))

    # -- sending -------------------------------------------------------------------------------------

    def _notify(self, job: Job, kind: str) -> None:
        """Called by worker threads; the loop sends the event."""
        self._outbox.put((job, kind))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):   # already awake (buffer full), or closing
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _drain_outbox(self) -> None:
        if self._outbox.empty():
            return
        events = []
        while True:
            try:
                events.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        sent_progress: set[str] = set()
        for job, kind in events:
            try:
                self._send_event(job, kind, sent_progress)
            except Exception:   # never let one event take the loop down
                log.exception("could not send a %s event of job %s", kind, job.id)

    def _send_event(self, job: Job, kind: str, sent_progress: set[str]) -> None:
        """Progress (coalesced: the job's latest state, once per batch) or the final reply."""
        if kind == "progress":
            if job.state not in (jobs_mod.QUEUED, jobs_mod.RUNNING) or job.id in sent_progress:
                return
            sent_progress.add(job.id)
            for identity, rid in list(job.subscribers):
                self._send(identity, protocol.progress_reply(rid, job.id, job.stage, job.fraction, job.info),
                           droppable=True)
            return
        try:
            for identity, rid in list(job.subscribers):
                self._send(identity, self._final_reply(job, rid))
        finally:
            job.subscribers.clear()

    def _final_reply(self, job: Job, rid: str) -> list[Any]:
        if job.state == DONE:
            return protocol.ok_reply(rid, job.result, job.result_arrays, job=job.id)
        if job.state == FAILED:
            error = job.error or {"code": "internal", "message": "failed"}
            return protocol.error_reply(rid, error["code"], error["message"], job=job.id)
        assert job.state in (CANCELLED, INTERRUPTED)
        return protocol.cancelled_reply(rid, str(job.info.get("message") or job.state), job=job.id)

    def _send(self, identity: bytes, frames: list[Any], droppable: bool = False) -> bool:
        assert self._sock is not None
        sizes = [memoryview(getattr(f, "buffer", f)).nbytes for f in frames]
        tracked = sum(n for n in sizes if n >= TRACK_BYTES)
        if tracked and not self.replies.admits(identity, tracked):
            self.stats["dropped_replies"] += 1
            log.warning("client %s is not reading: a reply of %d bytes was dropped (%d bytes still unsent "
                        "to it)", identity.hex(), tracked, self.replies.held(identity))
            if droppable:
                return False
            rid = protocol.request_id_of(frames[0], self.config.limits)
            frames = protocol.error_reply(rid, "slow_client", f"a reply of {tracked} bytes was dropped: "
                                          f"{self.replies.held(identity)} bytes of earlier replies to this "
                                          "client are still unread (the budget is "
                                          f"{self.config.reply_budget_bytes} bytes); read your replies, "
                                          "then fetch job results again with job.result")
            sizes, tracked = [len(frames[0])], 0
        trackers: list[zmq.MessageTracker] = []
        parts: list[Any] = [identity]
        for frame, size in zip(frames, sizes, strict=True):
            if size >= TRACK_BYTES:
                frame = zmq.Frame(frame, copy=False, track=True)
                trackers.append(frame.tracker)
            parts.append(frame)
        try:
            self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.replies.add(identity, trackers, tracked)
            return True
        except zmq.Again:      # the client is not reading (HWM): drop; results stay fetchable
            self.stats["dropped_replies"] += 1
            if not droppable:
                log.warning("client %s is not reading; a reply was dropped", identity.hex())
            return False
        except zmq.ZMQError as exc:
            self.stats["dropped_replies"] += 1
            if exc.errno == zmq.EHOSTUNREACH:
                self.jobs.unsubscribe_peer(identity)   # gone; its jobs go on
            else:
                log.warning("cannot send to client %s: %s", identity.hex(), exc)
            return False


def _peer_address(message: list[Any]) -> str | None:
    try:
        return message[0].get("Peer-Address")
    except (AttributeError, zmq.ZMQError, IndexError):
        return None
