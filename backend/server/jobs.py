"""Jobs: long operations run on worker threads, off the socket loop, one at a time per device.

A job is created by a request, streams progress to every client subscribed to it, can be cancelled
cooperatively (``ctx.should_stop()``), and outlives its client: results stay in memory for later
fetch by job id, within bounded retention. Job records (without arrays) are written atomically to the
state directory on every state change, so after a crash or ``kill -9`` a restarted server knows every
job: resumable ones (training) are queued again with ``resume=True``; the rest are marked failed with
"interrupted by a server restart".

Threads, not processes: the heavy work is in torch, which releases the GIL, and models stay cached in
one address space. The cost is that a handler can only be stopped cooperatively — every long handler
polls ``should_stop``.

Scheduling is GPU-aware: a job whose operation uses the compute device takes a slot on one of the
configured devices (``device_jobs`` slots each, 1 by default), so two GPU jobs never share a card
unless asked to; other jobs need only a worker.

This module runs jobs (:class:`Context`, :class:`JobManager`); what a job is and how its record is kept
is :mod:`.job_records`, re-exported here.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core import protocol
from avatex_core.progress import Progress
from backend.errors import AvatexError, CancelledError, InputError
from backend.server.job_records import (  # noqa: F401 - re-exported: callers import them from here
    CANCELLED,
    DONE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    QUEUED,
    RECORD_FORMAT,
    RUNNING,
    BusyError,
    Handler,
    Job,
    JobFailed,
    JobNotFound,
    JobStore,
    ShuttingDownError,
    Subscriber,
)

log = logging.getLogger("avatex.server")


class Context:
    """What a handler gets besides its arguments: progress, cancellation, device and paths.

    Inline operations (answered on the socket loop) get one without a job, plus ``server`` and
    ``request`` for the administrative operations, and ``owner``: the requester's identity, which
    every job operation checks (:meth:`JobManager.owned`).
    """

    owner: str | None = None

    def __init__(self, *, device: str, resolve_path: Callable[..., Path], job: Job | None = None,
                 manager: JobManager | None = None, server: Any = None,
                 request: Subscriber | None = None, peer_local: Callable[[], bool] | None = None):
        self.device = device
        self._resolve = resolve_path
        self.job = job
        self._manager = manager
        self.server = server
        self.request = request
        self._peer_local = peer_local
        self.reply_job: str | None = job.id if job else None
        # The Progress reaches this context through a weak reference: a bound method would make a
        # reference cycle, and a cycle keeps the request's arrays (up to the message limit each) alive
        # until the garbage collector runs, which defeats the server's byte budgets.
        me = weakref.ref(self)

        def publish(stage: str, fraction: float, info: dict) -> None:
            ctx = me()
            if ctx is not None:
                ctx._publish(stage, fraction, info)

        def stop() -> bool:
            ctx = me()
            return ctx is None or ctx.should_stop()

        self.job_progress = Progress(publish, should_stop=stop,
                                     interval_s=manager.progress_interval_s if manager else 0.0)
        """The job as one :class:`~avatex_core.progress.Progress` for the operation it runs: it clamps
        and throttles the reports and cancels on ``job.cancel`` or the job's timeout."""

    @property
    def job_id(self) -> str | None:
        return self.job.id if self.job else None

    @property
    def resume(self) -> bool:
        return bool(self.job and self.job.resume)

    def resolve_path(self, name: str, *, must_exist: bool = True, kind: str | None = None) -> Path:
        return self._resolve(name, must_exist=must_exist, kind=kind)

    def is_local(self) -> bool:
        return bool(self._peer_local and self._peer_local())

    def progress(self, stage: str, fraction: float, info: dict | None = None) -> None:
        """Report progress from the handler itself (``job_progress.report`` with ``info`` as a dict)."""
        self.job_progress.report(stage, fraction, **(info or {}))

    def _publish(self, stage: str, fraction: float, info: dict) -> None:
        """Record a report that passed ``job_progress``'s throttle on the job, and tell its subscribers."""
        if self.job is None or self._manager is None:
            return
        job = self.job
        now = time.monotonic()
        job.stage, job.fraction = str(stage), fraction
        try:
            job.info = protocol.jsonable(info or {})
        except TypeError:   # progress must never kill a job: show what cannot be sent as text
            job.info = {str(k): str(v) for k, v in dict(info or {}).items()}
        self._manager.notify(job, "progress")
        if self._manager.store and now - job.last_saved >= self._manager.save_interval_s:
            self._manager._save(job)   # so a restart shows how far the job got

    def should_stop(self) -> bool:
        job = self.job
        if job is None:
            return False
        if (job.timeout_s is not None and job.started is not None and not job.cancel_event.is_set()
                and time.time() - job.started > job.timeout_s):
            job.cancel_reason = "timeout"
            job.cancel_event.set()
        return job.cancel_event.is_set()

    def check_stop(self) -> None:
        """Raise :class:`CancelledError` when the job should stop."""
        if self.should_stop():
            raise CancelledError(f"job {self.job_id} stopped ({self.job.cancel_reason})")


