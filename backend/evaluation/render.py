"""Run one Blender process on a batch of unlit renders (``render_scripts/render_views.py``).

The Blender side (``blender_addon/render/views.py``) renders exactly like the dataset's albedo images;
this side writes the job, starts the process (this Python's ``bpy`` wheel, or a Blender executable),
forwards its progress and stops it on cancel. Meshes go over as ``.npz`` (float colours, no 8-bit
rounding).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core.atomic import write_json, write_with
from avatex_core.progress import NULL, Progress
from avatex_core.render_jobs import parse_event_line
from backend.blender import blender_command
from backend.errors import AvatexError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "render_scripts" / "render_views.py"


class RenderError(AvatexError):
    """The Blender process failed; the message carries its last words."""

    code = "render_failed"


def write_render_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> Path:
    """The mesh file a render job names: float32 vertices/colours, int32 faces (atomic)."""
    arrays = {"vertices": np.ascontiguousarray(vertices, dtype=np.float32),
              "faces": np.ascontiguousarray(faces, dtype=np.int32),
              "colors": np.ascontiguousarray(colors, dtype=np.float32)}
    write_with(path, lambda fh: np.savez(fh, **arrays))
    return Path(path)


def run_render_job(job: dict[str, Any], job_path: str | Path, *, blender: str | None = None,
                   log: str | Path | None = None,
                   progress: Progress = NULL) -> dict[str, Any]:
    """Write ``job`` to ``job_path``, render it in one Blender process; returns its final event.

    ``progress`` gets stage ``render`` per image, with ``done`` and ``images`` (the total); cancelling
    it kills Blender. Images already on disk are skipped by the
    renderer, so a re-run after a kill only renders what is missing.
    """
    write_json(job_path, job)
    cmd = blender_command(SCRIPT, blender, purpose="image metrics")
    cmd += ["--job", str(job_path), "--progress", "jsonl"]
    if log is not None:
        cmd += ["--log", str(log)]
    err_path = Path(job_path).with_suffix(".stderr.log")
    with open(err_path, "wb") as err:  # a file, not a pipe: a chatty Blender cannot block on it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                text=True, bufsize=1)
    final: dict[str, Any] | None = None
    fatal: str | None = None
    total = 0
    try:
        for line in proc.stdout:
            progress.check("rendering cancelled")
            event = parse_event_line(line)
            if event is None:
                continue
            kind = event.get("event")
            if kind == "plan":
                total = int(event.get("images", 0))
            elif kind == "image":
                done = int(event["done"])
                progress.report("render", done / max(total, 1), done=done, images=total)
            elif kind == "done":
                final = event
            elif kind == "fatal":
                fatal = str(event.get("error"))
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    if code != 0 or final is None:
        stderr = err_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        detail = fatal or (stderr or ["no message"])[-1]
        raise RenderError(f"the Blender render of {job_path} failed (exit status {code}): {detail}")
    return final
