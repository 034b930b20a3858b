"""Every command's path arguments are relative to the directory it is started in.

Each command runs as a real ``python -m backend`` process whose current directory is a temporary folder
(not the repository), with relative paths only, on tiny inputs: the fixture avatars, a 64 px dataset and
the tests' tiny model. Commands that start Blender workers (``table``'s image metrics) or a server
(``demo``) are the ones a relative path used to break. ``render`` is covered by its own tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.cli import build_parser
from backend.cli.paths import absolute, resolve
from tests.conftest import ROOT
from tests.helpers.tiny_models import TINY

AVATARS = ROOT / "tests" / "fixtures" / "avatars"

TRAIN_TOML = """model = "small"
stage = "color"
loss = "l1"
steps = 2
batch = 1
points_color = 200
dense_samples = 5000
workers = 0
log_every = 1
checkpoint_every = 2
val_every = 1000
progress_bar = false
cache_dir = "cache"

[model_overrides]
""" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in TINY.items())


def avatex(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), AVATEX_CACHE=str(cwd / "cache"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_absolute_keeps_types_and_leaves_none():
    cwd = Path.cwd()
    assert absolute("a/b") == str(cwd / "a" / "b")
    assert absolute(Path("x.ply")) == cwd / "x.ply"
    assert absolute(["a", Path("b")]) == [str(cwd / "a"), cwd / "b"]
    assert absolute(None) is None and absolute("/abs/p") == "/abs/p"
    assert absolute("~/f") == os.path.expanduser("~/f")


def test_every_commands_paths_are_real_options():
    """A typo in a module's PATHS would silently leave that option relative."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        names = p.get_default("_paths")
        dests = {a.dest for a in p._actions}
        assert set(names) <= dests, (name, set(names) - dests)
        if name not in ("render",):  # render's paths are its own module's business
            assert names, name
    ns = resolve(build_parser().parse_args(["evaluate", "--pred", "p.ply", "--gt", "g.obj"]),
                 ("pred", "gt", "out"))
    assert ns.pred == str(Path.cwd() / "p.ply") and ns.out is None


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder (the commands' cwd) holding a 64 px dataset rendered from one fixture avatar, as ``data``."""
    cwd = tmp_path_factory.mktemp("cwd")
    shutil.copy(AVATARS / "avatar_0001.ply", cwd / "avatar.ply")
    cmd = [sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes",
           str(cwd / "avatar.ply"), "--out", str(cwd / "data"), "--views", "2", "--step", "90", "--levels",
           "wild,clear", "--resolution", "64", "--samples", "2", "--albedo-samples", "1", "--no-denoise",
           "--test-fraction", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (cwd / "tiny.toml").write_text(TRAIN_TOML)
    return cwd


@pytest.fixture(scope="module")
def trained(work) -> Path:
    proc = avatex(work, "train", "--config", "tiny.toml", "--data", "data", "--out", "run", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoints = sorted((work / "run" / "checkpoints").glob("*.pt"))
    assert checkpoints, list((work / "run").rglob("*"))
    assert not (ROOT / "run").exists()
    return checkpoints[-1]


@pytest.mark.slow
def test_train_reconstruct_evaluate_with_relative_paths(work, trained):
    from PIL import Image

    from backend.data.dataset import Dataset

    ds = Dataset(work / "data")
    sid = ds.subjects()[0]
    Image.fromarray(ds.image(sid, 0, "clear")).save(work / "input.png")
    ckpt = os.path.relpath(trained, work)
    proc = avatex(work, "reconstruct", "input.png", "--checkpoint", ckpt, "--out", "out/rec.ply",
                  "--resolution", "32", "--device", "cpu", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "out" / "rec.ply").is_file()
    gt = os.path.relpath(ds.gt_mesh_path(sid), work)
    proc = avatex(work, "evaluate", "--pred", "out/rec.ply", "--gt", gt, "--no-geometry", "--out",
                  "out/per_vertex.npz", "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.load(work / "out" / "per_vertex.npz")["patd"].ndim == 1


@pytest.mark.slow
def test_table_with_blender_image_metrics_and_relative_paths(work, trained):
    proc = avatex(work, "table", "--runs", "run", "--data", "data", "--split", "train", "--levels", "clear",
                  "--views", "0", "--resolution", "32", "--novel-views", "1", "--geometry-samples", "2000",
                  "--out", "tab", "--device", "cpu", "--no-progress-bar")
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (work / "tab" / "table.md").read_text()
    assert "PSNR input view (dB)" in md  # the image metrics came from the Blender worker
    assert not (ROOT / "tab").exists()


def test_keys_with_a_relative_folder(work):
    proc = avatex(work, "keys", "--out", "keys")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any((work / "keys").iterdir())


@pytest.mark.slow
def test_experiment_with_relative_paths(tmp_path):
    names = []
    for i in (0, 1, 3):
        shutil.copy(AVATARS / f"avatar_{i:04d}.ply", tmp_path / f"a{i}.ply")
        names.append(f"a{i}.ply")
    proc = avatex(tmp_path, "experiment", "--out", "exp", "--budget", "test", "--meshes", *names,
                  "--device", "cpu", "--quiet", timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "exp" / "results" / "report.md").is_file()


@pytest.mark.slow
def test_demo_with_relative_paths(tmp_path):
    """The demo renders in Blender and talks to a server in other processes: both get the files."""
    for suffix in (".obj", ".mtl", ".png"):
        shutil.copy(AVATARS / f"avatar_0002{suffix}", tmp_path / f"avatar_0002{suffix}")
    shutil.copy(ROOT / "backend" / "assets" / "pifu_small.pt", tmp_path / "model.pt")
    proc = avatex(tmp_path, "demo", "--out", "demo", "--avatar", "avatar_0002.obj", "--checkpoint",
                  "model.pt", "--render-resolution", "128", "--resolution", "48", "--no-blend", timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "demo" / "summary.json").is_file()
