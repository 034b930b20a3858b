"""The add-on's runtime: its connection, jobs and local backend, and the one timer that drives them all.

Everything runs on Blender's main thread, in :func:`tick` - a plain function registered with
``bpy.app.timers`` (and called directly by the tests, since timers never fire under the ``bpy`` wheel).
One tick:

1. polls the ZeroMQ client without waiting (libzmq does the socket I/O in its own native threads, so
   a large reply is already assembled when the tick receives it, as zero-copy array views);
2. hands each event to its :class:`~.tasks.Task` (progress, result, error, cancellation);
3. runs result-applying steps (mesh building, attributes) until the tick's time budget is spent, at
   least one step per tick - so one tick costs at most the budget plus one bounded step, however big
   the result is (:class:`~.mesh_import.StagedImport` keeps steps to tens of milliseconds per million
   vertices);
4. advances the dataset render (:class:`~.dataset_job.DatasetJob`, reading its workers' progress);
5. watches the local backend process and the edit-mode selection, and redraws the sidebar.

No Python threads anywhere (Blender does not support them) and no second timer. Runtime state lives
here, not in RNA properties: progress and connection state must not be saved into .blend files.
"""

from __future__ import annotations

import os
import time
from typing import Any

import bpy

from avatex_core import protocol

from . import audit
from .dataset_job import DatasetJob
from .local_backend import LocalBackend
from .settings import Settings, settings
from .tasks import Task, TrainTask

IDLE_INTERVAL_S = 0.5
ACTIVE_INTERVAL_S = 0.05
BUSY_INTERVAL_S = 0.0  # results waiting to be applied: come back as soon as Blender has redrawn
SELECTION_EVERY_S = 0.2


class Runtime:
    """The add-on's connection, tasks, dataset render and local backend (one per Blender session)."""

    def __init__(self) -> None:
        self.client = None
        self._client_key: tuple | None = None
        self.tasks: list[Task] = []
        self.local = LocalBackend()
        self.dataset = DatasetJob()
        self.connection_message = ""
        self.connection_state = "disconnected"
        self.notice = ""
        self.selection: dict[str, Any] | None = None
        self._selection_key: tuple | None = None
        self._selection_at = 0.0
        self.last_tick_s = 0.0

    # -- connection ---------------------------------------------------------------------------------
    def connect(self, prefs: Settings | None = None, *, force: bool = False):
        """The client for the configured address (created on first use or when settings changed)."""
        from avatex_core.client import Client, CurveKeys

        prefs = prefs or settings()
        key = (prefs.address, prefs.server_key, prefs.client_key, prefs.timeout_s)
        if self.client is not None and self._client_key == key and not force:
            return self.client
        self.disconnect()
        address = prefs.address.strip()
        if not address:
            raise ConnectionError("set the backend address in the add-on preferences")
        curve = None
        if prefs.server_key or prefs.client_key:
            curve = _curve_keys(prefs, CurveKeys)
        elif not _is_local_address(address):
            raise ConnectionError(f"{address} is not on this machine: a remote backend needs CurveZMQ keys "
                                  "(set the server public key and the client key pair in the preferences)")
        if not _is_local_address(address) and not bpy.app.online_access:
            raise ConnectionError("Blender's online access is disabled (Preferences > System > Network); "
                                  "allow it to reach a backend on another machine")
        self.client = Client(address, curve=curve, timeout_s=prefs.timeout_s,
                             heartbeat_s=min(1.0, prefs.timeout_s / 3))
        self._client_key = key
        self.connection_state, self.connection_message = "connecting", f"connecting to {address}…"
        return self.client

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.close()
            for task in self.tasks:
                if task.active and not task.applying:
                    task.on_error("disconnected", "the connection was closed (settings changed or a new "
                                                  "connection); the job may still be running on the backend")
        self.client = None
        self._client_key = None
        self.connection_state, self.connection_message = "disconnected", ""

    def status_line(self) -> tuple[str, str]:
        """(text, icon) describing the connection for the panels."""
        if self.local.running and self.connection_state != "connected":
            return (f"Local backend starting (pid {self.local.proc.pid})…", "SORTTIME")
        if self.client is None:
            return ("Not connected", "UNLINKED")
        state = self.connection_state
        if state == "connected":
            return (self.connection_message or "Connected", "LINKED")
        if state in ("lost", "reconnecting"):
            return (self.connection_message or "Connection lost; reconnecting…", "ERROR")
        return (self.connection_message or "Connecting…", "SORTTIME")

    # -- tasks --------------------------------------------------------------------------------------
    def submit(self, task: Task, op: str, args: dict | None = None, arrays: dict | None = None) -> Task:
        client = self.connect()
        task.request_id = client.submit(op, {k: v for k, v in (args or {}).items() if v is not None}, arrays)
        self.tasks = [t for t in self.tasks if t.active or (time.monotonic() - (t.finished or 0)) < 600][-20:]
        self.tasks.append(task)
        return task

    def cancel(self, task: Task) -> None:
        if task.applying:
            task.discard()
            task._steps = None
            task.on_cancelled("cancelled while importing; nothing was added")
        elif task.active and self.client is not None and task.request_id is not None:
            task.stage = "cancelling"
            self.client.cancel(task.request_id)

    def latest(self, kind: str) -> Task | None:
        for task in reversed(self.tasks):
            if task.kind == kind:
                return task
        return None

    # -- the timer ----------------------------------------------------------------------------------
    def tick(self, budget_s: float | None = None) -> float:
        start = time.perf_counter()
        prefs = settings()
        budget = prefs.tick_budget_ms / 1000.0 if budget_s is None else budget_s
        deadline = start + budget
        changed = self._poll_network()
        changed |= self.dataset.poll()
        changed |= self._watch_local_backend()
        stepped = False
        for task in self.tasks:
            while task.applying and (not stepped or time.perf_counter() < deadline):
                task.step()
                stepped = True
                if task.paused:
                    break
                changed = True
        now = time.monotonic()
        for task in self.tasks:
            if isinstance(task, TrainTask) and task.refresh_curve(now):
                changed = True
        if time.perf_counter() < deadline:
            changed |= self._watch_selection(now)
        if changed:
            _redraw()
        self.last_tick_s = time.perf_counter() - start
        if any(t.applying and not t.paused for t in self.tasks):
            return BUSY_INTERVAL_S
        if any(t.active for t in self.tasks) or self.local.running or self.dataset.running:
            return ACTIVE_INTERVAL_S
        return IDLE_INTERVAL_S

    def _poll_network(self) -> bool:
        if self.client is None:
            return False
        events = self.client.poll(budget_s=0.0)
        by_id = {t.request_id: t for t in self.tasks if t.active and t.request_id}
        for event in events:
            if event.type == "connection":
                self.connection_state = event.info.get("state", self.connection_state)
                self.connection_message = event.message
                continue
            task = by_id.get(event.id)
            if task is None:
                if event.type == protocol.ERROR and event.id is None:
                    self.notice = f"backend: {event.message}"
                continue
            if event.type == protocol.PROGRESS:
                task.on_progress(event)
            elif event.type == protocol.OK:
                task.on_ok(event)
            elif event.type == protocol.ERROR:
                task.on_error(event.code or "error", event.message)
            elif event.type == protocol.CANCELLED:
                task.on_cancelled(event.message)
        state = getattr(self.client, "state", None)
        if state is not None and state != self.connection_state and state in ("connected", "lost",
                                                                                "reconnecting"):
            self.connection_state = state
            self.connection_message = getattr(self.client, "state_message", self.connection_message)
        return bool(events)

    def _watch_local_backend(self) -> bool:
        message = self.local.exit_message()
        if message and message != self.notice and self.local.proc is not None:
            self.notice = message
            self.local.stop()
            self.local.proc = None
            return True
        return False

    def _watch_selection(self, now: float) -> bool:
        """Mean error of the selected vertices, recomputed when the edit-mode selection changes."""
        obj = bpy.context.view_layer.objects.active if bpy.context.view_layer else None
        if obj is None or obj.type != "MESH" or obj.mode != "EDIT" or "patd" not in obj.data.attributes:
            if self.selection is not None:
                self.selection, self._selection_key = None, None
                return True
            return False
        if now - self._selection_at < SELECTION_EVERY_S:
            return False
        key = _selection_key(obj)
        if key == self._selection_key:
            return False
        self._selection_at = now
        self._selection_key = key
        self.selection = dict(audit.selection_stats(obj) or {}, object=obj.name)
        return True

    def shutdown(self) -> None:
        """Unregister: cancel nothing on the server (jobs may outlive Blender), close the socket, stop
        the dataset render and the local backend this session started."""
        self.disconnect()
        self.dataset.shutdown()
        self.local.stop(timeout=3.0)


