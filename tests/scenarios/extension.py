"""Blender side of the installed-extension tests: install the built zip, run one scenario, print RESULT.

Started by ``tests/helpers/scenarios.py`` in the bpy-wheel Python, never imported by pytest::

    python extension.py ZIP ROOT MODULE:FUNCTION PARAMS.json

It installs ZIP with ``bpy.ops.extensions.package_install_files`` into the throw-away user folder named
by ``BLENDER_USER_RESOURCES``, makes the extension's bundled site-packages (pyzmq, avatex_core) the first
on ``sys.path``, then calls ``FUNCTION(ext, **params)`` from ``scenario_MODULE.py`` and prints its dict as
one ``RESULT {json}`` line. Backends are real ``avatex serve`` processes run with
``AVATEX_BACKEND_PYTHON`` (the project's environment) from ROOT.
"""

from __future__ import annotations

import atexit
import glob
import importlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bpy

PKG = "bl_ext.user_default.avatex"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Extension:
    """The installed add-on's modules and preferences, plus the backends a scenario started."""

    def __init__(self, zip_path: str, root: str):
        self.root = root
        self.backend_python = os.environ["AVATEX_BACKEND_PYTHON"]
        self.user_dir = os.environ["BLENDER_USER_RESOURCES"]
        bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                 enable_on_install=True)
        # The pyzmq and avatex_core wheels bundled in the extension, not the test environment's.
        self.ext_site = glob.glob(os.path.join(self.user_dir, "extensions", ".local", "lib", "python3.*",
                                               "site-packages"))[0]
        sys.path.insert(0, self.ext_site)
        self.addon = importlib.import_module(PKG)
        self.tasks = importlib.import_module(PKG + ".tasks")
        self.runtime = importlib.import_module(PKG + ".runtime")
        self.mi = importlib.import_module(PKG + ".mesh_import")
        self.audit = importlib.import_module(PKG + ".audit")
        self.operators = importlib.import_module(PKG + ".operators")
        self.prefs = bpy.context.preferences.addons[PKG].preferences
        self.servers: list[subprocess.Popen] = []
        # Also after a failed assertion: a server left running would keep this process's pipes open.
        atexit.register(self.kill_servers)

    def serve(self, *args: str, port: int | None = None) -> tuple[str, subprocess.Popen]:
        """A real `avatex serve` on a loopback port; returns its endpoint and process."""
        endpoint = f"tcp://127.0.0.1:{port or free_port()}"
        state = os.path.join(self.user_dir, "server-state")
        proc = subprocess.Popen([self.backend_python, "-m", "backend", "serve", "--bind", endpoint, "--state",
                                 state, "--no-resume", "--log-level", "warning", *args], cwd=self.root,
                                stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        assert "listening on" in line, line
        self.servers.append(proc)
        return endpoint, proc

    def use(self, endpoint: str, timeout_s: float = 10.0) -> None:
        """Point the preferences at ``endpoint`` and connect, as the Connect button does."""
        self.prefs.address = endpoint
        self.prefs.timeout_s = timeout_s
        bpy.ops.avatex.connect()
        self.tick_until(lambda: self.runtime.RUNTIME.connection_state == "connected", 90)

    def tick_until(self, done: Callable[[], bool], timeout: float, sleep: float = 0.005,
                   budget: float | None = None) -> list[float]:
        """Call the timer callback like Blender would (timers never fire under the wheel) until done();
        returns each tick's duration. ``budget=0`` runs one apply step per tick."""
        runtime = self.runtime.RUNTIME
        durations, deadline = [], time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; connection: {runtime.status_line()}; tasks: "
                                     f"{[(t.kind, t.state, t.stage, t.message) for t in runtime.tasks]}")
            t0 = time.perf_counter()
            if budget is None:
                self.runtime.tick()
            else:
                runtime.tick(budget)
            durations.append(time.perf_counter() - t0)
            time.sleep(sleep)
        return durations

    def stop_servers(self) -> None:
        for proc in self.servers:
            proc.terminate()
            proc.wait(30)

    def kill_servers(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def main(argv: list[str]) -> None:
    zip_path, root, target, params_path = argv
    module_name, function_name = target.split(":")
    params = json.loads(Path(params_path).read_text())
    ext = Extension(zip_path, root)
    scenario = getattr(importlib.import_module(f"scenario_{module_name}"), function_name)
    result = scenario(ext, **params)
    ext.stop_servers()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
