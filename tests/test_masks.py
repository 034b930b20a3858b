"""Automatic person masks (backend/masks.py): real renders of held-out avatars over real photographs.

The composites are the renderer's front views of tests/fixtures/valid over tests/fixtures/photos; their
true mask is the render's alpha, so every IoU below is measured, not assumed.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend import masks
from backend.cli import main as cli_main
from backend.errors import InputError, NotAvailableError
from backend.masks import composite, has_cutout, iou, person_mask
from backend.meshio import load_mesh
from backend.metrics.geometry import cm_per_canonical_unit, geometry_metrics
from backend.models.checkpoint import load_checkpoint
from backend.recon import reconstruct
from backend.recon.analytic import body_image
from tests.conftest import ROOT
from tests.helpers.photos import photos, render_front_views

CHECKPOINT = ROOT / "backend" / "assets" / "pifu_small.pt"


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[str, np.ndarray]:
    return render_front_views(tmp_path_factory.mktemp("valid") / "ds")


@pytest.fixture(scope="module")
def backgrounds() -> dict[str, np.ndarray]:
    return photos()


def plain_composite() -> tuple[np.ndarray, np.ndarray]:
    """The analytic body over a flat, slightly noisy backdrop (a studio wall): (RGB image, true alpha)."""
    body = body_image(160)
    rng = np.random.default_rng(0)
    wall = (np.full((120, 160, 3), (200, 196, 188)) + rng.integers(0, 16, (120, 160, 3))).astype(np.uint8)
    return composite(body, wall), body[:, :, 3]


def test_the_photographs_are_real_shipped_jpegs(backgrounds):
    assert sorted(backgrounds) == ["dune", "garden", "storm", "wood"]
    folder = ROOT / "tests" / "fixtures" / "photos"
    assert (folder / "LICENSE-GPL-2").is_file() and "GPL" in (folder / "README.md").read_text()
    for name, img in backgrounds.items():
        assert (folder / f"{name}.jpg").stat().st_size <= 300_000
        assert img.shape[1] == 800 and img.std() > 10   # a photograph, not a flat colour


def test_has_cutout_follows_the_framing_rule():
    body = body_image(64)
    assert has_cutout(body)
    opaque = body.copy()
    opaque[:, :, 3] = 255
    assert not has_cutout(opaque) and not has_cutout(body[:, :, :3])


def test_grabcut_masks_a_subject_on_a_plain_backdrop():
    image, alpha = plain_composite()
    mask = masks.grabcut_mask(image)
    assert mask.dtype == np.uint8 and mask.shape == alpha.shape and set(np.unique(mask)) <= {0, 255}
    assert iou(mask, alpha) >= 0.95
    assert np.array_equal(mask, masks.grabcut_mask(image))   # seeded: the same image, the same mask


def test_auto_falls_back_to_grabcut_when_the_pose_model_is_missing(monkeypatch):
    image, alpha = plain_composite()
    monkeypatch.setattr(masks, "mediapipe_available", lambda: False)
    result = person_mask(image)
    assert result.method == "grabcut" and "avatex[masks]" in result.note
    assert iou(result.mask, alpha) >= 0.95
    with pytest.raises(NotAvailableError, match=r"avatex\[masks\]"):
        person_mask(image, "pose")
    with pytest.raises(InputError, match="unknown mask method"):
        person_mask(image, "magic")


def test_mask_cli_writes_refuses_to_overwrite_and_reports(tmp_path, capsys):
    image, alpha = plain_composite()
    src = tmp_path / "photo.jpg"
    Image.fromarray(image).save(src, quality=95)
    out = tmp_path / "mask.png"
    assert cli_main(["mask", str(src), "--out", str(out), "--method", "grabcut"]) == 0
    assert "grabcut mask" in capsys.readouterr().out
    written = np.asarray(Image.open(out))
    assert written.shape == alpha.shape and iou(written, alpha) >= 0.95
    out.write_bytes(b"keep me")
    assert cli_main(["mask", str(src), "--out", str(out), "--method", "grabcut"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert cli_main(["mask", str(src), "--out", str(out), "--method", "grabcut", "--overwrite"]) == 0
    assert iou(np.asarray(Image.open(out)), alpha) >= 0.95
    assert cli_main(["mask", str(tmp_path / "none.jpg"), "--out", str(tmp_path / "m.png")]) == 2
    assert "image not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.blender
def test_pose_mask_iou_is_at_least_0_9_on_every_composite(renders, backgrounds):
    assert masks.mediapipe_available(), "the masks extra is part of the project's environment"
    ious = {}
    for avatar, rgba in renders.items():
        for photo, background in backgrounds.items():
            result = person_mask(composite(rgba, background))
            assert result.method == "pose", (avatar, photo, result.note)
            ious[avatar, photo] = iou(result.mask, rgba[:, :, 3])
    assert len(ious) == 12
    assert min(ious.values()) >= 0.9, ious


@pytest.mark.slow
@pytest.mark.blender
def test_reconstruct_cli_masks_a_composite_itself(renders, backgrounds, tmp_path, capsys):
    avatar = "White_M_1_Casual"
    rgba = renders[avatar]
    photo = tmp_path / "storm_composite.jpg"
    Image.fromarray(composite(rgba, backgrounds["storm"])).save(photo, quality=92)
    out = tmp_path / "from_photo.ply"
    assert cli_main(["reconstruct", str(photo), "--checkpoint", str(CHECKPOINT), "--out", str(out),
                     "--resolution", "96", "--device", "cpu", "--no-progress"]) == 0
    assert "automatic pose mask" in capsys.readouterr().out
    assert cli_main(["reconstruct", str(photo), "--checkpoint", str(CHECKPOINT), "--out",
                     str(tmp_path / "x.ply"), "--no-auto-mask", "--no-progress"]) == 2
    assert "a mask is needed" in capsys.readouterr().err

    model, _ = load_checkpoint(CHECKPOINT, device="cpu")
    ref = reconstruct(model, rgba, resolution=96, device="cpu")
    got = load_mesh(out)
    cm = cm_per_canonical_unit(1.8145)   # White_M_1_Casual's height (tests/fixtures/valid/index.csv)
    g = geometry_metrics(got.vertices, got.faces, ref.vertices, ref.faces, cm_per_unit=cm)
    assert g.chamfer_cm < 1.5, g   # the same person, framed from a slightly different silhouette
    far = geometry_metrics(got.vertices, got.faces, ref.vertices * 1.1, ref.faces, cm_per_unit=cm)
    assert far.chamfer_cm > 2 * g.chamfer_cm   # the bound separates a different shape


@pytest.mark.slow
def test_server_reconstruct_masks_a_photo_and_returns_the_mask(tmp_path):
    import shutil

    from avatex_core.client import BackendError, Client
    from tests.helpers.server import running_server

    shutil.copy(CHECKPOINT, tmp_path / "small.pt")
    image, alpha = plain_composite()
    expected = masks.grabcut_mask(image)
    with running_server(roots=[tmp_path], devices=["cpu"]) as server, Client(server.endpoint) as client:
        args = {"checkpoint": "small.pt", "resolution": 32, "mask_method": "grabcut"}
        res = client.call("reconstruct", args, {"image": image}, timeout=300)
        assert res.result["mask"] == {"method": "grabcut"} and res.result["vertices"] > 0
        np.testing.assert_array_equal(res.arrays["mask"], expected)
        assert res.arrays["mask"].dtype == np.uint8 and iou(res.arrays["mask"], alpha) >= 0.95
        rgba = body_image(300)
        res = client.call("reconstruct", {"checkpoint": "small.pt", "resolution": 32}, {"image": rgba},
                          timeout=300)
        assert res.result["mask"] == {"method": "alpha"} and "mask" not in res.arrays
        with pytest.raises(BackendError, match="a mask is needed"):
            client.call("reconstruct", {"checkpoint": "small.pt", "resolution": 32, "auto_mask": False},
                        {"image": image}, timeout=300)
        with pytest.raises(BackendError, match="not both"):
            client.call("reconstruct", {"checkpoint": "small.pt", "weights": "pifu"}, {"image": image},
                        timeout=60)
