"""Add-on preferences: where the backend is, how to reach it securely, and how to start one locally.

The UI only: the values are read through :mod:`.settings`, and the connection state drawn here comes
from :mod:`.runtime`. The property declarations look alike by bpy's shape (name, subtype, default,
description); each is its own setting.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

from .runtime import RUNTIME
from .settings import ADDON_ID, DEFAULT_ADDRESS


class AvatexPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    address: StringProperty(
        name="Backend address", default=DEFAULT_ADDRESS,
        description="ZeroMQ address of the avatex backend (tcp://HOST:PORT). A backend on another machine "
                    "needs CurveZMQ keys")
    server_key: StringProperty(
        name="Server public key", subtype="FILE_PATH", default="",
        description="The server's public key: its server.key file (from `avatex keys`), or the 40-character "
                    "Z85 key itself. Needed for a remote backend")
    client_key: StringProperty(
        name="Client key pair", subtype="FILE_PATH", default="",
        description="This client's .key_secret file (from `avatex keys --name blender`); give the matching "
                    ".key file to the server's authorized/ folder")
    python: StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="A Python where avatex is installed (e.g. the project's .venv/bin/python); used to start "
                    "a local backend")
    roots: StringProperty(
        name="Data folder", subtype="DIR_PATH", default=os.path.expanduser("~"),
        description="Folder the local backend may read and write (checkpoints, datasets, runs): paths sent "
                    "to a backend must lie under its data folders")
    extra_args: StringProperty(
        name="Extra arguments", default="",
        description="More `avatex serve` arguments for the local backend, e.g. --device cuda")
    tick_budget_ms: IntProperty(
        name="Time budget per tick (ms)", default=15, min=2, max=200,
        description="How long the add-on's timer may work per tick (network and applying results) before "
                    "giving Blender back control")
    timeout_s: FloatProperty(
        name="Connection timeout (s)", default=10.0, min=1.0, max=600.0,
        description="A backend silent this long is reported as lost (the add-on keeps reconnecting)")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "address")
        box = col.box()
        box.label(text="Remote backend (CurveZMQ)", icon="LOCKED")
        box.prop(self, "server_key")
        box.prop(self, "client_key")
        box = col.box()
        box.label(text="Local backend", icon="CONSOLE")
        box.prop(self, "python")
        box.prop(self, "roots")
        box.prop(self, "extra_args")
        row = box.row()
        if RUNTIME.local.running:
            row.operator("avatex.backend_stop", icon="CANCEL")
        else:
            row.operator("avatex.backend_start", icon="PLAY")
        row.operator("avatex.connect", icon="LINKED")
        col.separator()
        draw_status(col)
        col.prop(self, "tick_budget_ms")
        col.prop(self, "timeout_s")


def draw_status(layout) -> None:
    """One line: connected / connecting / lost, with the reason (shared by preferences and panels)."""
    text, icon = RUNTIME.status_line()
    layout.label(text=text, icon=icon)


def register() -> None:
    bpy.utils.register_class(AvatexPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(AvatexPreferences)
