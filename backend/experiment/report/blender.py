"""The one Blender call of the report: colour and heatmap images of kept reconstructions, rendered by
``render_scripts/audit_blend.py`` in a subprocess (the backend never imports bpy)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend.errors import InputError

ROOT = Path(__file__).resolve().parents[3]
AUDIT_SCRIPT = ROOT / "render_scripts" / "audit_blend.py"


_AUDIT_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from render_scripts import audit_blend
for job in json.load(open(sys.argv[2], encoding="utf-8")):
    audit_blend.run(job["mesh"], job["errors"], job["out"], name=job["name"], size=job["size"])
"""


def audit_images(jobs: list[dict[str, Any]], work: Path, timeout: float = 1800.0) -> list[dict[str, Path]]:
    """Colour and heatmap PNGs of kept reconstructions, all in one Blender process
    (``render_scripts.audit_blend.run`` per job: {mesh, errors, out, name, size}); returns their paths."""
    from avatex_core.atomic import write_json

    if not jobs:
        return []
    job_file = work / "audit_jobs.json"
    write_json(job_file, [{k: str(v) if isinstance(v, Path) else v for k, v in j.items()} for j in jobs])
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, "-c", _AUDIT_DRIVER, str(ROOT), str(job_file)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-600:]
        raise InputError(f"render_scripts/audit_blend.py failed: {tail}")
    return [{"colors": Path(j["out"]) / f"{j['name']}_colors.png",
             "heatmap": Path(j["out"]) / f"{j['name']}_heatmap.png"} for j in jobs]
