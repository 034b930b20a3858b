"""The kinds of backend job the add-on runs, and what Blender does with each one's result.

A :class:`Task` follows one request through its states (waiting, running, applying, done / failed /
cancelled) from the events the runtime hands it; applying a result is a generator of bounded steps, so
that the timer in :mod:`.runtime` can spread a large mesh over many ticks. State lives in these
objects, not in RNA properties: progress must not be saved into .blend files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import bpy
import numpy as np

from avatex_core import canonical, protocol

from . import audit, loss_plot, materials
from .mesh_import import COLOR_ATTRIBUTE, StagedImport, image_from_rgb, set_uv

LOSS_IMAGE = "avatex loss"
LOSS_IMAGE_EVERY_S = 0.5

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

    def __init__(self, name: str, location: tuple[float, float, float], meta: dict[str, str],
                 scale: float = 1.0):
        super().__init__(f"Reconstruct {name}")
        self.name = name
        self.location = location
        self.scale = scale   # world units per canonical unit (views from scene cameras)
        self.meta = meta
        self.importer: StagedImport | None = None
        self.object_name: str | None = None
        self.texture: tuple[np.ndarray, np.ndarray] | None = None   # (uv, texture) of a textured result
        self.mask_image: str | None = None   # the image datablock of the backend's automatic mask
        self.mask_method = ""

    def apply(self, result: dict, arrays: dict[str, np.ndarray]) -> Iterator[str]:
        for key in ("vertices", "faces", "colors"):
            if key not in arrays:
                raise ValueError(f"the backend's reply has no {key!r} array")
        self.texture = (arrays["uv"], arrays["texture"]) if "texture" in arrays and "uv" in arrays else None
        if "mask" in arrays:   # a photo without alpha: show the mask the backend made so it can be checked
            mask = np.asarray(arrays["mask"], dtype=np.uint8)
            if mask.ndim != 2:
                raise ValueError(f"the backend's mask must be (H, W), got {list(mask.shape)}")
            self.mask_method = str((result.get("mask") or {}).get("method", "automatic"))
            self.mask_image = image_from_rgb(f"{self.name} mask", np.repeat(mask[:, :, None], 3, 2)).name
        self.importer = StagedImport(self.name, arrays["vertices"], arrays["faces"], arrays["colors"],
                                     finish=self._place)
        while self.importer.step():
            self.fraction = self.importer.fraction
            yield f"importing: {self.importer.stage}"

    def _place(self, obj: bpy.types.Object) -> None:
        place_canonical(obj, self.location, self.scale)
        if self.texture is not None:
            uv, texture = self.texture
            set_uv(obj.data, uv)
            image = image_from_rgb(f"{obj.name} texture", texture)
            materials.assign_single_material(obj, materials.texture_material(f"{obj.name} texture", image))
        else:
            materials.assign_single_material(
                obj, materials.attribute_material(materials.COLORS_MATERIAL, COLOR_ATTRIBUTE))
        for key, value in self.meta.items():
            obj[key] = value
        if self.mask_image is not None:
            obj["avatex_mask"] = self.mask_image
            obj["avatex_mask_method"] = self.mask_method
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
        text = f"{obj.name}: {len(obj.data.vertices):,} vertices, {len(obj.data.polygons):,} triangles"
        if self.mask_image is not None:
            text += f"; automatic {self.mask_method} mask in image {self.mask_image!r}"
        return text


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


def place_canonical(obj: bpy.types.Object, location, scale: float = 1.0) -> None:
    """Stand a canonical-space mesh (y up, facing +z) upright in Blender at ``location``.

    The mesh data stays in canonical space - the audit compares object coordinates - and the object's
    transform carries :data:`canonical.BLENDER_FROM_CANONICAL` (times ``scale``) plus the location.
    """
    from mathutils import Matrix

    m = Matrix((canonical.BLENDER_FROM_CANONICAL @ np.diag([scale, scale, scale, 1.0])).tolist())
    m.translation = tuple(location)
    obj.matrix_world = m
