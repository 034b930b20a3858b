"""The add-on preferences' values as plain data, for the code that acts on them (the runtime, operators).

Kept apart from :mod:`.preferences`, the UI that edits them: the preferences draw the runtime's state,
and the runtime reads these values, so each side imports one module of the other's, never back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import bpy

ADDON_ID = __package__
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"


@dataclass
class Settings:
    """The preference values, readable even when the add-on runs without an enabled preferences entry
    (a source checkout whose ``register()`` was called directly, as in some tests)."""

    address: str = DEFAULT_ADDRESS
    server_key: str = ""
    client_key: str = ""
    python: str = ""
    roots: str = os.path.expanduser("~")
    extra_args: str = ""
    tick_budget_ms: int = 15
    timeout_s: float = 10.0


def settings(context=None) -> Settings:
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    prefs = getattr(addon, "preferences", None)
    if prefs is None:
        return Settings()
    return Settings(**{name: getattr(prefs, name) for name in Settings.__dataclass_fields__})
