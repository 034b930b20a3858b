"""benchmarks/gpu_check.py on the CPU: its ``--quick`` run end to end, its refusals, its DDP comparison.

The GPU figures themselves can only come from a GPU machine; these tests make sure the one prepared run
there has working logic: every section produces real numbers, the JSON has the layout docs/api.md
describes, and a machine without what it needs gets one line saying so.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
HAS_BPY = importlib.util.find_spec("bpy") is not None


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, *args: str, timeout: int = 600) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--out", str(out), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.is_file(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.blender
@pytest.mark.skipif(not HAS_BPY, reason="the training section renders its dataset with the bpy wheel")
def test_quick_cpu_run_fills_every_section_with_real_numbers(tmp_path):
    proc, report = _run(tmp_path, "--only", "tests,reconstruct,metrics,train,baking")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["ok"] and report["failed_sections"] == [] and report["quick"]
    assert report["machine"]["device"] == "cpu" and report["machine"]["torch"] == torch.__version__
    assert report["dataset"]["rendered_here"] and report["dataset"]["render_device"] == "CPU"
    s = report["sections"]
    assert list(s) == ["tests", "reconstruct", "metrics", "train", "baking"]

    tests = s["tests"]
    assert "tests/test_cuda.py" in tests["files"] and "tests/test_gpu_check.py" not in tests["files"]
    counts = tests["counts"]
    assert counts["tests"] >= 8 and counts["failures"] == counts["errors"] == 0
    if not torch.cuda.is_available():
        assert counts["skipped"] == counts["tests"] and counts["passed"] == 0
        assert any("needs CUDA" in reason for reason in tests["skip_reasons"]), tests["skip_reasons"]

    rec = s["reconstruct"]
    assert [r["resolution"] for r in rec["device"]] == [24, 32] and rec["cpu_baseline"]["resolution"] == 24
    for row in [*rec["device"], rec["cpu_baseline"]]:
        assert row["device"] == "cpu" and row["points"] > 0 and row["vertices"] > 100
        parts = row["encode_seconds"] + row["grid_plus_mc_seconds"] + row["color_seconds"]
        assert row["end_to_end_seconds"] == pytest.approx(parts, abs=2e-3) and parts > 0
    assert rec["device"][1]["points"] > rec["device"][0]["points"]  # finer grid, more queries
    assert rec["ratio_cpu_over_device_at_first_resolution"] > 0

    met = s["metrics"]
    assert met["torch"]["device"] == "cpu" and met["numpy"]["device"] == "cpu"
    assert met["torch"]["best_s"] > 0 and met["numpy"]["best_s"] > 0 and met["speedup_torch_over_numpy"] > 0
    assert met["max_abs_difference"]["patd"] < 1e-4 and met["max_abs_difference"]["pipatd"] < 1e-4
    assert met["nearest_mismatches"] == 0
    assert met["torch"]["pipatd_mean"] <= met["torch"]["patd_mean"]
    assert 0 < met["torch"]["patd_mean"] == pytest.approx(met["numpy"]["patd_mean"], abs=1e-9)

    train = s["train"]
    batch, points = train["batch"], train["points_per_item"]
    for name in ("color_fp32", "color_bf16", "geometry_fp32", "geometry_bf16"):
        case = train["cases"][name]
        assert case["steps_per_s"] > 0, name
        assert case["points_per_s"] == pytest.approx(batch * points * case["steps_per_s"], rel=0.01), name
    assert "skipped" in train["cases"]["color_fp16"]  # the GradScaler path is CUDA's
    assert train["case_errors"] == 0
    assert set(train["ratios"]) == {"color_bf16_over_fp32", "geometry_bf16_over_fp32"}
    assert all(r > 0 for r in train["ratios"].values())

    bake = s["baking"]
    assert bake["device"]["size"] == 512 and bake["device"]["texels"] > 10_000
    assert bake["device"]["seconds"] > 0 and bake["cpu_baseline"]["us_per_texel"] > 0
    assert bake["ratio_cpu_over_device_per_texel"] > 0


@pytest.mark.slow
@pytest.mark.blender
@pytest.mark.skipif(not HAS_BPY, reason="the DDP check trains on a dataset rendered with the bpy wheel")
def test_quick_ddp_check_two_gloo_ranks_agree_with_one_process(tmp_path):
    proc, report = _run(tmp_path, "--only", "ddp", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = report["sections"]["ddp"]
    assert ddp["world_size"] == 2 and ddp["process_group"] == "gloo" and ddp["global_batch"] == 4
    assert sorted(r["ddp_child"] for r in ddp["ranks"]) == [0, 1]
    assert all(r["step"] == ddp["steps"] for r in ddp["ranks"])
    assert ddp["net_g_identical"] and ddp["agree"]
    assert 0 < ddp["net_c_diff_over_moved"] < 0.05, ddp
    assert ddp["first_loss"]["ranks"] == pytest.approx(ddp["first_loss"]["single"], rel=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_the_default_device_is_refused_in_one_line(tmp_path, capsys):
    gpu_check = _gpu_check()
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no GPU found" in err[0] and "--device cpu" in err[0], err
    assert not (tmp_path / "x.json").exists()


def test_missing_prerequisites_and_existing_output_are_named_in_one_line(tmp_path, capsys, monkeypatch):
    gpu_check = _gpu_check()
    monkeypatch.setattr(gpu_check, "REQUIRED", (*gpu_check.REQUIRED, "no_such_module_avatex"))
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing on this machine: no_such_module_avatex" in err[0]
    monkeypatch.undo()
    existing = tmp_path / "old.json"
    existing.write_text("{}")
    assert gpu_check.main(["--device", "cpu", "--out", str(existing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists; pass --force" in err[0]
    assert existing.read_text() == "{}"
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "tests,nonsense"])
    assert "unknown section(s) nonsense" in capsys.readouterr().err


def test_a_section_whose_module_is_missing_is_recorded_and_the_others_run(tmp_path, capsys, monkeypatch):
    gpu_check = _gpu_check()
    monkeypatch.setattr(gpu_check, "SECTION_NEEDS", {"tests": ("no_such_module_avatex",)})
    out = tmp_path / "report.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--only", "tests,baking", "--out", str(out)]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("gpu_check: not run")]
    assert lines == ["gpu_check: not run: tests (missing no_such_module_avatex)"]
    report = json.loads(out.read_text())
    assert report["sections"]["tests"]["status"] == "not available"
    assert report["sections"]["baking"]["device"]["texels"] > 0 and report["ok"]
