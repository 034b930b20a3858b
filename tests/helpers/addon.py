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
