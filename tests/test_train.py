"""End-to-end training on a tiny relit dataset rendered here from the committed sample avatars.

One reference run (a very small CPU model, 30 steps of the L1 + patch-SSIM loss mix, fixed
seeds) serves three checks: it learns (colour loss falls, validation PATD improves on its step-0 value),
a run killed with SIGKILL after its step-15 checkpoint and resumed reproduces its step-30 weights
bitwise, and two gloo processes under torchrun reproduce its step-5 weights within float tolerance.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avatex_core.progress import Progress
from backend.errors import CancelledError
from backend.models.checkpoint import load_checkpoint
from backend.train import run_training
from backend.train.loop import latest_checkpoint
from tests.helpers.scenarios import SCENARIOS
from tests.helpers.tiny_models import TINY

ROOT = Path(__file__).resolve().parents[1]
AVATARS = ROOT / "tests" / "fixtures" / "avatars"

# A very small pair (64 px input) so that a step costs a fraction of a second on 2 cores.
STEPS = 30
KILL_AT = 15
TORCHRUN = Path(sys.executable).parent / "torchrun"


def _base_config(data: Path, out: Path, cache: Path, **kw) -> dict:
    cfg = {"data": str(data), "out": str(out), "cache_dir": str(cache), "model": "small",
           "model_overrides": TINY, "stage": "color", "loss": "l1+ssim", "steps": STEPS, "batch": 2,
           "lr": 1e-3, "seed": 0, "points_color": 500, "patches": 20, "patch_k": 5, "dense_samples": 30000,
           "workers": 1, "log_every": 5, "checkpoint_every": 5, "keep_checkpoints": 10, "val_every": 15,
           "val_max_vertices": 3000, "val_gt_samples": 50000, "progress_bar": False}
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def relit(tmp_path_factory) -> Path:
    """4 subjects (one textured OBJ, three vertex-coloured PLY) x 4 views x 2 levels at 128 px."""
    out = tmp_path_factory.mktemp("relit") / "data"
    meshes = [AVATARS / "avatar_0000.obj", AVATARS / "avatar_0001.ply", AVATARS / "avatar_0002.ply",
              AVATARS / "avatar_0003.ply"]
    missing = [m for m in meshes if not m.is_file()]
    if missing:
        pytest.fail(f"sample avatars missing: {missing}")
    cmd = [sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes", *map(str, meshes),
           "--out", str(out), "--views", "4", "--step", "90", "--levels", "wild,clear", "--resolution", "128",
           "--samples", "4", "--albedo-samples", "1", "--no-denoise", "--test-fraction", "0.3"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    splits = [s["split"] for s in json.loads((out / "manifest.json").read_text())["subjects"].values()]
    assert "test" in splits and splits.count("train") >= 2, splits
    return out


@pytest.fixture(scope="module")
def reference(relit, tmp_path_factory) -> dict:
    """The uninterrupted reference run, with every progress event it emitted."""
    work = tmp_path_factory.mktemp("train")
    events: list[tuple[str, float, dict]] = []
    cfg = _base_config(relit, work / "ref", work / "cache")
    result = run_training(cfg, progress=Progress(lambda s, f, i: events.append((s, f, i))))
    return {"result": result, "events": events, "work": work, "config": cfg}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(path)
    return {f"net_g.{k}": v for k, v in model.net_g.state_dict().items()} | \
        {f"net_c.{k}": v for k, v in model.net_c.state_dict().items()}


def _ckpt(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:08d}.pt"


@pytest.mark.slow
def test_colour_loss_falls_and_validation_patd_improves(reference):
    result = reference["result"]
    run = Path(result["run"])
    history = json.loads((run / "history.json").read_text())
    losses = [r["color"] for r in history["train"]]  # each the mean over 5 steps
    val = history["val"]
    print("colour loss:", [round(x, 4) for x in losses], "val PATD:", [round(r["patd"], 2) for r in val])
    assert len(losses) == STEPS // 5
    assert (losses[-1] + losses[-2]) / 2 < 0.9 * losses[0], losses
    assert [r["step"] for r in val] == [0, 15, 30]
    assert result["val_initial"]["patd"] == val[0]["patd"]
    assert val[-1]["patd"] < val[0]["patd"] - 2.0, [r["patd"] for r in val]
    assert val[-1]["pipatd"] <= val[-1]["patd"]
    assert {"patd/wild", "patd/clear"} <= set(val[-1])
    # What the run leaves behind: checkpoints with the full state, plot, TensorBoard, summary.
    assert result["checkpoint"] == str(_ckpt(run, STEPS))
    _, state = load_checkpoint(result["checkpoint"])
    assert state["step"] == STEPS and state["data"]["samples_seen"] == STEPS * 2
    assert set(state["optimizers"]) == {"color"} and state["config"]["loss"] == "l1+ssim"
    assert (run / "training.png").stat().st_size > 1000
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    assert json.loads((run / "summary.json").read_text())["step"] == STEPS
    stages = {s for s, _, _ in reference["events"]}
    assert {"prepare", "validate", "checkpoint", "done"} <= stages
    train_events = [i for s, _, i in reference["events"] if s in ("train", "checkpoint")]
    assert train_events[-1]["step"] == STEPS


@pytest.mark.slow
def test_resume_after_kill_reproduces_the_uninterrupted_run_bitwise(reference):
    work = reference["work"]
    run = work / "killed"
    cfg = {**reference["config"], "out": str(run)}
    proc = subprocess.run([sys.executable, str(SCENARIOS / "scenario_killed_training.py"), json.dumps(cfg),
                           str(KILL_AT)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert latest_checkpoint(run) == _ckpt(run, KILL_AT)
    result = run_training({"out": str(run), "resume": True})
    assert result["step"] == STEPS
    ref = _weights(_ckpt(Path(reference["result"]["run"]), STEPS))
    got = _weights(_ckpt(run, STEPS))
    assert ref.keys() == got.keys()
    differing = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert not differing, f"resumed weights differ from the uninterrupted run: {differing[:5]}"
    # The history continues where the checkpoint left it (no duplicated or missing rows).
    history = json.loads((run / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == list(range(5, STEPS + 1, 5))


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(reference):
    work = reference["work"]
    run = work / "ddp"
    cfg = {**reference["config"], "out": str(run), "steps": 5, "val_subjects": 0, "workers": 0}
    script = work / "ddp_run.py"
    script.write_text("import json, sys\nfrom backend.train import run_training\n"
                      "run_training(json.loads(sys.argv[1]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(script), json.dumps(cfg)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref_run = Path(reference["result"]["run"])
    init = _weights_at_init(reference["config"])
    ref = _weights(_ckpt(ref_run, 5))
    got = _weights(_ckpt(run, 5))
    # netG is frozen: identical. netC: equal up to the order of float sums (all-reduce vs one batch),
    # which Adam's normalised first steps can amplify for near-zero gradients; compare the difference
    # with how far training moved the weights.
    for k in ref:
        if k.startswith("net_g."):
            assert torch.equal(ref[k], got[k]), k
    moved = torch.cat([(ref[k] - init[k]).flatten() for k in ref if k.startswith("net_c.")])
    diff = torch.cat([(ref[k] - got[k]).flatten() for k in ref if k.startswith("net_c.")])
    assert moved.norm() > 0
    print(f"DDP vs single: |diff|/|moved| = {(diff.norm() / moved.norm()).item():.2e}, "
          f"max |diff| = {diff.abs().max().item():.2e}, max |moved| = {moved.abs().max().item():.2e}")
    assert diff.norm() / moved.norm() < 0.05, (diff.norm() / moved.norm()).item()
    assert diff.abs().max() < 0.2 * 5 * reference["config"]["lr"]
    _, state = load_checkpoint(_ckpt(run, 5))
    _, ref_state = load_checkpoint(_ckpt(ref_run, 5))
    # Same global batch, so the same logged (rank-averaged) losses up to float rounding.
    assert state["history"]["train"][0]["loss"] == pytest.approx(ref_state["history"]["train"][0]["loss"],
                                                                 rel=1e-4)


def _weights_at_init(cfg: dict) -> dict[str, torch.Tensor]:
    from backend.models import ModelConfig, PIFu

    torch.manual_seed(cfg["seed"])
    model = PIFu(ModelConfig.small(**cfg["model_overrides"]))
    return {f"net_g.{k}": v for k, v in model.net_g.state_dict().items()} | \
        {f"net_c.{k}": v for k, v in model.net_c.state_dict().items()}


@pytest.mark.slow
def test_should_stop_checkpoints_then_cancels(relit, tmp_path):
    run = tmp_path / "stopped"
    cfg = _base_config(relit, run, tmp_path / "cache", steps=5, val_subjects=0, workers=0, patches=8,
                       dense_samples=20000)
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 2

    with pytest.raises(CancelledError, match="step 2 of 5"):
        run_training(cfg, progress=Progress(should_stop=should_stop))
    assert latest_checkpoint(run) == _ckpt(run, 2)
    _, state = load_checkpoint(_ckpt(run, 2))
    assert state["step"] == 2
    # Changing what the run computes is refused on resume; extending it is allowed.
    from backend.errors import InputError

    with pytest.raises(InputError, match="cannot change loss"):
        run_training({"out": str(run), "resume": True, "loss": "l1"})
    result = run_training({"out": str(run), "resume": str(run), "steps": 3})
    assert result["step"] == 3


def test_recon_to_view_inverts_the_reconstruction_framing(relit):
    """Framed-image pixels mapped back with recon_to_view land on the same subject pixels of the view."""
    import numpy as np

    from avatex_core.canonical import to_pixels
    from backend.recon.framing import frame_subject
    from backend.train.source import open_source
    from backend.train.validate import recon_to_view

    source = open_source(relit)
    sid = source.subjects("train")[0]
    for view in source.views(sid)[:2]:
        rgba = source.rgba(sid, view, source.levels()[0])
        size = 96  # a framing size different from the render's, so the crop really rescales
        framed = frame_subject(rgba, size=size)
        rows, cols = np.nonzero(framed.mask > 0.9)
        u = cols / (size - 1) * 2 - 1
        y = -(rows / (size - 1) * 2 - 1)
        pts = np.stack([u, y, np.zeros_like(u)], axis=1)
        back = recon_to_view(pts, framed.crop, rgba.shape[:2], size)
        px = np.rint(to_pixels(np.stack([back[:, 0], -back[:, 1]], axis=1), rgba.shape[0])).astype(int)
        px = np.clip(px, 0, rgba.shape[0] - 1)
        hit = rgba[px[:, 1], px[:, 0], 3] > 127
        assert hit.mean() > 0.97, hit.mean()
        # z scales like x: a unit step in framed x maps to the same length as a unit step in z.
        steps = np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0, 0.1]])
        d = recon_to_view(steps, framed.crop, rgba.shape[:2], size)
        assert np.linalg.norm(d[1] - d[0]) == pytest.approx(np.linalg.norm(d[2] - d[0]), rel=1e-9)


@pytest.mark.slow
def test_cli_trains_and_first_ctrl_c_checkpoints_and_stops(relit, tmp_path):
    """`avatex train` end to end with a worker process; SIGINT to the whole process group (what a
    terminal's Ctrl-C does) makes the run checkpoint and exit with the cancellation message."""
    import time

    run = tmp_path / "cli"
    cfg = tmp_path / "tiny.toml"
    inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in TINY.items())
    cfg.write_text(f"model_overrides = {{{inline}}}\n"
                   f'cache_dir = "{tmp_path / "cache"}"\npoints_color = 300\ndense_samples = 20000\n'
                   "checkpoint_every = 2\nlog_every = 1\nval_subjects = 0\n")
    cmd = [sys.executable, "-m", "backend", "train", "--data", str(relit), "--out", str(run), "--config",
           str(cfg), "--loss", "l1", "--steps", "200", "--batch", "2", "--workers", "1", "--no-progress-bar"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while latest_checkpoint(run) is None:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, err[-2000:]
    assert "training stopped at step" in err and "--resume" in err
    last = latest_checkpoint(run)
    _, state = load_checkpoint(last)
    assert 2 <= state["step"] < 200 and last.name == f"step-{state['step']:08d}.pt"


def test_fine_tunes_from_official_format_files_with_geometry_frozen(relit, tmp_path):
    """--init-g/--init-c: official raw state_dict files (written here by export_official from a tiny
    model) load strictly; colour fine-tuning leaves every netG weight untouched and moves netC."""
    from backend.models import ModelConfig, PIFu
    from backend.models.checkpoint import export_official

    torch.manual_seed(3)
    start = PIFu(ModelConfig.small(**TINY))
    files = export_official(start, tmp_path / "official")
    cfg = _base_config(relit, tmp_path / "ft", tmp_path / "cache", steps=3, val_subjects=0, workers=0,
                       init_g=str(files["net_G"]), init_c=str(files["net_C"]), loss="ssim", patches=8,
                       dense_samples=20000, checkpoint_every=3)
    result = run_training(cfg)
    tuned, state = load_checkpoint(result["checkpoint"])
    for (k, a), b in zip(start.net_g.state_dict().items(), tuned.net_g.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"netG weight {k} changed while geometry was frozen"
    moved = [not torch.equal(a, b) for a, b in zip(start.net_c.state_dict().values(),
                                                   tuned.net_c.state_dict().values(), strict=True)]
    assert all(moved)
    assert state["config"]["init_g"] == str(files["net_G"]) and set(state["optimizers"]) == {"color"}
