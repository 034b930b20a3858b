"""``avatex protocol`` on real clothed avatars: the guards that keep the test split out of every choice
(fast), and one end-to-end smoke run (slow): Blender renders the committed VALID avatars and renamed
copies, micro nets are pretrained on three committed anny avatars and fine-tuned six ways for two seeds,
and the report states cells and paired differences with intervals over test persons.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.errors import InputError
from backend.experiment import population as pop
from backend.experiment import protocol
from backend.experiment.protocol_budgets import (
    COLUMNS,
    PROTOCOL_BUDGETS,
    estimate_seconds,
    get_protocol_budget,
)
from tests.test_population_split import make_population

ROOT = Path(__file__).resolve().parents[1]
AVATARS = ROOT / "tests" / "fixtures" / "avatars"
SMOKE_COPIES = {"Black_M_3_Milit": ["Asian_M_2_Busi"], "Hispanic_F_2_Util": ["MENA_F_2_Util"],
                "White_M_1_Casual": ["NHPI_M_1_Medi"]}


def test_test_metrics_are_refused_outside_the_report_stage(tmp_path):
    with pytest.raises(InputError, match="only by the protocol's report stage"):
        protocol.read_test_evaluation(tmp_path / "seed_0" / "eval_test" / "evaluation.json")
    with pytest.raises(InputError, match="only by the protocol's report stage"):
        protocol._evaluate({}, tmp_path, tmp_path / "eval_test", PROTOCOL_BUDGETS["test"], ["clear"], "cpu")
    with protocol.reading_test(), pytest.raises(InputError, match="cannot read the evaluation"):
        protocol.read_test_evaluation(tmp_path / "missing.json")  # allowed there: fails only on the file


def test_no_training_run_may_read_the_test_dataset(tmp_path):
    b = PROTOCOL_BUDGETS["test"]
    kwargs = dict(data_a=tmp_path / "a", b_levels=["wild", "clear"], a_levels=["clear"],
                  train_dir=tmp_path / "train", seed=0, device="cpu", progress_bar=False)
    configs = protocol.training_configs(b, data_b=tmp_path / "b_dev", data_test=tmp_path / "b_test", **kwargs)
    assert set(configs) == {"geometry", "baseline", *COLUMNS[1:]}
    assert {c["data"] for c in configs.values()} == {str(tmp_path / "a"), str(tmp_path / "b_dev")}
    assert configs["control"]["levels"] == ["clear"] and configs["l1"]["levels"] is None
    assert configs["ssim_seed"]["ssim_variant"] == "seed" and configs["ssim_seed"]["loss"] == "ssim"
    assert configs["l1_ssim"]["loss"] == "l1+ssim"
    assert len({c["steps"] for n, c in configs.items() if n in COLUMNS[1:]}) == 1  # compute-matched
    with pytest.raises(InputError, match="would read the test dataset"):
        protocol.training_configs(b, data_b=tmp_path / "b_test", data_test=tmp_path / "b_test", **kwargs)


def test_capped_splits_keep_persons_apart_and_prefer_many_persons(tmp_path):
    avatars = pop.read_population(make_population(tmp_path / "valid"))
    split = pop.split_population(avatars, seed=0)
    capped = protocol.limit_split(split, avatars, {"train": 3, "val": 1, "test": 3})
    group = {a.name: a.group for a in avatars}
    assert {len(v) for v in capped.values()} <= {1, 3}
    assert {group[n] for n in capped["test"]} == {"Black_M_3", "Hispanic_F_2", "White_M_1"}
    for s, names in capped.items():
        assert set(names) <= set(split[s])
        assert len({group[n] for n in names}) == len(names)  # one avatar per person before a second


@pytest.mark.slow
def test_cli_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-m", "backend", "protocol", "--out", str(tmp_path / "run"),
                          "--population-b", "tests/fixtures/valid", "--budget", "huge"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "unknown protocol budget 'huge'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    # Only the three always-test persons: nothing left to train or validate on.
    with pytest.raises(InputError, match="leave the train, val split empty"):
        protocol.run_protocol(tmp_path / "run", population_b=ROOT / "tests" / "fixtures" / "valid",
                              budget="test", seeds=(0,))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_medium_fits_its_budget_on_the_measured_unit_costs():
    b = get_protocol_budget("medium")
    est = estimate_seconds(b, a_train=11, a_held=2, b_counts={"train": 34, "val": 13, "test": 13}, seeds=3)
    assert 1.5 * 3600 < sum(est.values()) < 2.5 * 3600, est
    with pytest.raises(InputError, match="unknown protocol budget"):
        get_protocol_budget("huge")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, monkeypatch_module):
    tmp = tmp_path_factory.mktemp("protocol")
    b_dir = make_population(tmp / "valid", SMOKE_COPIES)
    a_dir = tmp / "a"
    a_dir.mkdir()
    for i in (0, 1, 3):  # avatar_0002 stays unseen (the demo's held-out anny avatar)
        shutil.copy(AVATARS / f"avatar_{i:04d}.ply", a_dir)
    monkeypatch_module.setenv("AVATEX_CACHE", str(tmp / "cache"))
    budget = dataclasses.replace(PROTOCOL_BUDGETS["test"], b_max={"train": 2, "val": 1, "test": 2})
    kwargs = dict(population_b=b_dir, population_a=a_dir, budget=budget, seeds=(0, 1), device="cpu",
                  threads=1, verbose=False)
    result = protocol.run_protocol(tmp / "run", **kwargs)
    return {"result": result, "run": tmp / "run", "kwargs": kwargs}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.slow
def test_smoke_run_reports_every_cell_with_intervals(smoke):
    run = smoke["run"]
    split = json.loads((run / "split.json").read_text())
    groups = pop.groups_by_split(split)
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"]
                or groups["val"] & groups["test"])
    assert groups["test"] <= {"Black_M_3", "Hispanic_F_2", "White_M_1"} and len(groups["test"]) == 2
    data = json.loads((run / "results" / "protocol.json").read_text())
    assert data["seeds"] == [0, 1]
    for metric in ("patd_dense", "pipatd_dense", "patd", "pipatd"):
        for m in COLUMNS:
            for level in ("wild", "clear"):
                c = data["cells"][metric][m][level]
                assert c["n"] == 2 and c["low"] <= c["mean"] <= c["high"] and 0 < c["mean"] < 100
                assert c["seed_sd"] is not None
    # Seeds train different nets: the baseline's two seeds differ.
    base = data["values"]["values"]["patd_dense"]["baseline"]["wild"]
    assert base[0] != base[1]
    diffs = {(d["a"], d["b"], d["level"], d["metric"]) for d in data["differences"]}
    assert ("ssim_seed", "l1", "wild", "patd_dense") in diffs
    assert ("l1", "control", "clear", "pipatd_dense") in diffs
    text = (run / "results" / "protocol.md").read_text()
    assert "Smoke run" in text and "within noise" in text and "Choice made on validation" in text
    val = json.loads((run / "results" / "validation.json").read_text())
    assert val["choice"]["best"] in ("l1", "ssim_seed", "ssim_local", "l1_ssim")
    assert val["cells"]["subjects"] != data["values"]["subjects"]  # validation persons are not test's
    # The test dataset holds only test avatars; training never saw its folder.
    from backend.data.dataset import Dataset

    assert set(Dataset(run / "data" / "b_test").subjects()) == {r["avatar"] for r in split["splits"]["test"]}
    dev = Dataset(run / "data" / "b_dev")
    assert set(dev.split("test")) == {r["avatar"] for r in split["splits"]["val"]}  # validation
    assert set(dev.split("train")) == {r["avatar"] for r in split["splits"]["train"]}
    for cfg in (run / "seed_0" / "train").glob("*/config.json"):
        assert "b_test" not in json.loads(cfg.read_text())["data"]
    # Side-by-side images of the test avatars, one row per level: input | GT | 4 models | 4 heatmaps.
    from PIL import Image

    images = sorted((run / "results" / "images").glob("*.png"))
    assert [p.stem for p in images] == sorted(r["avatar"] for r in split["splits"]["test"])
    for path in images:
        assert f"images/{path.name}" in text
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
        assert rgb.shape[1] > rgb.shape[0]  # ten columns, two rows
        assert (np.abs(np.diff(rgb, axis=1)).sum(axis=2) > 60).mean() > 0.01  # drawn, not blank
    kept = json.loads((run / "figures" / "eval" / "evaluation.json").read_text())
    assert {r["model"] for r in kept["per_item"]} == set(protocol.FIGURE_COLUMNS)
    # The figures' reconstructions are the test evaluation's: the same vertex PATD per item.
    seed0 = {(r["model"], r["subject"], r["level"]): r["patd"] for r in data_per_item(run, 0)}
    for r in kept["per_item"]:
        assert r["patd"] == pytest.approx(seed0[r["model"], r["subject"], r["level"]], abs=1e-4)


def data_per_item(run: Path, seed: int) -> list[dict]:
    with protocol.reading_test():
        return protocol.read_test_evaluation(run / f"seed_{seed}" / "eval_test" / "evaluation.json").per_item


def test_figure_subjects_spread_over_the_sorted_split():
    names = [f"p{i:02d}" for i in range(13)][::-1]
    assert protocol.figure_subjects(names) == ["p00", "p06", "p12"]
    assert protocol.figure_subjects(names[:2]) == ["p11", "p12"]
    assert protocol.figure_subjects(names, count=1) == ["p00"]


@pytest.mark.slow
def test_patch_study_trains_variants_from_the_baseline_and_scores_validation_only(smoke):
    from backend.experiment.patch_study import REFERENCE, run_study

    run = smoke["run"]
    summary = run_study(run, only=["skip_flat", "lab"], device="cpu", threads=1, verbose=False)
    assert set(summary["variants"]) == {REFERENCE, "skip_flat", "lab"} and summary["seeds"] == [0, 1]
    split = json.loads((run / "split.json").read_text())
    val_avatars = {r["avatar"] for r in split["splits"]["val"]}
    assert set(summary["values"]["avatars"]) == val_avatars
    for seed in (0, 1):
        baseline = sorted((run / f"seed_{seed}" / "train" / "baseline" / "checkpoints").glob("*.pt"))[-1]
        for name, key, value in (("skip_flat", "patch_min_std", 0.02), ("lab", "ssim_space", "lab")):
            cfg = json.loads((run / f"seed_{seed}" / "study" / name / "config.json").read_text())
            assert cfg[key] == value and cfg["loss"] == "l1+ssim" and "b_test" not in cfg["data"]
            assert Path(cfg["init"]).resolve() == baseline.resolve()
        assert not (run / f"seed_{seed}" / "study" / REFERENCE).exists()   # the column is reused
        assert not list((run / f"seed_{seed}" / "study").rglob("eval_test"))
    for row in summary["variants"].values():
        for level in ("wild", "clear"):
            cell = row["levels"][level]["cell"]
            assert cell["n"] == 1 and 0 < cell["mean"] < 100
        assert 0 <= row["diagnostics"]["std_ratio"] < 10 and 0 <= row["diagnostics"]["flat"] <= 1
    assert summary["variants"]["skip_flat"]["levels"]["wild"]["vs_reference"] is not None
    assert summary["best"] in summary["variants"]
    text = (run / "study" / "study.md").read_text()
    assert "validation only" in text and "skip_flat" in text and "patch_min_std = 0.02" in text
    with pytest.raises(InputError, match="unknown study variant"):
        run_study(run, only=["bigger"], device="cpu", threads=1, verbose=False)


@pytest.mark.slow
def test_rerun_resumes_and_test_is_touched_once(smoke):
    run, kwargs = smoke["run"], smoke["kwargs"]
    finals = sorted((run / "seed_0" / "train").glob("*/checkpoints/*.pt"))
    stamps = [p.stat().st_mtime_ns for p in finals]
    again = protocol.run_protocol(run, **kwargs)
    assert again["cells"] == smoke["result"]["cells"]
    assert [p.stat().st_mtime_ns for p in finals] == stamps  # nothing retrained
    # Another model under the same run (a re-trained column) must not be evaluated on test again.
    from backend.experiment.stages import export_checkpoint

    model = run / "seed_1" / "models" / "l1.pt"
    export_checkpoint(run / "seed_1" / "models" / "control.pt", model, {"tampered": True})
    with pytest.raises(InputError, match="touches test once"):
        protocol.run_protocol(run, **kwargs)


def test_a_resumed_run_may_see_new_cost_estimates_but_not_other_settings(tmp_path):
    b = PROTOCOL_BUDGETS["small"]
    spec = {"format": protocol.FORMAT, "budget": json.loads(json.dumps(b.to_dict(), default=list)),
            "seeds": [0, 1, 2]}
    (tmp_path / "protocol.json").write_text(json.dumps(spec))
    cheaper = dataclasses.replace(b, cost={**b.cost, "color_step_s": 0.1}, summary="re-measured")
    protocol._check_spec(tmp_path / "protocol.json",
                         {**spec, "budget": json.loads(json.dumps(cheaper.to_dict(), default=list))})
    longer = dataclasses.replace(b, a_subjects=b.a_subjects + 1)
    with pytest.raises(InputError, match="holds a different protocol run"):
        protocol._check_spec(tmp_path / "protocol.json",
                             {**spec, "budget": json.loads(json.dumps(longer.to_dict(), default=list))})
