"""Running the scripts in ``tests/scenarios/`` in a fresh bpy-wheel Python and reading their RESULT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCENARIOS = ROOT / "tests" / "scenarios"

BLENDER_PYTHON = os.environ.get("AVATEX_TEST_BLENDER_PYTHON", sys.executable)
"""The Python (with a bpy wheel) that runs the extension scenarios: set AVATEX_TEST_BLENDER_PYTHON to a
venv with bpy 4.2.0 or 5.0.1 (plus numpy<2, colour-science) to check the extension on other Blender
versions."""


def result_of(proc: subprocess.CompletedProcess, marker: str = "RESULT ") -> dict:
    """The JSON of the script's last ``RESULT`` line; fails with its output when it has none or failed."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(marker)]
    assert proc.returncode == 0 and lines, f"scenario failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n" \
                                           f"{proc.stderr[-6000:]}"
    return json.loads(lines[-1][len(marker):])


def run_extension_scenario(zip_path: Path, target: str, tmp_path: Path, timeout: float = 600,
                           **params) -> dict:
    """Install ``zip_path`` into a throw-away Blender user folder and run ``scenario_<module>.<function>``
    (``target`` = ``"module:function"``) with ``params`` (JSON values) against real backends."""
    params_file = tmp_path / "scenario-params.json"
    params_file.write_text(json.dumps(params))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"),
               AVATEX_BACKEND_PYTHON=sys.executable)
    proc = subprocess.run([BLENDER_PYTHON, str(SCENARIOS / "extension.py"), str(zip_path), str(ROOT), target,
                           str(params_file)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=tmp_path)
    return result_of(proc)
