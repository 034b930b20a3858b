"""Backend jobs seen from Blender, and the one timer that drives them without freezing the UI.

Everything runs on Blender's main thread, in :func:`tick` - a plain function registered with
``bpy.app.timers`` (and called directly by the tests, since timers never fire under the ``bpy`` wheel).
One tick:

1. polls the ZeroMQ client without waiting (libzmq does the socket I/O in its own native threads, so
   a large reply is already assembled when the tick receives it, as zero-copy array views);
2. hands each event to its :class:`Task` (progress, result, error, cancellation);
3. runs result-applying steps (mesh building, attributes) until the tick's time budget is spent, at
   least one step per tick - so one tick costs at most the budget plus one bounded step, however big
   the result is (:class:`~.mesh_import.StagedImport` keeps steps to tens of milliseconds per million
   vertices);
4. watches the local backend process and the edit-mode selection, and redraws the sidebar.

No Python threads anywhere (Blender does not support them, blender.md §4). Runtime state lives here,
not in RNA properties: progress and connection state must not be saved into .blend files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import bpy
import numpy as np

from avatex_core import canonical, protocol

from . import audit, loss_plot, materials
from .local_backend import LocalBackend
from .mesh_import import COLOR_ATTRIBUTE, StagedImport
from .preferences import Settings, settings

LOSS_IMAGE = "avatex loss"
IDLE_INTERVAL_S = 0.5
ACTIVE_INTERVAL_S = 0.05
BUSY_INTERVAL_S = 0.0  # results waiting to be applied: come back as soon as Blender has redrawn
LOSS_IMAGE_EVERY_S = 0.5
SELECTION_EVERY_S = 0.2

WAITING, RUNNING, APPLYING, DONE, FAILED, CANCELLED = (
    "waiting", "running", "applying", "done", "failed", "cancelled")
ENDED = (DONE, FAILED, CANCELLED)


class Task:
    """One backend request and what Blender does with its result.

    Subclasses implement :meth:`apply` (a generator of bounded steps run by the timer once the ``ok``
    reply is in) and may override :meth:`on_progress`.
    """

    kind = "task"

    def __init__(self, title: str):
        self.title = title
        self.request_id: str | None = None
        self.job: str | None = None
        self.state = WAITING
        self.stage = "sent"
        self.fraction: float | None = None
        self.message = ""
        self.info: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.started = time.monotonic()
        self.finished: float | None = None
        self.paused = False  # applying, but waiting for the user (e.g. to leave Edit Mode)
        self._steps: Iterator[str] | None = None

    @property
    def active(self) -> bool:
        return self.state not in ENDED

    @property
    def applying(self) -> bool:
        return self.state == APPLYING

    def on_progress(self, event: protocol.Event) -> None:
        self.state = RUNNING
        self.job = event.job or self.job
        self.stage = event.stage or self.stage
        self.fraction = event.fraction
        self.info = dict(event.info or {})

    def on_ok(self, event: protocol.Event) -> None:
        self.job = event.job or self.job
        self.result = dict(event.result)
        self.state, self.stage, self.fraction = APPLYING, "importing", 0.0
        self._steps = self.apply(event.result, event.arrays)

    def on_error(self, code: str, message: str) -> None:
        self._end(FAILED, message if code in ("bad_input", "bad_args", "bad_path") else f"{code}: {message}")

    def on_cancelled(self, message: str) -> None:
        self._end(CANCELLED, message or "cancelled")

    def step(self) -> bool:
        """One bounded apply step; False when there is nothing more to do."""
        if self._steps is None:
            return False
        try:
            self.stage = next(self._steps)
            self.paused = self.stage.startswith("waiting")
        except StopIteration:
            self._steps = None
            self._end(DONE, self.done_message())
            return False
        except Exception as exc:  # a deleted object, a mesh that Blender refuses: report, don't crash
            self._steps = None
            self.discard()
            self._end(FAILED, f"could not apply the result: {exc}")
            return False
        return True

    def apply(self, result: dict, arrays: dict[str, np.ndarray]) -> Iterator[str]:
        yield "done"

    def done_message(self) -> str:
        return "done"

    def discard(self) -> None:
        """Undo a half-applied result (cancelled while applying)."""

    def _end(self, state: str, message: str) -> None:
        self.state, self.message, self.finished = state, message, time.monotonic()
        if state == DONE:
            self.fraction = 1.0


class ReconstructTask(Task):
    """Reconstruct: the mesh arrives, is built in steps, and lands at the 3D cursor, upright."""

    kind = "reconstruct"

    def __init__(self, name: str, location: tuple[float, float, float], meta: dict[str, str]):
        super().__init__(f"Reconstruct {name}")
        self.name = name
        self.location = location
        self.meta = meta
        self.importer: StagedImport | None = None
        self.object_name: str | None = None

    def apply(self, result: dict, arrays: dict[str, np.ndarray]) -> Iterator[str]:
        for key in ("vertices", "faces", "colors"):
            if key not in arrays:
                raise ValueError(f"the backend's reply has no {key!r} array")
        self.importer = StagedImport(self.name, arrays["vertices"], arrays["faces"], arrays["colors"],
                                     finish=self._place)
        while self.importer.step():
            self.fraction = self.importer.fraction
            yield f"importing: {self.importer.stage}"

    def _place(self, obj: bpy.types.Object) -> None:
        place_canonical(obj, self.location)
        materials.assign_single_material(
            obj, materials.attribute_material(materials.COLORS_MATERIAL, COLOR_ATTRIBUTE))
        for key, value in self.meta.items():
            obj[key] = value
        self.object_name = obj.name
        view_layer = bpy.context.view_layer
        for other in view_layer.objects.selected:
            other.select_set(False)
        obj.select_set(True)
        view_layer.objects.active = obj
        scene_settings = getattr(bpy.context.scene, "avatex", None)
        if scene_settings is not None:
            scene_settings.audit_object = obj

    def discard(self) -> None:
        if self.importer is not None:
            self.importer.discard()

    def done_message(self) -> str:
        obj = bpy.data.objects.get(self.object_name or "")
        if obj is None:
            return "done"
        return f"{obj.name}: {len(obj.data.vertices):,} vertices, {len(obj.data.polygons):,} triangles"


FLAVOUR_LABELS = {"vertices": "GT vertices, the paper's PATD", "dense": "dense GT surface samples"}
"""What an audit's PATD was measured against, by the result's ``flavour`` (docs/metrics.md)."""


class AuditTask(Task):
    """Audit: per-vertex PATD/PIPATD land on the reconstruction as attributes and a heatmap."""

    kind = "audit"

    def __init__(self, object_name: str, vertex_count: int, metric: str):
        super().__init__(f"Audit {object_name}")
        self.object_name = object_name
        self.vertex_count = vertex_count
        self.metric = metric

    def apply(self, result: dict, arrays: dict[str, np.ndarray]) -> Iterator[str]:
        while True:
            obj = bpy.data.objects.get(self.object_name)
            if obj is None or obj.type != "MESH":
                raise ValueError(f"object {self.object_name!r} no longer exists")
            if obj.mode != "EDIT":
                break
            yield "waiting: leave Edit Mode to see the result"
        if len(obj.data.vertices) != self.vertex_count:
            raise ValueError(f"{self.object_name!r} changed while it was audited "
                             f"({self.vertex_count} -> {len(obj.data.vertices)} vertices); run it again")
        yield from audit.apply_steps(obj, arrays["patd"], arrays["pipatd"], result, show=self.metric)

    def done_message(self) -> str:
        patd = self.result.get("patd", {})
        mean = patd.get("mean") if isinstance(patd, dict) else self.result.get("patd_mean")
        against = FLAVOUR_LABELS.get(self.result.get("flavour"))
        text = f"{self.object_name}: PATD mean {mean:.2f}" + (f" (against {against})" if against else "")
        return text if isinstance(mean, int | float) else "audited"


class TrainTask(Task):
    """Train: progress events carry step and loss; the loss curve image is redrawn while it runs."""

    kind = "train"

    def __init__(self, label: str, total_steps: int):
        super().__init__(f"Train {label}")
        self.total_steps = total_steps
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.step_now: int | None = None
        self.loss_now: float | None = None
        self.eta_s: float | None = None
        self._curve_drawn = 0.0
        self._curve_dirty = False

    def on_progress(self, event: protocol.Event) -> None:
        super().on_progress(event)
        info = self.info
        step = _first_number(info, "step", "global_step", "iteration")
        loss = _first_number(info, "loss", "train_loss")
        total = _first_number(info, "steps", "total_steps", "total")
        if total:
            self.total_steps = int(total)
        if step is not None:
            self.step_now = int(step)
        if loss is not None and step is not None and (not self.steps or step != self.steps[-1]):
            self.steps.append(float(step))
            self.losses.append(float(loss))
            self.loss_now = float(loss)
            self._curve_dirty = True
        eta = _first_number(info, "eta_s", "eta", "eta_seconds")
        if eta is None and self.step_now and self.total_steps and self.step_now > 0:
            elapsed = time.monotonic() - self.started
            eta = elapsed / self.step_now * max(0, self.total_steps - self.step_now)
        self.eta_s = eta
        if self.fraction is None and self.step_now is not None and self.total_steps:
            self.fraction = min(1.0, self.step_now / self.total_steps)

    def refresh_curve(self, now: float, force: bool = False) -> bool:
        """Redraw the loss image if new points arrived (at most every LOSS_IMAGE_EVERY_S)."""
        if not self._curve_dirty or (not force and now - self._curve_drawn < LOSS_IMAGE_EVERY_S):
            return False
        loss_plot.update_image(LOSS_IMAGE, np.asarray(self.steps), np.asarray(self.losses))
        self._curve_drawn, self._curve_dirty = now, False
        return True

    def on_ok(self, event: protocol.Event) -> None:
        super().on_ok(event)
        # Progress events are throttled; the final result carries the whole curve.
        curve = (event.result or {}).get("loss_curve") or []
        points = [(float(s), float(v)) for s, v in curve if np.isfinite(v)]
        if points:
            self.steps = [s for s, _ in points]
            self.losses = [v for _, v in points]
            self.loss_now = self.losses[-1]
            self._curve_dirty = True
        self.refresh_curve(time.monotonic(), force=True)

    def done_message(self) -> str:
        return f"finished at step {self.step_now}" if self.step_now is not None else "finished"


def _first_number(info: dict, *keys: str) -> float | None:
    for key in keys:
        value = info.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
    return None


def place_canonical(obj: bpy.types.Object, location) -> None:
    """Stand a canonical-space mesh (y up, facing +z) upright in Blender at ``location``.

    The mesh data stays in canonical space - the audit compares object coordinates - and the object's
    transform carries :data:`canonical.BLENDER_FROM_CANONICAL` plus the location.
    """
    from mathutils import Matrix

    m = Matrix(canonical.BLENDER_FROM_CANONICAL.tolist())
    m.translation = tuple(location)
    obj.matrix_world = m


# ------------------------------------------------------------------------------------------ runtime
class Runtime:
    """The add-on's connection, tasks and local backend (one per Blender session)."""

    def __init__(self) -> None:
        self.client = None
        self._client_key: tuple | None = None
        self.tasks: list[Task] = []
        self.local = LocalBackend()
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
        if any(t.active for t in self.tasks) or self.local.running:
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
        the local backend this session started."""
        self.disconnect()
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
