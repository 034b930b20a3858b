"""``avatex experiment`` end to end on the micro ``test`` budget, through the real CLI.

Three committed sample avatars are rendered by Blender (2 views x wild/clear at 64 px), a micro PIFu
is trained (geometry stage, colour stage on clear, two fine-tunes with netG frozen), evaluated on the
held-out avatar, and the table, plots, images and report are written. The same command then runs again
and must skip every stage; a fine-tune whose last checkpoint is deleted (a killed run) is resumed from
its previous checkpoint and the rest is left alone.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.errors import InputError
from backend.experiment import BUDGETS, get_budget, run_experiment
from backend.experiment.stages import export_checkpoint, held_out_fraction, split_value
from backend.models.checkpoint import load_checkpoint, load_models

ROOT = Path(__file__).resolve().parents[1]
AVATARS = ROOT / "tests" / "fixtures" / "avatars"
MESHES = [AVATARS / f"avatar_{i:04d}.ply" for i in (0, 1, 3)]  # avatar_0002 stays unseen (the demo's)
STAGES = ("render", "geometry", "baseline", "l1", "ssim", "export", "evaluate", "report")


def _cli(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend", "experiment", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    e = dict(os.environ)
    e["AVATEX_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    e["OMP_NUM_THREADS"] = "1"
    return e


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, env) -> dict:
    run = tmp_path_factory.mktemp("exp") / "run"
    args = ["--out", str(run), "--budget", "test", "--meshes", *map(str, MESHES), "--device", "cpu",
            "--quiet"]
    first = _cli(args, env)
    assert first.returncode == 0, first.stdout + first.stderr
    return {"run": run, "args": args, "first": first}


@pytest.mark.slow
def test_every_stage_writes_its_outputs(experiment):
    run = experiment["run"]
    spec = json.loads((run / "experiment.json").read_text())
    assert spec["budget"]["name"] == "test" and spec["source"]["kind"] == "meshes"
    timings = json.loads((run / "timings.json").read_text())["stages"]
    assert set(STAGES) <= set(timings) and all(timings[s]["status"] == "done" for s in STAGES)
    assert all(timings[s]["wall_s"] >= 0 for s in STAGES)

    manifest = json.loads((run / "data" / "manifest.json").read_text())
    splits = [s["split"] for s in manifest["subjects"].values()]
    assert sorted(splits) == ["test", "train", "train"]  # the budget's exact held-out count
    budget = get_budget("test")
    for name, steps in (("geometry", budget.geometry["steps"]), ("baseline", budget.baseline["steps"]),
                        ("l1", budget.finetune["steps"]), ("ssim", budget.finetune["steps"])):
        assert (run / "train" / name / "checkpoints" / f"step-{steps:08d}.pt").is_file(), name
    cfg = {n: json.loads((run / "train" / n / "config.json").read_text()) for n in ("baseline", "l1", "ssim")}
    assert cfg["baseline"]["levels"] == ["clear"] and cfg["baseline"]["loss"] == "l1"
    assert cfg["l1"]["levels"] is None and cfg["l1"]["loss"] == "l1" and cfg["l1"]["stage"] == "color"
    assert cfg["ssim"]["loss"] == budget.ssim_loss and cfg["ssim"]["init"] == cfg["l1"]["init"]

    # the three shipped-style models: no optimiser state, one geometry net, three colour nets
    models = {m: load_checkpoint(run / "models" / f"{m}.pt") for m in ("baseline", "l1", "ssim")}
    for m, (model, state) in models.items():
        assert set(state) == {"provenance"} and state["provenance"]["model"] == m
        assert model.net_c is not None
    g = [models[m][0].net_g.state_dict() for m in ("baseline", "l1", "ssim")]
    assert all(torch.equal(g[0][k], g[i][k]) for i in (1, 2) for k in g[0])
    c = {m: models[m][0].net_c.state_dict() for m in models}
    assert any(not torch.equal(c["baseline"][k], c["l1"][k]) for k in c["baseline"])
    assert any(not torch.equal(c["l1"][k], c["ssim"][k]) for k in c["l1"])
    assert load_models(checkpoint=run / "models" / "ssim.pt", device="cpu").net_c is not None
    src = run / "train" / "ssim" / "checkpoints" / f"step-{budget.finetune['steps']:08d}.pt"
    assert (run / "models" / "ssim.pt").stat().st_size < src.stat().st_size


@pytest.mark.slow
def test_table_report_and_images_cover_all_models_and_levels(experiment):
    results = experiment["run"] / "results"
    with open(results / "table.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header == ["metric", "level", "Baseline (clear, L1)", "Fine-tuned (L1)", "Fine-tuned (patch-SSIM)"]
    # Both PATD flavours: against the GT's vertices (the paper's) and against dense GT surface samples.
    assert [(r[0], r[1]) for r in body] == [(m, lv) for m in ("PATD", "PIPATD", "PATD dense", "PIPATD dense")
                                           for lv in ("wild", "clear")]
    values = [[float(v) for v in r[2:]] for r in body]
    assert all(math.isfinite(v) and 0.0 < v < 100.0 for r in values for v in r)
    # PIPATD <= PATD, in each flavour
    for patd, pipatd in ((0, 2), (1, 3), (4, 6), (5, 7)):
        assert all(values[pipatd][i] <= values[patd][i] for i in range(3))
    table_md = (results / "table.md").read_text()
    assert "| PATD | wild |" in table_md and "Fine-tuned (patch-SSIM)" in table_md

    evaluation = json.loads((results / "evaluation.json").read_text())
    items = evaluation["per_item"]
    assert len(items) == 3 * 1 * 1 * 2  # models x held-out subjects x views x levels
    assert {r["model"] for r in items} == {"baseline", "l1", "ssim"}
    for item in items:
        assert abs(item["patd"] - evaluation["table"][item["model"]][item["level"]]["patd"]) < 1e-9

    report = (results / "report.md").read_text()
    for needle in ("18.78", "10.33", "7.01", "How this set-up differs", "Side by side"):
        assert needle in report, needle
    linked = [line.split("](")[1].rstrip(")\n") for line in report.splitlines() if line.startswith("![")]
    assert len(linked) >= 3
    for rel in linked:
        with open(results / rel, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", rel
    assert (results / "plots" / "training.png").is_file() and (results / "plots" / "levels.png").is_file()
    command = (results / "command.md").read_text()
    assert "avatex experiment" in command and "--budget test" in command and "| geometry |" in command


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_resumes_a_killed_training(experiment, env):
    run, args = experiment["run"], experiment["args"]
    files = [*(run / "train").glob("*/checkpoints/*.pt"), *(run / "models").glob("*.pt"),
             run / "eval" / "evaluation.json"]
    watched = {p: p.stat().st_mtime_ns for p in files}
    again = _cli(args, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stderr.count("done earlier, skipped") == len(STAGES), again.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in watched.items())

    # A fine-tune killed after its step-2 checkpoint: only its last checkpoint is gone.
    steps = get_budget("test").finetune["steps"]
    last = run / "train" / "ssim" / "checkpoints" / f"step-{steps:08d}.pt"
    before = load_checkpoint(last)[0].net_c.state_dict()
    last.unlink()
    assert (run / "train" / "ssim" / "checkpoints" / "step-00000002.pt").is_file()
    resumed = _cli(args, env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = load_checkpoint(last)[0].net_c.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # exact resume on the CPU
    for p, t in watched.items():
        if "ssim" not in p.parts and p.name != "ssim.pt" and p.name != "evaluation.json":
            assert p.stat().st_mtime_ns == t, p
    for stage in ("render", "geometry", "baseline", "l1"):
        assert f"] {stage}: done earlier, skipped" in resumed.stderr, stage
    assert "] ssim: done earlier" not in resumed.stderr


@pytest.mark.slow
def test_a_dataset_without_test_split_is_refused_clearly(experiment, env, tmp_path):
    data = tmp_path / "no_test"
    shutil.copytree(experiment["run"] / "data", data)
    manifest = json.loads((data / "manifest.json").read_text())
    for entry in manifest["subjects"].values():
        entry["split"] = "train"
    (data / "manifest.json").write_text(json.dumps(manifest))
    proc = _cli(["--out", str(tmp_path / "run"), "--budget", "test", "--data", str(data)], env, timeout=120)
    assert proc.returncode == 2
    assert "no test split" in proc.stderr and "--test-fraction" in proc.stderr


def test_the_held_out_share_is_exact():
    ids = [f"subject_{i:04d}" for i in range(12)]
    for seed in (0, 3):
        for count in (1, 2, 5):
            f = held_out_fraction(ids, count, seed)
            assert sum(split_value(s, seed) < f for s in ids) == count
    with pytest.raises(InputError):
        held_out_fraction(ids[:2], 2, 0)


def test_budgets_are_valid_data_and_bad_ones_are_refused():
    for name, b in BUDGETS.items():
        assert b.name == name and b.test_subjects < b.subjects and "clear" in b.levels
        assert json.loads(json.dumps(b.to_dict()))["name"] == name
    assert get_budget("small").with_subjects(5).test_subjects == 1
    with pytest.raises(InputError, match="unknown budget"):
        get_budget("huge")
    with pytest.raises(InputError, match="clear"):
        type(BUDGETS["test"])(name="x", summary="", subjects=3, test_subjects=1, views=1, step_deg=8,
                              resolution=64, levels=("wild", "intermediate"))


def test_budget_runs_are_valid_train_configs_that_keep_every_other_default(tmp_path):
    from backend.experiment.stages import training_configs
    from backend.train.config import TrainConfig

    defaults = TrainConfig()
    for b in BUDGETS.values():
        configs = training_configs(b, tmp_path, ["wild", "clear"], tmp_path / "train", 0, None, False)
        assert list(configs) == ["geometry", "baseline", "l1", "ssim"]
        for name, cfg in configs.items():
            run = TrainConfig.from_dict(cfg)   # validates every field
            assert run.steps == b.setting("steps", "geometry" if name == "geometry" else
                                          "baseline" if name == "baseline" else "finetune")
            assert run.patch_k == defaults.patch_k and run.ssim_variant == defaults.ssim_variant
        assert configs["ssim"]["loss"] == b.ssim_loss and configs["l1"]["loss"] == "l1"
    small = get_budget("small")
    assert small.setting("batch") == defaults.batch and small.setting("checkpoint_every") == 50
    with pytest.raises(InputError, match="steps"):
        type(BUDGETS["test"])(name="x", summary="", subjects=3, test_subjects=1, views=1, step_deg=8,
                              resolution=64, finetune={"lr": 1e-4})


def test_option_conflicts_and_the_fixture_seed_are_refused(tmp_path):
    with pytest.raises(InputError, match="test fixtures"):
        run_experiment(tmp_path / "a", budget="test", seed=8)
    with pytest.raises(InputError, match="not both"):
        run_experiment(tmp_path / "b", budget="test", data=tmp_path, meshes=MESHES)
    with pytest.raises(InputError, match="at least two"):
        run_experiment(tmp_path / "c", budget="test", meshes=MESHES[:1])


def test_a_run_folder_refuses_a_different_experiment(tmp_path):
    from backend.experiment.pipeline import _check_spec, _spec

    budget = get_budget("test")
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(_spec(budget, 0, {"kind": "synth", "subjects": 3})))
    _check_spec(path, _spec(budget, 0, {"kind": "synth", "subjects": 3}))  # the same: fine
    with pytest.raises(InputError, match="seed"):
        _check_spec(path, _spec(budget, 1, {"kind": "synth", "subjects": 3}))


def test_export_strips_the_training_state(tmp_path):
    from backend.models import ModelConfig, PIFu
    from backend.models.checkpoint import save_checkpoint

    model = PIFu(ModelConfig.small(**BUDGETS["test"].train["model_overrides"]), with_color=True)
    opt = torch.optim.Adam(model.net_c.parameters())
    for p in model.net_c.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    src = tmp_path / "train.pt"
    save_checkpoint(src, model, {"step": 7, "optimizers": {"color": opt.state_dict()},
                                 "config": {"stage": "color", "loss": "ssim"}})
    out = export_checkpoint(src, tmp_path / "export.pt", {"note": "x"})
    loaded, state = load_checkpoint(out)
    assert state == {"provenance": {"source_step": 7, "training": {
        "stage": "color", "loss": "ssim", "levels": None, "steps": None, "batch": None, "lr": None,
        "seed": None, "ssim_variant": None, "ssim_range": None, "ssim_space": None,
            "patch_min_std": None, "init": None}, "note": "x"}}
    assert out.stat().st_size < src.stat().st_size
    ref = model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())
