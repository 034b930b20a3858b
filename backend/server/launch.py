"""Start ``avatex serve`` as a child process on a free loopback port, for scripts and the demo.

The server prints ``listening on ENDPOINT`` as its first line; this reads it, so callers never race the
bind or guess a port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend.errors import AvatexError


class LocalServer:
    """``with LocalServer(roots=[...]) as server: Client(server.endpoint)``; stopped on exit."""

    def __init__(self, *, roots: list[str | Path], state: str | Path | None = None,
                 log: str | Path | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None):
        argv = [sys.executable, "-m", "backend", "serve", "--bind", "tcp://127.0.0.1:*"]
        for root in roots:
            argv += ["--root", str(root)]
        if state is not None:
            argv += ["--state", str(state)]
        argv += list(extra_args or [])
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.log = Path(log) if log is not None else None
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def __enter__(self) -> LocalServer:
        # The server's log goes to a file: an unread stderr pipe would fill up and block the server.
        log = open(self.log, "ab") if self.log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                         env=self.env)
        finally:
            if self.log is not None:
                log.close()
        line = self.proc.stdout.readline()  # the server's first line, or EOF if it died
        if "listening on " not in line:
            self.proc.kill()
            self.proc.wait(30)
            where = f"; its log is {self.log}" if self.log is not None else ""
            raise AvatexError(f"the backend did not start: {line.strip() or 'it exited'}{where}")
        self.endpoint = line.split("listening on ", 1)[1].split()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the server finishes or checkpoints its jobs), then SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
