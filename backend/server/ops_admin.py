"""The server's administrative operations, answered on the socket loop: hello, ping, echo, the job
operations (status, list, result, cancel), training status and cancel, the checkpoint list, shutdown.

Handlers as in :mod:`.ops` (which holds the table): ``handler(args, arrays, ctx) -> (result, arrays)``;
all of them are quick, since every other client waits while they run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from backend.errors import AvatexError, CancelledError, InputError
from backend.server.jobs import DONE, FAILED, FINISHED, INTERRUPTED, Context, JobFailed

log = logging.getLogger("avatex.server")

# Returned by an inline handler whose reply will come later from a job (``job.result`` with wait).
DEFER = object()

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")
OFFICIAL_NAMES = ("net_G", "net_C")
# checkpoints.list runs on the socket loop: it stops after this long or this many directory entries.
LIST_BUDGET_S = 0.1
LIST_BUDGET_ENTRIES = 20_000


class NotReady(AvatexError):
    code = "not_ready"


def op_hello(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    if args["client"]:
        log.debug("hello from %s", args["client"])
    return ctx.server.describe(), {}


def op_ping(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    return {"time": time.time()}, {}


def op_echo(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    # The arrays go back as they came: views of the received frames, sent again without a copy.
    return {"data": args["data"], "arrays": {k: [a.dtype.name, list(a.shape)] for k, a in arrays.items()}}, \
        dict(arrays)


def op_job_status(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    job = ctx.server.jobs.owned(args["job"], ctx.owner)
    ctx.reply_job = job.id
    return job.status(), {}


def op_job_list(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    jobs = [j for j in ctx.server.jobs.jobs_of(ctx.owner) if args["op"] is None or j.op == args["op"]]
    return {"jobs": [j.status() for j in jobs]}, {}


def op_job_result(args: dict, arrays: dict, ctx: Context) -> Any:
    job = ctx.server.jobs.owned(args["job"], ctx.owner)
    ctx.reply_job = job.id
    if job.state == DONE:
        job.subscribers.discard(ctx.request)
        return job.result or {}, job.result_arrays
    if job.state == FAILED:
        error = job.error or {"code": "internal", "message": "failed"}
        raise JobFailed(error["code"], error["message"])
    if job.state in FINISHED or job.state == INTERRUPTED:
        raise CancelledError(str(job.info.get("message") or f"job {job.id} was {job.state}"))
    if args["wait"]:
        ctx.server.jobs.subscribe(job, ctx.request)
        return DEFER
    raise NotReady(f"job {job.id} is {job.state} (stage {job.stage!r}, "
                   f"{0 if job.fraction is None else round(100 * job.fraction)}%); ask again later or "
                   "pass wait=true")


def op_cancel(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    if (args["job"] is None) == (args["request"] is None):
        raise InputError("cancel: give exactly one of 'job' (a job id) or 'request' (the id of one of "
                         "your own requests)")
    job_id = args["job"]
    if job_id is None:
        job_id = ctx.server.job_of_request(ctx.request[0], args["request"], ctx.owner)
    job = ctx.server.jobs.cancel(ctx.server.jobs.owned(job_id, ctx.owner).id)
    ctx.reply_job = job.id
    return {"job": job.id, "state": job.state}, {}


def op_train_status(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    if args["job"] is not None:
        job = ctx.server.jobs.owned(args["job"], ctx.owner)
        ctx.reply_job = job.id
        return job.status(), {}
    return {"jobs": [j.status() for j in ctx.server.jobs.jobs_of(ctx.owner) if j.op == "train.start"]}, {}


def op_train_cancel(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    job = ctx.server.jobs.owned(args["job"], ctx.owner)
    if job.op != "train.start":
        raise InputError(f"job {job.id} is a {job.op} job, not training; use 'cancel'")
    job = ctx.server.jobs.cancel(job.id)
    ctx.reply_job = job.id
    return {"job": job.id, "state": job.state}, {}


def op_checkpoints_list(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    """Walk the roots for checkpoints, within a time and an entry budget: this runs on the socket loop,
    and a root with a hundred thousand files must not stall every other client (``truncated`` says
    the walk stopped early; name a ``dir`` to look deeper)."""
    policy = ctx.server.paths
    bases = [ctx.resolve_path(args["dir"], kind="dir")] if args["dir"] else list(policy.roots)
    found: list[dict[str, Any]] = []
    limit = args["limit"]
    deadline, visited, stopped = time.monotonic() + LIST_BUDGET_S, 0, False

    def spent() -> bool:
        return len(found) > limit or visited > LIST_BUDGET_ENTRIES or time.monotonic() > deadline

    for base in bases:
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            depth = len(Path(dirpath).relative_to(base).parts)
            dirnames[:] = [] if depth >= 8 else sorted(d for d in dirnames if not d.startswith("."))
            visited += len(filenames) + len(dirnames)
            for name in sorted(filenames):
                if stopped := spent():
                    break
                suffix = os.path.splitext(name)[1].lower()
                if suffix not in CHECKPOINT_SUFFIXES and name not in OFFICIAL_NAMES:
                    continue
                path = Path(os.path.realpath(os.path.join(dirpath, name)))
                if not policy._inside(path) or not path.is_file():
                    continue   # a symlink out of the roots
                stat = path.stat()
                found.append({"path": str(path), "relative": policy.relative(path), "size": stat.st_size,
                              "modified": stat.st_mtime,
                              "kind": "official" if name in OFFICIAL_NAMES else suffix.lstrip(".")})
            if stopped or (stopped := spent()):
                break
        if stopped:
            break
    truncated = stopped
    found = sorted(found[:limit], key=lambda c: -c["modified"])
    return {"checkpoints": found, "truncated": truncated}, {}


def op_shutdown(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    ctx.server.stop()
    return {"stopping": True, "running_jobs": ctx.server.jobs.counts().get("running", 0)}, {}