class JobManager:
    """Queue, workers, device slots, retention and persistence of jobs.

    ``notify(job, kind)`` is called from worker threads (kind ``"progress"`` or ``"final"``); the server
    turns it into replies on its socket thread.
    """

    progress_interval_s = 0.05
    save_interval_s = 2.0

    def __init__(self, *, devices: list[str], resolve_path: Callable[..., Path],
                 notify: Callable[[Job, str], None], workers: int = 2, device_jobs: int = 1,
                 max_queue: int = 16, store: JobStore | None = None, retain_jobs: int = 64,
                 retain_s: float = 3600.0, retain_bytes: int = 2 << 30, max_input_bytes: int = 1 << 30):
        if not devices:
            raise InputError("at least one device is needed")
        self.devices = list(devices)
        self._resolve = resolve_path
        self.notify = notify
        self.store = store
        self.max_queue = max_queue
        self.max_input_bytes = max_input_bytes
        self.retain_jobs, self.retain_s, self.retain_bytes = retain_jobs, retain_s, retain_bytes
        self._free = {d: device_jobs for d in self.devices}
        self._jobs: dict[str, Job] = {}
        self._pending: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._worker, name=f"avatex-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, grace_s: float = 10.0, abort: Callable[[], bool] = lambda: False) -> None:
        """Stop taking work, ask running jobs to stop, wait up to ``grace_s`` for them (or ``abort()``).

        Queued and running resumable jobs stay resumable (state ``interrupted`` on disk); other queued
        jobs are cancelled.
        """
        with self._cv:
            self._stopping = True
            while self._pending:
                job = self._pending.popleft()
                if job.resumable:
                    job.state = INTERRUPTED
                    self._save(job)
                else:
                    self._finish(job, CANCELLED, error=None, message="the server is shutting down")
            for job in self._jobs.values():
                if job.state == RUNNING:
                    job.cancel_reason = job.cancel_reason or "shutdown"
                    job.cancel_event.set()
            self._cv.notify_all()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not abort() and any(t.is_alive() for t in self._threads):
            time.sleep(0.05)

    def restore(self, handlers: Callable[[str], Any], resume: bool = True) -> list[Job]:
        """Load records after a restart: requeue resumable unfinished jobs, fail the other ones."""
        if self.store is None:
            return []
        requeued = []
        for rec in self.store.load():
            op = handlers(rec["op"])
            state = rec.get("state")
            job = Job(id=rec["id"], op=rec["op"], args=rec.get("args") or {}, arrays={},
                      handler=op.handler if op else _missing_handler, uses_device=bool(op and op.device),
                      resumable=bool(rec.get("resumable")), timeout_s=rec.get("timeout_s"),
                      state=state, created=rec.get("created", time.time()), started=rec.get("started"),
                      finished=rec.get("finished"), attempts=int(rec.get("attempts", 0)),
                      stage=rec.get("stage", ""), fraction=rec.get("fraction"),
                      info=rec.get("info") or {}, result=rec.get("result"), error=rec.get("error"),
                      owner=rec.get("owner") if isinstance(rec.get("owner"), str) else None)
            if state == DONE and rec.get("result_arrays"):
                job.state, job.result = FAILED, None   # its arrays lived in the old process only
                job.error = {"code": "result_lost", "message": "the job finished, but its result arrays "
                             "were lost when the server restarted; run it again"}
                self._save(job)
            elif state not in FINISHED:
                if job.resumable and op is not None and resume:
                    job.state, job.stage, job.resume = QUEUED, QUEUED, True
                    self._pending.append(job)
                    requeued.append(job)
                elif job.resumable and op is not None:
                    job.state = INTERRUPTED
                else:
                    job.state, job.finished = FAILED, time.time()
                    job.error = {"code": "interrupted",
                                 "message": "the job was interrupted by a server restart"}
                self._save(job)
            self._jobs[job.id] = job
        with self._cv:
            self._cv.notify_all()
        return requeued

    # -- requests --------------------------------------------------------------------------------

    def submit(self, op: str, args: dict, arrays: dict, handler: Handler, *, subscriber: Subscriber | None,
               uses_device: bool, resumable: bool, timeout_s: float | None = None,
               owner: str | None = None) -> Job:
        with self._cv:
            if self._stopping:
                raise ShuttingDownError("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise BusyError(f"the server is busy: {len(self._pending)} jobs are waiting (the queue "
                                f"holds at most {self.max_queue}); try again later")
            # Input arrays live until their job ends: bound their bytes, not only the job count. One job
            # alone may exceed the budget (it already passed the message size limit).
            held = sum(j.input_bytes for j in self._jobs.values() if j.state in (QUEUED, RUNNING))
            size = sum(a.nbytes for a in arrays.values())
            if held and held + size > self.max_input_bytes:
                raise BusyError(f"the server is busy: the inputs of its waiting and running jobs hold "
                                f"{held >> 20} MiB, and {size >> 20} MiB more would pass the limit of "
                                f"{self.max_input_bytes >> 20} MiB (--max-queued-mb); try again later")
            job = Job(id="j" + secrets.token_hex(12), op=op, args=args, arrays=arrays, handler=handler,
                      uses_device=uses_device, resumable=resumable, timeout_s=timeout_s, owner=owner)
            if subscriber is not None:
                job.subscribers.add(subscriber)
            self._jobs[job.id] = job
            self._pending.append(job)
            self._save(job)
            self._cv.notify_all()
            return job

    def resubmit(self, job: Job, subscriber: Subscriber | None) -> Job:
        """Queue an interrupted/cancelled/failed resumable job again, resuming from its checkpoints."""
        with self._cv:
            if self._stopping:
                raise ShuttingDownError("the server is shutting down")
            if not job.resumable:
                raise InputError(f"job {job.id} ({job.op}) cannot be resumed")
            if job.state in (QUEUED, RUNNING):
                raise InputError(f"job {job.id} is already {job.state}")
            if job.state == DONE:
                raise InputError(f"job {job.id} already finished; start a new one to train further")
            if len(self._pending) >= self.max_queue:
                raise BusyError(f"the server is busy: the queue holds at most {self.max_queue} jobs")
            job.state, job.stage, job.fraction, job.resume = QUEUED, QUEUED, 0.0, True
            job.error, job.finished, job.cancel_reason = None, None, None
            job.cancel_event = threading.Event()
            if subscriber is not None:
                job.subscribers.add(subscriber)
            self._pending.append(job)
            self._save(job)
            self._cv.notify_all()
            return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise self._not_found(job_id)
        return job

    def _not_found(self, job_id: str) -> JobNotFound:
        return JobNotFound(f"no job {job_id!r} on this server (finished jobs are kept for "
                           f"{self.retain_s:.0f} s, at most {self.retain_jobs})")

    def jobs(self) -> list[Job]:
        with self._cv:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def owned(self, job_id: str, owner: str | None) -> Job:
        """The job if ``owner`` may see it; another's job is reported exactly like a missing one, so
        job ids cannot even be probed. Records written before jobs had owners belong to everyone."""
        job = self.get(job_id)
        if job.owner is not None and job.owner != owner:
            raise self._not_found(job_id)
        return job

    def jobs_of(self, owner: str | None) -> list[Job]:
        """The jobs ``owner`` may see, oldest first."""
        return [j for j in self.jobs() if j.owner is None or j.owner == owner]

    def cancel(self, job_id: str, reason: str = "cancelled by a client") -> Job:
        with self._cv:
            job = self.get(job_id)
            if job.state == QUEUED:
                self._pending.remove(job)
                self._finish(job, CANCELLED, error=None, message=reason)
            elif job.state == INTERRUPTED:
                self._finish(job, CANCELLED, error=None, message=reason)
            elif job.state == RUNNING:
                job.cancel_reason = job.cancel_reason or reason
                job.cancel_event.set()
            return job

    def subscribe(self, job: Job, subscriber: Subscriber) -> None:
        with self._cv:
            job.subscribers.add(subscriber)

    def unsubscribe_peer(self, routing_id: bytes) -> None:
        """Forget a client that is gone (its jobs keep running; results stay fetchable)."""
        with self._cv:
            for job in self._jobs.values():
                job.subscribers = {s for s in job.subscribers if s[0] != routing_id}

    def counts(self) -> dict[str, int]:
        with self._cv:
            out: dict[str, int] = {}
            for job in self._jobs.values():
                out[job.state] = out.get(job.state, 0) + 1
            return out

    def evict(self) -> None:
        """Drop finished jobs beyond the retention bounds (oldest first)."""
        with self._cv:
            done = sorted((j for j in self._jobs.values() if j.state in FINISHED),
                          key=lambda j: j.finished or 0.0)
            now = time.time()
            total = sum(j.result_bytes for j in done)
            for i, job in enumerate(done):
                keep = len(done) - i <= self.retain_jobs and now - (job.finished or now) <= self.retain_s \
                    and total <= self.retain_bytes
                if keep:
                    break
                total -= job.result_bytes
                del self._jobs[job.id]
                if self.store:
                    self.store.delete(job.id)

    # -- workers ---------------------------------------------------------------------------------

    def _pick(self) -> tuple[Job, str] | None:
        for job in self._pending:
            if not job.uses_device:
                self._pending.remove(job)
                return job, self.devices[0]
            for device, free in self._free.items():
                if free > 0:
                    self._free[device] -= 1
                    self._pending.remove(job)
                    return job, device
        return None

    def _worker(self) -> None:
        while True:
            with self._cv:
                picked = None
                while not self._stopping:
                    picked = self._pick()
                    if picked:
                        break
                    self._cv.wait()
                if picked is None:
                    return
                job, device = picked
                job.state, job.device, job.started = RUNNING, device, time.time()
                job.attempts += 1
                job.stage, job.fraction = "started", 0.0
                self._save(job)
            self.notify(job, "progress")
            try:
                self._run(job, device)
            finally:
                with self._cv:
                    if job.uses_device:
                        self._free[device] += 1
                    self._cv.notify_all()

    def _run(self, job: Job, device: str) -> None:
        ctx = Context(device=device, resolve_path=self._resolve, job=job, manager=self)
        try:
            ctx.check_stop()
            result, arrays = job.handler(job.args, job.arrays, ctx)
            if not isinstance(result, dict) or not isinstance(arrays, dict):
                raise TypeError(f"handler of {job.op} returned {type(result).__name__}, "
                                f"{type(arrays).__name__} instead of (dict, dict)")
            job.result = protocol.jsonable(result)
            job.result_arrays = {k: np.asarray(v) for k, v in arrays.items()}
            protocol.encode_arrays(job.result_arrays)   # a dtype that cannot be sent fails the job here
            state, error, message = DONE, None, ""
        except CancelledError as exc:
            reason = job.cancel_reason or "cancelled"
            if reason == "timeout":
                state, error = FAILED, {"code": "timeout",
                                        "message": f"{job.op} ran longer than its timeout_s "
                                                   f"({job.timeout_s} s) and was stopped"}
                message = ""
            elif reason == "shutdown" and job.resumable:
                state, error, message = INTERRUPTED, None, "interrupted by a server shutdown"
            else:
                state, error, message = CANCELLED, None, str(exc) or reason
        except (AvatexError, protocol.ProtocolError) as exc:
            state, error, message = FAILED, {"code": exc.code, "message": str(exc)}, ""
        except MemoryError:
            state, error, message = FAILED, {"code": "out_of_memory",
                                             "message": f"{job.op} ran out of memory"}, ""
        except Exception as exc:  # a bug: keep the traceback in the server log
            log.exception("job %s (%s) failed", job.id, job.op)
            state, error, message = FAILED, {"code": "internal",
                                             "message": f"{job.op} failed: {type(exc).__name__}: {exc}"}, ""
        with self._cv:
            self._finish(job, state, error=error, message=message)

    def _finish(self, job: Job, state: str, *, error: dict | None, message: str) -> None:
        job.state, job.error, job.arrays = state, error, {}
        job.finished = time.time()
        if state in (CANCELLED, INTERRUPTED):
            job.info = {**job.info, "message": message}
        if state == DONE:
            job.stage, job.fraction = "done", 1.0
        self._save(job)
        self.notify(job, "final")

    def _save(self, job: Job) -> None:
        if self.store is not None:
            try:
                self.store.save(job)
            except OSError as exc:   # a full disk must not take the server down
                log.error("cannot save job record %s: %s", job.id, exc)


def _missing_handler(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    raise InputError("this server no longer provides the job's operation")