def _selection_key(obj: bpy.types.Object) -> tuple:
    import bmesh

    bm = bmesh.from_edit_mesh(obj.data)
    active = bm.select_history.active
    return (obj.name, obj.data.total_vert_sel, getattr(active, "index", -1), len(bm.select_history))


def _is_local_address(address: str) -> bool:
    if address.startswith(("ipc://", "inproc://")):
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _curve_keys(prefs: Settings, curve_keys_cls):
    server, client = bpy.path.abspath(prefs.server_key), bpy.path.abspath(prefs.client_key)
    if not client or not os.path.isfile(client):
        raise ConnectionError(f"client key pair {client!r} is not a file: make one with "
                              "`avatex keys --name blender` and choose its .key_secret file")
    if server and os.path.isfile(server):
        return curve_keys_cls.from_files(server, client)
    text = prefs.server_key.strip()
    if len(text) == 40:
        from zmq.auth import load_certificate

        public, secret = load_certificate(client)
        if secret is None:
            raise ConnectionError(f"{client} holds no secret key (choose the .key_secret file)")
        return curve_keys_cls(text.encode("ascii"), public, secret)
    raise ConnectionError(f"server public key {prefs.server_key!r} is neither a key file nor a 40-character "
                          "Z85 key")


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES", "IMAGE_EDITOR"):
                area.tag_redraw()


RUNTIME = Runtime()


def tick() -> float:
    """The ``bpy.app.timers`` callback: one bounded tick of :class:`Runtime`; returns the next delay.

    An exception escaping a timer callback unregisters it for good, so a bug here is reported in the
    panels and the console, and the timer keeps running.
    """
    try:
        return RUNTIME.tick()
    except Exception as exc:  # keep the add-on alive; the traceback goes to the console
        import traceback

        traceback.print_exc()
        RUNTIME.notice = f"internal error in the avatex timer: {exc}"
        return IDLE_INTERVAL_S


def register() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=IDLE_INTERVAL_S, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    RUNTIME.shutdown()
