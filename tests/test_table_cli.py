"""`avatex table` end to end on a tiny relit dataset with two tiny real checkpoints (a run folder and a
file) that share their geometry net: files written, best in bold, resumable, clear errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.cli.table import default_names
from backend.models import ModelConfig, PIFu
from backend.models.checkpoint import save_checkpoint
from tests.helpers.tiny_models import TINY

ROOT = Path(__file__).resolve().parents[1]
AVATARS = ROOT / "tests" / "fixtures" / "avatars"



def avatex(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("table")
    data = work / "data"
    render = avatex("render", "--meshes", str(AVATARS / "avatar_0001.ply"), "--out", str(data),
                    "--views", "4", "--step", "90", "--levels", "wild,clear", "--resolution", "64",
                    "--samples", "2", "--albedo-samples", "1", "--no-denoise", "--test-fraction", "1")
    assert render.returncode == 0, render.stderr[-3000:]
    torch.manual_seed(1)
    model = PIFu(ModelConfig.small(**TINY)).eval()
    run = work / "baseline" / "checkpoints"
    run.mkdir(parents=True)
    save_checkpoint(run / "step-00000005.pt", model)
    with torch.no_grad():
        for p in model.net_c.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned = save_checkpoint(work / "tuned.pt", model)
    return {"work": work, "data": data, "run": work / "baseline", "tuned": tuned}


@pytest.mark.slow
def test_table_end_to_end(setup):
    out = setup["work"] / "out"
    args = ["table", "--runs", str(setup["run"]), str(setup["tuned"]), "--data", str(setup["data"]),
            "--names", "baseline", "tuned", "--levels", "wild,clear", "--resolution", "32",
            "--novel-views", "1", "--geometry-samples", "2000", "--out", str(out), "--device", "cpu",
            "--no-progress-bar"]
    proc = avatex(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "table.md").read_text()
    assert proc.stdout == md
    lines = md.splitlines()
    assert lines[0] == "| metric | level | baseline | tuned |"
    assert [ln.split("|")[1:3] for ln in lines[2:6]] == [[" PATD ", " wild "], [" PATD ", " clear "],
                                                         [" PIPATD ", " wild "], [" PIPATD ", " clear "]]
    for line in lines[2:6]:  # exactly one of the two (different) colour nets is best per row
        assert line.count("**") == 2, line
    assert any(ln.startswith("| PSNR input view (dB) | wild |") for ln in lines)
    rows = list(csv.reader((out / "table.csv").open()))
    assert rows[0] == ["metric", "level", "baseline", "tuned"]
    assert rows[1][:2] == ["PATD", "wild"] and float(rows[1][2]) > 0
    data = json.loads((out / "evaluation.json").read_text())
    assert len(data["per_item"]) == 4  # 2 models x 1 subject x 1 view x 2 levels
    assert data["stats"]["reconstructions"] == 2 and data["stats"]["color_queries"] == 2
    assert data["models"]["baseline"]["checkpoint"].endswith("step-00000005.pt")
    assert "LPIPS" in proc.stderr or data["stats"]["lpips"]["available"]
    # Re-running resumes: nothing is reconstructed again, the table is the same.
    again = avatex(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == md
    assert json.loads((out / "evaluation.json").read_text())["stats"]["reconstructions"] == 0


@pytest.mark.slow
def test_errors_are_one_clear_line(setup, tmp_path):
    no_test = tmp_path / "no_test"
    shutil.copytree(setup["data"], no_test)
    manifest = json.loads((no_test / "manifest.json").read_text())
    for entry in manifest["subjects"].values():
        entry["split"] = "train"
    (no_test / "manifest.json").write_text(json.dumps(manifest))
    proc = avatex("table", "--runs", str(setup["tuned"]), "--data", str(no_test),
                  "--out", str(tmp_path / "o"), "--no-image-metrics")
    assert proc.returncode == 2
    assert "has no 'test' subjects" in proc.stderr and "Traceback" not in proc.stderr
    proc = avatex("table", "--runs", str(setup["tuned"]), "--data", str(setup["data"]), "--levels", "sunset",
                  "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "sunset" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    proc = avatex("table", "--runs", str(bad), "--data", str(setup["data"]), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "bad.pt" in proc.stderr and "Traceback" not in proc.stderr
    proc = avatex("table", "--runs", str(setup["tuned"]), str(setup["run"]), "--names", "one",
                  "--data", str(setup["data"]))
    assert proc.returncode == 2 and "--names" in proc.stderr


def test_default_names(tmp_path):
    ckpts = tmp_path / "runA" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "step-00000200.pt").write_bytes(b"")
    (tmp_path / "x.pt").write_bytes(b"")
    paths = [str(tmp_path / "runA"), str(ckpts / "step-00000200.pt"), str(tmp_path / "x.pt")]
    assert default_names(paths) == ["runA", "runA@200", "x"]
    assert default_names(["a/run", "b/run"]) == ["run#1", "run#2"]
