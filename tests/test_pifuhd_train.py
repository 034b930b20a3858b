"""PIFuHD training from an avatex dataset: the renderer's normal pass, the normal nets, the fine level."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avatex_core.render_settings import RenderSettings
from backend.data.dataset import Dataset
from backend.errors import InputError
from backend.models.pifuhd import PIFuHD, small_options
from backend.train.pifuhd import (
    HDTrainSettings,
    normal_loss,
    train_coarse,
    train_fine,
    train_normals,
    weighted_bce,
)
from tests.conftest import ROOT

AVATARS = ROOT / "tests" / "fixtures" / "avatars"


@pytest.fixture(scope="module")
def normals_data(tmp_path_factory) -> Path:
    """2 subjects x 2 views x 1 level at 128 px, with normal maps."""
    out = tmp_path_factory.mktemp("hd") / "data"
    cmd = [sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes",
           str(AVATARS / "avatar_0001.ply"), str(AVATARS / "avatar_0002.ply"), "--out", str(out),
           "--views", "2", "--step", "90", "--levels", "clear", "--resolution", "128", "--samples", "2",
           "--albedo-samples", "1", "--no-denoise", "--test-fraction", "0", "--normals"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    return out


def test_normals_stay_out_of_the_identity_unless_asked():
    """Existing datasets keep their settings identity (and so stay resumable)."""
    assert "normals" not in RenderSettings().identity()
    assert RenderSettings(normals=True).identity()["normals"] is True
    assert RenderSettings.from_dict(RenderSettings(normals=True).to_dict()).normals


def test_losses_are_the_documented_ones():
    labels = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    pred = torch.tensor([[[0.5, 0.5, 0.5, 0.5]]])
    # λ = 0.75: inside 0.75·log 2 once, outside 0.25·log 2 three times, over 4 points
    assert weighted_bce(pred, labels).item() == pytest.approx((0.75 + 0.75) * np.log(2) / 4, rel=1e-5)
    t = torch.zeros(1, 3, 4, 4)
    p = t.clone()
    p[..., 2:] = 0.5   # a step edge: L1 and gradient terms both see it
    m = torch.ones(1, 1, 4, 4)
    # 24 of 48 values off by 0.5; 12 horizontal differences off by 0.5; per masked value
    assert normal_loss(p, t, m, w_grad=0).item() == pytest.approx(0.5 * 24 / 48)
    assert normal_loss(p, t, m, w_grad=1).item() == pytest.approx((0.5 * 24 + 0.5 * 12) / 48)


@pytest.mark.slow
def test_renderer_writes_front_and_back_normal_maps(normals_data):
    ds = Dataset(normals_data)
    sid = ds.subjects()[0]
    record = json.loads((ds.view_dir(sid, 0) / "view.json").read_text())
    assert record["normals"] == {"front": "normals_front.png", "back": "normals_back.png"}
    front, back = ds.normal_maps(sid, 0)
    mask = ds.mask(sid, 0) > 0.5
    assert front.shape == back.shape == (*mask.shape, 3)
    np.testing.assert_allclose(np.linalg.norm(front[mask], axis=1), 1.0, atol=1e-4)
    assert front[mask][:, 2].mean() > 0.5 and back[mask][:, 2].mean() < -0.5   # toward / away from camera
    on_back = np.linalg.norm(back, axis=2) > 0.5
    assert (on_back & mask).sum() / (on_back | mask).sum() > 0.95   # the mirrored back view lines up
    rows = np.nonzero(mask.any(1))[0]
    assert front[rows[0]][mask[rows[0]]][:, 1].mean() > 0.5   # the top of the head faces up
    cx = np.nonzero(mask)[1].mean()
    left, right = mask.copy(), mask.copy()
    left[:, int(cx) - 2:] = False
    right[:, :int(cx) + 3] = False
    assert front[left][:, 0].mean() < -0.1 < 0.1 < front[right][:, 0].mean()   # x points right
    assert back[left][:, 0].mean() < -0.1 < 0.1 < back[right][:, 0].mean()


@pytest.mark.slow
@pytest.mark.timeout(1800)   # minutes on a shared 2-core machine
def test_normal_nets_and_fine_level_train_from_the_dataset(normals_data):
    torch.manual_seed(0)
    model = PIFuHD(*small_options(64, normal_ngf=8))
    losses = train_normals(model, normals_data, HDTrainSettings(steps=25, batch=2, lr=2e-3))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    normal_nets = {k: v.clone() for k, v in model.netG.netF.state_dict().items()}
    geometry = {"batch": 2, "lr": 1e-3, "points": 500, "dense_samples": 10_000}
    losses = train_coarse(model, normals_data, HDTrainSettings(steps=20, **geometry))
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses
    assert all(torch.equal(v, model.netG.netF.state_dict()[k]) for k, v in normal_nets.items())
    coarse = {k: v.clone() for k, v in model.netG.state_dict().items()}
    fine_before = model.mlp.filters[0].weight.clone()
    losses = train_fine(model, normals_data, HDTrainSettings(steps=25, **geometry))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert all(torch.equal(v, model.netG.state_dict()[k]) for k, v in coarse.items())   # frozen
    assert not torch.equal(fine_before, model.mlp.filters[0].weight)


@pytest.mark.slow
def test_normal_training_needs_normal_maps(tmp_path):
    with pytest.raises(InputError, match="is not|no avatex|manifest"):
        train_normals(PIFuHD(*small_options(32, normal_ngf=4)), tmp_path, HDTrainSettings(steps=1))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_train_hd_cli_trains_the_fine_level_of_a_release_layout_file(normals_data, tmp_path, capsys):
    from backend.cli import main
    from backend.models.pifuhd import load_pifuhd, save_pifuhd

    torch.manual_seed(0)
    init = save_pifuhd(tmp_path / "init.pt", PIFuHD(*small_options(64, normal_ngf=8)))
    out = tmp_path / "fine.pt"
    argv = ["train-hd", "--data", str(normals_data), "--out", str(out), "--init", str(init),
            "--parts", "fine", "--steps", "3", "--points", "300", "--dense-samples", "10000",
            "--device", "cpu"]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    before, _ = load_pifuhd(init, device="cpu")
    after, rest = load_pifuhd(out, device="cpu")      # strict, release layout
    assert all(torch.equal(v, after.netG.state_dict()[k]) for k, v in before.netG.state_dict().items())
    assert not torch.equal(before.mlp.filters[0].weight, after.mlp.filters[0].weight)
    record = rest["train_state"]["avatex_train_hd"]
    assert record["parts"] == ["fine"] and record["steps"] == 3
    assert len(record["loss_first_last"]["fine"]) == 2
    stamp = out.read_bytes()
    assert main(argv) == 2                             # no silent overwrite, refused before the work
    assert "exists" in capsys.readouterr().err and out.read_bytes() == stamp
