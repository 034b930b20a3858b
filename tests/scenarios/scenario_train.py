"""Installed-extension scenarios for training: the backend's refusal shown in the panel, and a real run
with live step / loss / ETA, the loss-curve image, and the Stop button."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
import numpy as np

if TYPE_CHECKING:
    from extension import Extension


def refusal_is_shown(ext: Extension, data: str, dataset: str, run_dir: str) -> dict:
    runtime = ext.runtime
    endpoint, _ = ext.serve("--root", data)
    ext.use(endpoint)
    s = bpy.context.scene.avatex
    s.dataset, s.run_dir, s.loss, s.steps = dataset, run_dir, "l1", 10
    assert bpy.ops.avatex.train_start() == {"FINISHED"}
    ext.tick_until(lambda: not runtime.RUNTIME.latest("train").active, 120)
    task = runtime.RUNTIME.latest("train")
    return {"state": task.state, "message": task.message}


def live_progress_and_stop(ext: Extension, data: str, config: dict) -> dict:
    tasks = ext.tasks
    runtime = ext.runtime
    endpoint, _ = ext.serve("--root", data)
    ext.use(endpoint)
    # A short run to its end: live step / loss / ETA and the loss-curve image.
    task = tasks.TrainTask("short", 6)
    runtime.RUNTIME.submit(task, "train.start", {"config": dict(config, steps=6, out=f"{data}/run1")})
    seen = []

    def progressed() -> bool:
        if task.step_now is not None and (not seen or seen[-1] != task.step_now):
            seen.append(task.step_now)
        return not task.active

    ext.tick_until(progressed, 400, sleep=0.02)
    img = bpy.data.images.get(tasks.LOSS_IMAGE)
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    curve = np.all(np.isclose(px.reshape(-1, 4), (1.0, 0.62, 0.2, 1.0), atol=1e-3), axis=1)
    short = {"state": task.state, "message": task.message, "steps_seen": seen, "losses": task.losses,
             "eta_seen": task.eta_s is not None, "image": list(img.size), "curve_pixels": int(curve.sum()),
             "checkpoint": task.result.get("checkpoint")}
    # A long run, stopped with the panel's Stop button once it trains.
    bpy.context.scene.avatex.steps = 5000
    task = tasks.TrainTask("long", 5000)
    runtime.RUNTIME.submit(task, "train.start", {"config": dict(config, steps=5000, out=f"{data}/run2")})
    ext.tick_until(lambda: task.step_now is not None and task.step_now >= 1 and task.stage == "train", 400,
                   sleep=0.02)
    assert bpy.ops.avatex.cancel(kind="train") == {"FINISHED"}
    ext.tick_until(lambda: not task.active, 300, sleep=0.02)
    return {"short": short, "long": {"state": task.state, "message": task.message, "step": task.step_now}}
