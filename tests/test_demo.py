"""Issue 2's thin path, end to end, through `avatex demo`.

Blender (bpy wheel) renders a sample avatar; a real `avatex serve` process reconstructs it with the
shipped PIFu checkpoint and evaluates it, both through the add-on's ZeroMQ client; Blender writes the
.blend. This test then opens that .blend in a fresh Blender and checks that the mesh carries the vertex
colours and exactly the backend's per-vertex PATD / PIPATD values.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backend.demo import DEFAULT_CHECKPOINT
from backend.meshio import load_mesh
from tests.conftest import FIXTURES, ROOT
from tests.helpers.scenarios import SCENARIOS, result_of


@pytest.mark.slow
def test_demo_runs_the_whole_thin_path_and_the_blend_holds_the_backends_values(tmp_path):
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.fail(f"the shipped checkpoint {DEFAULT_CHECKPOINT} is missing")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "backend", "demo", "--out", str(out), "--render-resolution",
                           "256", "--resolution", "96", "--level", "intermediate"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PATD   mean" in proc.stdout and "PIPATD mean" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    errors = np.load(out / "errors.npz")
    mesh = load_mesh(out / "reconstruction.ply")
    n = len(mesh.vertices)
    assert n > 1000 and mesh.vertex_colors is not None and mesh.vertex_colors.shape == (n, 3)
    assert errors["patd"].shape == errors["pipatd"].shape == (n,)
    assert np.all(errors["pipatd"] <= errors["patd"] + 1e-6)
    assert metrics["patd"]["mean"] == pytest.approx(float(errors["patd"].mean()), rel=1e-5)
    assert metrics["pipatd"]["mean"] == pytest.approx(float(errors["pipatd"].mean()), rel=1e-5)
    # A body from the sample set, reconstructed in the GT's canonical space: the GT's bounding box.
    gt = load_mesh(summary["gt_mesh"])
    assert np.abs(mesh.vertices.min(0) - gt.vertices.min(0)).max() < 0.15
    assert np.abs(mesh.vertices.max(0) - gt.vertices.max(0)).max() < 0.15
    for image in ("reconstruction_colors.png", "reconstruction_heatmap.png"):
        assert (out / image).stat().st_size > 10_000

    blend = str(out / "reconstruction.blend")
    read = subprocess.run([sys.executable, str(SCENARIOS / "scenario_read_blend.py"), blend, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    info = result_of(read)
    assert info["vertices"] == n
    assert info["active_color"] == "avatex_heatmap" and "Col" in info["color_attributes"]
    assert info["materials"], "the heatmap material is missing"
    for name in ("patd", "pipatd"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), errors[name], atol=1e-6)


def test_demo_defaults_point_at_a_held_out_clothed_avatar():
    """The demo's avatar is a committed clothed avatar whose person the protocol always holds out for
    test, and the shipped checkpoint's provenance shows that no avatar of that person group, nor of any
    other test or validation group, was trained on."""
    from backend.demo import DEFAULT_AVATAR
    from backend.experiment.population import ALWAYS_TEST, group_of, person_of
    from backend.models.checkpoint import load_checkpoint

    assert DEFAULT_AVATAR.is_file() and DEFAULT_AVATAR.parent.parent == FIXTURES / "valid"
    group = group_of(person_of(DEFAULT_AVATAR.stem))
    assert group in {group_of(p) for p in ALWAYS_TEST}
    _, state = load_checkpoint(DEFAULT_CHECKPOINT, device="cpu")
    trained = state["provenance"]["trained_on"]
    assert len(trained) == 34 and DEFAULT_AVATAR.stem not in trained
    assert group not in {group_of(person_of(name)) for name in trained}
    held = set(state["provenance"]["held_out_groups"])
    assert group in held and not held & {group_of(person_of(name)) for name in trained}


def test_demo_names_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backend", "demo", "--out", str(tmp_path),
                           "--checkpoint", str(tmp_path / "nope.pt")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.pt" in proc.stderr and "Traceback" not in proc.stderr
