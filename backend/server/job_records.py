"""Job records: the states, the :class:`Job` a request becomes, and its persistence (:class:`JobStore`).

What a job *is* and how it survives a restart, apart from how jobs are scheduled and run
(:mod:`.jobs`, which re-exports everything here).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avatex_core import protocol
from avatex_core.atomic import remove_stale_temporaries, write_json
from backend.errors import AvatexError, InputError

if TYPE_CHECKING:
    from backend.server.jobs import Context

log = logging.getLogger("avatex.server")

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED = frozenset((DONE, FAILED, CANCELLED))
RECORD_FORMAT = "avatex.job/1"

Handler = Callable[[dict, dict, "Context"], tuple[dict, dict]]
Subscriber = tuple[bytes, str]          # (ZeroMQ routing id, request id)


class BusyError(AvatexError):
    """The job queue is full."""

    code = "busy"


class ShuttingDownError(AvatexError):
    code = "shutting_down"


class JobFailed(AvatexError):
    """Raised by ``job.result`` for a failed job; carries the job's own error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(eq=False)
class Job:
    id: str
    op: str
    args: dict[str, Any]
    arrays: dict[str, np.ndarray]
    handler: Handler
    uses_device: bool = True
    resumable: bool = False
    timeout_s: float | None = None
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    resume: bool = False
    device: str | None = None
    stage: str = QUEUED
    fraction: float | None = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    result_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    error: dict[str, str] | None = None
    subscribers: set[Subscriber] = field(default_factory=set)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str | None = None
    last_saved: float = 0.0
    owner: str | None = None
    """Who may see and steer the job: ``key:<public key>`` or ``secret:<sha256 of the owner secret>``."""

    @property
    def input_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    @property
    def result_bytes(self) -> int:
        return sum(a.nbytes for a in self.result_arrays.values())

    def status(self) -> dict[str, Any]:
        """What ``job.status`` and ``job.list`` report (no arrays)."""
        return {"job": self.id, "op": self.op, "state": self.state, "stage": self.stage,
                "fraction": self.fraction, "info": self.info, "created": self.created,
                "started": self.started, "finished": self.finished, "attempts": self.attempts,
                "device": self.device, "resumable": self.resumable, "error": self.error,
                "result": self.result if self.state == DONE else None,
                "arrays": sorted(self.result_arrays)}

    def record(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, "id": self.id, "op": self.op, "args": self.args,
                "state": self.state, "resumable": self.resumable, "timeout_s": self.timeout_s,
                "created": self.created, "started": self.started, "finished": self.finished,
                "attempts": self.attempts, "stage": self.stage, "fraction": self.fraction,
                "info": self.info, "result": self.result, "error": self.error,
                "result_arrays": sorted(self.result_arrays), "owner": self.owner}


class JobStore:
    """Job records as one JSON file per job, written atomically (``state_dir/jobs/<id>.json``).

    One server per state folder: an exclusive lock on ``state_dir/lock`` (released by the kernel even
    on ``kill -9``) stops a second server from resuming the first one's jobs.
    """

    def __init__(self, state_dir: str | os.PathLike):
        self.folder = Path(state_dir) / "jobs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_folder(Path(state_dir))
        remove_stale_temporaries(self.folder)
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def save(self, job: Job) -> None:
        with self._lock:
            record = protocol.jsonable(job.record())
            write_json(self.folder / f"{job.id}.json", record, indent=None)
            job.last_saved = time.monotonic()

    def delete(self, job_id: str) -> None:
        with self._lock:
            (self.folder / f"{job_id}.json").unlink(missing_ok=True)

    def load(self) -> list[dict[str, Any]]:
        """Every readable record; unreadable ones (impossible unless edited by hand) are set aside."""
        import json

        records = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if record.get("format") != RECORD_FORMAT or record.get("id") != path.stem:
                    raise ValueError("not an avatex job record")
                records.append(record)
            except (OSError, ValueError) as exc:
                log.warning("job record %s is unreadable (%s); moved aside", path, exc)
                path.replace(path.with_suffix(".corrupt"))
        return records


class JobNotFound(AvatexError):
    code = "not_found"


def _lock_folder(folder: Path):
    try:
        import fcntl
    except ImportError:   # not POSIX: no lock, one server per state folder is then up to the user
        return None
    handle = open(folder / "lock", "a+")  # noqa: SIM115 (held open for the server's lifetime)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise InputError(f"another avatex server is using the state folder {folder}; stop it or pass "
                         "--state DIR") from None
    return handle
