"""Fixtures for tests of the add-on from a source checkout under the bpy wheel: import them by name.

``addon`` registers the add-on once per module; ``empty_scene`` (autouse where imported) gives every test
a factory-fresh scene and an empty task list.
"""

from __future__ import annotations

import bpy
import pytest

import blender_addon
from blender_addon import runtime


@pytest.fixture(scope="module")
def addon():
    blender_addon.register()
    yield
    blender_addon.unregister()


@pytest.fixture(autouse=True)
def empty_scene(addon):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    runtime.RUNTIME.tasks.clear()
    runtime.RUNTIME.selection = None
    yield


def connect_runtime(monkeypatch, endpoint: str, timeout_s: float = 90.0) -> None:
    """Point the add-on's runtime at a real backend (a source checkout has no preferences entry) and
    tick its one timer until it is connected."""
    import time

    from blender_addon.settings import Settings

    prefs = Settings(address=endpoint, timeout_s=30.0)
    monkeypatch.setattr(runtime, "settings", lambda context=None: prefs)
    runtime.RUNTIME.connect(prefs, force=True)
    deadline = time.monotonic() + timeout_s
    while runtime.RUNTIME.connection_state != "connected":
        assert time.monotonic() < deadline, runtime.RUNTIME.status_line()
        runtime.RUNTIME.tick(0.05)
        time.sleep(0.01)


def finished_task(kind: str, timeout_s: float = 300.0):
    """Tick the runtime until the latest task of ``kind`` is no longer active; returns that task."""
    import time

    deadline = time.monotonic() + timeout_s
    while runtime.RUNTIME.latest(kind).active:
        assert time.monotonic() < deadline, runtime.RUNTIME.latest(kind).message
        runtime.RUNTIME.tick(0.05)
        time.sleep(0.01)
    return runtime.RUNTIME.latest(kind)
