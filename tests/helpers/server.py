"""Helpers for the server and client tests: real servers (thread or subprocess), a resumable counting
job, and an event collector for a client.

``count`` is a real job operation added to the server's table for these tests: it exercises the job
machinery (progress, cancellation, device slots, checkpoints, resume after kill -9) without needing a
trained model, the way a training run would use it. Run this module as a script to get a server
subprocess with it: ``python -m tests.helpers.server --bind tcp://127.0.0.1:* --state DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avatex_core.atomic import write_json
from avatex_core.client import Client
from backend.errors import CancelledError
from backend.server import OPERATIONS, Operation, Server, ServerConfig
from backend.server.jobs import Context
from backend.server.schema import Arg
from tests.conftest import ROOT


def op_count(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    """Count to n, one step per ``delay_s``; checkpoint every ``every`` steps into ``out``; resumable."""
    n, delay, every = args["n"], args["delay_s"], args["every"]
    out = ctx.resolve_path(args["out"], must_exist=False) if args["out"] else None
    start, t0 = 0, time.time()
    if out is not None and ctx.resume and (out / "state.json").exists():
        start = json.loads((out / "state.json").read_text())["step"]
    for step in range(start, n):
        if ctx.should_stop():
            raise CancelledError(f"count stopped at step {step}")
        time.sleep(delay)
        ctx.progress("count", (step + 1) / n, {"step": step + 1})
        if out is not None and (step + 1) % every == 0:
            write_json(out / "state.json", {"step": step + 1, "sum": (step + 1) * step // 2})
    return ({"count": n, "resumed_from": start, "device": ctx.device, "t0": t0, "t1": time.time(),
             "resumed": ctx.resume},
            {"steps": np.arange(n, dtype=np.int64)})


COUNT = Operation("count", op_count, "test job: count with progress and checkpoints",
                  args={"n": Arg("int", default=10, minimum=0, maximum=100_000),
                        "delay_s": Arg("float", default=0.01, minimum=0.0, maximum=5.0),
                        "every": Arg("int", default=10, minimum=1),
                        "out": Arg("str"), "timeout_s": Arg("float", minimum=0.01)},
                  job=True, device=True, resumable=True)
LIGHT = Operation("light", op_count, "test job that needs no device slot",
                  args=COUNT.args, job=True, device=False)
TEST_OPERATIONS = {**OPERATIONS, "count": COUNT, "light": LIGHT}


@contextlib.contextmanager
def running_server(**config) -> Iterator[Server]:
    """A server on an ephemeral loopback port, in a thread, with the test operations."""
    config.setdefault("bind", "tcp://127.0.0.1:*")
    config.setdefault("shutdown_grace_s", 5.0)
    server = Server(ServerConfig(**config), operations=TEST_OPERATIONS)
    thread = server.start_thread()
    try:
        yield server
    finally:
        server.stop(force=True)
        thread.join(15)
        assert not thread.is_alive(), "server thread did not stop"


class ServerProcess:
    """A server in a subprocess (for kill -9 and signal tests); reads its endpoint from stdout."""

    def __init__(self, argv: list[str], env: dict | None = None, timeout: float = 60.0):
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()   # blocks until the server printed its endpoint (or died)
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read()}")
        self.endpoint = line.split("listening on ", 1)[1].split()[0]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


def follow_training(client, rid: str, until_step: int, timeout_s: float = 300.0) -> tuple[str | None, int]:
    """Follow a ``train.start`` request until its progress reaches ``until_step``: (job id, last step)."""
    job, step, deadline = None, 0, time.monotonic() + timeout_s
    while step < until_step:
        assert time.monotonic() < deadline, "training made no progress"
        for event in client.poll(0.05):
            assert event.type != "error", event.message
            if event.id == rid and event.job:
                job = event.job
            if event.id == rid and event.stage == "train":
                step = int(event.info["step"])
    return job, step


def finish_after_restart(args: tuple[str, ...], owner: str, job: str) -> tuple[dict, dict]:
    """Start ``avatex serve`` again and wait, as the job's owner, for the job it resumes by itself:
    (the job's result, its status)."""
    from avatex_core.client import Client

    server = spawn_avatex_serve(*args)
    try:
        with Client(server.endpoint, owner=owner) as client:
            result = client.call("job.result", {"job": job, "wait": True}, timeout=600).result
            return result, client.call("job.status", {"job": job}).result
    finally:
        server.close()


def spawn_test_server(*args: str) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "tests.helpers.server", *args])


def spawn_avatex_serve(*args: str) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "backend", "serve", *args])


class Events:
    """Collects a client's events per request id, so waiting on one request loses no other's."""

    def __init__(self, client: Client):
        self.client = client
        self.by_id: dict[str | None, list] = {}

    def _pump(self) -> None:
        for event in self.client.poll(0.05):
            self.by_id.setdefault(event.id, []).append(event)

    def wait(self, rid: str, timeout: float = 30.0) -> list:
        """Every event of request ``rid`` up to and including its final one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.by_id.get(rid, [])
            if events and events[-1].final:
                return events
            self._pump()
        raise AssertionError(f"no final event for {rid}; got {[e.type for e in self.by_id.get(rid, [])]}")

    def first(self, rid: str, stage: str | None = None, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.by_id.get(rid, []):
                if stage is None or event.stage == stage:
                    return event
            self._pump()
        raise AssertionError(f"no event {stage} for {rid}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="tcp://127.0.0.1:*")
    parser.add_argument("--state", type=Path)
    parser.add_argument("--root", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    server = Server(ServerConfig(bind=args.bind, state_dir=args.state, roots=args.root,
                                 devices=["cpu"]), operations=TEST_OPERATIONS)
    print(f"test server: listening on {server.start()}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
