"""Installed-extension scenarios with large results: a million-vertex import, a streamed 36 MB reply
whose import is spread over bounded timer ticks, and a cancel in the middle of an import."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import bpy
import numpy as np

if TYPE_CHECKING:
    from extension import Extension


def load(mesh: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(mesh) as m:
        return m["vertices"], m["faces"]


def million_vertex_attributes(ext: Extension, mesh: str) -> dict:
    mi = ext.mi
    verts, tris = load(mesh)
    rng = np.random.default_rng(0)
    colors = rng.random((len(verts), 3), dtype=np.float32)
    patd = (rng.random(len(verts), dtype=np.float32) * 30).astype(np.float32)
    pipatd = (patd * 0.5).astype(np.float32)
    job = mi.StagedImport("big", verts, tris, colors, floats={"patd": patd, "pipatd": pipatd})
    obj = job.run_to_end()
    ext.audit.apply(obj, patd, pipatd, {"patd": {"mean": float(patd.mean())}})
    data = obj.data
    return {"vertices": len(data.vertices), "faces": len(data.polygons), "edges": len(data.edges),
            "patd_equal": bool(np.array_equal(mi.read_point_floats(data, "patd"), patd)),
            "pipatd_equal": bool(np.array_equal(mi.read_point_floats(data, "pipatd"), pipatd)),
            "tris_equal": bool(np.array_equal(mi.read_triangles(data), tris)),
            "colors_err": float(np.abs(mi.read_point_colors(data, "Col") - colors).max()),
            "active": data.color_attributes.active_color_name}


def streamed_ticks_stay_bounded(ext: Extension, mesh: str) -> dict:
    tasks = ext.tasks
    runtime = ext.runtime
    endpoint, _ = ext.serve()
    ext.use(endpoint)
    ext.prefs.tick_budget_ms = 15
    verts, tris = load(mesh)
    colors = np.random.default_rng(0).random((len(verts), 3), dtype=np.float32)
    task = tasks.ReconstructTask("streamed", (0.0, 0.0, 0.0), {})
    runtime.RUNTIME.submit(task, "echo", {"data": "large"},
                         {"vertices": verts, "faces": tris, "colors": colors})
    durations, applying, stages = [], [], []
    deadline = time.monotonic() + 300
    while task.active and time.monotonic() < deadline:
        was_applying = task.applying
        t0 = time.perf_counter()
        runtime.tick()
        durations.append(time.perf_counter() - t0)
        stages.append(task.stage)
        applying.append(was_applying or task.applying)
        time.sleep(0.002)
    obj = bpy.data.objects.get("streamed")
    work = [d for d, a in zip(durations, applying, strict=True) if a]
    worst = int(np.argmax(durations))
    return {"state": task.state, "message": task.message, "max_tick": max(durations),
            "worst_stage": stages[worst], "worst_prev_stage": stages[worst - 1] if worst else "",
            "ticks": len(durations), "work_ticks": len(work), "work_total": sum(work),
            "vertices": len(obj.data.vertices) if obj else 0}


def cancel_while_importing(ext: Extension, mesh: str) -> dict:
    tasks = ext.tasks
    runtime = ext.runtime
    endpoint, _ = ext.serve()
    ext.use(endpoint)
    verts, tris = load(mesh)
    before = (len(bpy.data.meshes), len(bpy.data.objects))
    task = tasks.ReconstructTask("cancelled", (0.0, 0.0, 0.0), {})
    runtime.RUNTIME.submit(task, "echo", {}, {"vertices": verts, "faces": tris, "colors": verts * 0})
    # One step per tick, until the mesh exists in bpy.data but is not finished.
    ext.tick_until(lambda: task.importer is not None and task.importer.mesh is not None, 120, sleep=0,
                   budget=0.0)
    assert task.applying and "cancelled" in bpy.data.meshes
    assert bpy.ops.avatex.cancel(kind="reconstruct") == {"FINISHED"}
    runtime.tick()
    return {"state": task.state, "message": task.message, "before": before,
            "after": (len(bpy.data.meshes), len(bpy.data.objects))}
