"""Issue 8: kill -9 of the server during a real training job, restart, resume.

Nothing may be lost beyond the last checkpoint interval and nothing may be corrupt: every checkpoint on
disk loads, no temporary file survives, and the restarted server finishes the same job from the last
checkpoint by itself.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from avatex_core.client import Client
from avatex_core.protocol import new_owner_secret
from backend.models.checkpoint import load_checkpoint
from tests.conftest import FIXTURES, ROOT
from tests.helpers.server import finish_after_restart, follow_training, spawn_avatex_serve
from tests.helpers.tiny_models import TINY

STEPS, EVERY = 80, 10


@pytest.mark.slow
def test_kill9_during_training_then_restart_resumes_from_the_last_checkpoint(tmp_path):
    root, state = tmp_path / "root", tmp_path / "state"
    avatars = FIXTURES / "avatars"
    meshes = [str(avatars / "avatar_0001.ply"), str(avatars / "avatar_0003.ply")]
    subprocess.run([sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes", *meshes,
                    "--out", str(root / "data"), "--views", "2", "--step", "180", "--levels", "clear",
                    "--resolution", "64", "--samples", "2", "--albedo-samples", "1", "--no-denoise",
                    "--test-fraction", "0.5"], check=True, capture_output=True, timeout=600)
    config = {"data": "data", "out": "run", "cache_dir": "cache", "model": "small", "model_overrides": TINY,
              "stage": "color", "loss": "l1", "steps": STEPS, "batch": 1, "points_color": 200, "patches": 10,
              "dense_samples": 5000, "pool_surface": 2000, "pool_uniform": 500, "workers": 0,
              "checkpoint_every": EVERY, "val_every": 1000, "progress_bar": False, "seed": 0}
    args = ("--state", str(state), "--root", str(root))

    owner = new_owner_secret()   # the restarted server's client comes back as the job's owner
    server = spawn_avatex_serve(*args)
    try:
        with Client(server.endpoint, owner=owner) as client:
            rid = client.submit("train.start", {"config": config})
            job, last_step = follow_training(client, rid, 3 * EVERY + 3)
            server.kill9()
    finally:
        server.close()

    # A kill during a checkpoint write leaves a step-N.tmp-XXXX.pt temporary: never a checkpoint, and
    # removed when the job resumes (checked at the end).
    checkpoints = sorted(p for p in (root / "run" / "checkpoints").glob("step-*.pt")
                         if re.fullmatch(r"step-\d{8}\.pt", p.name))
    assert checkpoints, "no checkpoint was written before the kill"
    for path in checkpoints:  # every file on disk is whole: it loads
        _, train_state = load_checkpoint(path)
        assert train_state["step"] % EVERY == 0
    saved = max(load_checkpoint(p)[1]["step"] for p in checkpoints)
    assert last_step - EVERY <= saved <= last_step + EVERY, (saved, last_step)

    result, status = finish_after_restart(args, owner, job)   # the server resumes it by itself
    assert status["state"] == "done" and status["attempts"] == 2
    assert result["step"] == STEPS
    _, final_state = load_checkpoint(result["checkpoint"])
    assert final_state["step"] == STEPS
    # The resumed run kept the history up to the checkpoint and continued from it, not from zero.
    steps_logged = [row["step"] for row in final_state["history"]["train"]]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == STEPS
    assert min(steps_logged) < saved
    assert not list(root.rglob("*.tmp-*")) and not list(state.rglob("*.tmp-*"))
