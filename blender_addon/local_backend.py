"""Start and stop a backend on this machine: ``<python> -m backend serve ...`` as a child process.

Blender's own Python has no torch, so the backend runs in a Python the user points to (one where
avatex is installed, e.g. the project's ``.venv/bin/python``). The child is a separate process - not a
thread - writing to a log file; Blender only polls ``Popen.poll()`` from its timer, so nothing here
ever waits. No bpy in this module: the launcher is plain subprocess code, testable anywhere.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path


class LaunchError(Exception):
    """The backend cannot be started; the message says what to fix."""


def serve_command(python: str, address: str, roots: list[str], extra: str = "") -> list[str]:
    """The command line that starts a backend listening on ``address`` with data ``roots``."""
    cmd = [python, "-m", "backend", "serve", "--bind", address]
    for root in roots:
        cmd += ["--root", root]
    return cmd + shlex.split(extra)


class LocalBackend:
    """One backend child process and its log."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.command: list[str] = []
        self.started_at = 0.0
        self._log = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, python: str, address: str, roots: list[str], log_dir: Path, extra: str = "") -> None:
        if self.running:
            raise LaunchError(f"a local backend is already running (pid {self.proc.pid})")
        if not python:
            raise LaunchError("set the backend Python in the add-on preferences: a Python where avatex is "
                              "installed (for a source checkout, its .venv/bin/python)")
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise LaunchError(f"backend Python {python!r} is not an executable file")
        missing = [r for r in roots if not os.path.isdir(r)]
        if missing:
            raise LaunchError(f"data folder(s) {', '.join(missing)} do not exist")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "backend.log"
        self.command = serve_command(python, address, roots, extra)
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - stays open for the child's lifetime
        self._log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(self.command)}\n".encode())
        self._log.flush()
        kwargs: dict = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # Ctrl-C in Blender's terminal does not reach it
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)  # Blender's own paths must not leak into the backend's Python
        env.pop("PYTHONHOME", None)
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=env, **kwargs)
        except OSError as exc:
            self._close_log()
            raise LaunchError(f"could not start {python}: {exc}") from None
        self.started_at = time.monotonic()

    def stop(self, timeout: float = 0.0) -> None:
        """Ask the child to stop (SIGTERM / CTRL_BREAK); after ``timeout`` seconds, kill it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                if sys.platform == "win32":
                    self.proc.send_signal(signal.CTRL_BREAK_EVENT)
                else:
                    self.proc.terminate()
            except OSError:
                pass
            if timeout > 0:
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        if self.proc.poll() is not None:
            self._close_log()

    def exit_message(self) -> str | None:
        """When the child has exited: its exit code and the last log line (why it stopped)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"local backend exited with code {self.proc.returncode}: {self.last_log_line() or 'no output'}"

    def last_log_line(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(max(0, self.log_path.stat().st_size - 4096))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
