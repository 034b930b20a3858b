"""The network sees one input for one image and mask, whichever path feeds it: training, reconstruction,
evaluation. The mask is applied once, as in training, so soft silhouette pixels are ``(2 rgb - 1) m``.

The image is a fixture avatar drawn front-on at 8x and box-filtered to 64 px, so its silhouette edge
has fractional alpha, and framed so that ``frame_subject``'s crop is the whole image (the subject spans
56 of 64 px, as 450 of 512): then every path must hand the image filters the very same tensor. The
tensors are caught by forward pre-hooks on the real nets' image filters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from backend.evaluation.run import color_vertices
from backend.meshio import load_mesh
from backend.models import ModelConfig, PIFu
from backend.recon import reconstruct
from backend.recon.framing import frame_subject, network_image
from backend.train.config import TrainConfig
from backend.train.data import image_tensors
from backend.train.loop import Objective
from backend.train.validate import query_colors
from tests.helpers.tiny_models import TINY

AVATAR = Path(__file__).resolve().parent / "fixtures" / "avatars" / "avatar_0000.ply"
SIZE = TINY["load_size"]
SUPER = 8


def avatar_rgba() -> np.ndarray:
    """(SIZE, SIZE, 4) uint8: the avatar seen from the front (-y), subject 450/512 of the height."""
    mesh = load_mesh(AVATAR)
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)
    rgb = np.asarray(mesh.per_vertex_colors(), np.float64)
    height = v[:, 2].max() - v[:, 2].min()
    scale = SIZE * SUPER * 450.0 / 512.0 / height
    x = (v[:, 0] - 0.5 * (v[:, 0].max() + v[:, 0].min())) * scale + SIZE * SUPER / 2
    y = (0.5 * (v[:, 2].max() + v[:, 2].min()) - v[:, 2]) * scale + SIZE * SUPER / 2
    colour_img = Image.new("RGB", (SIZE * SUPER, SIZE * SUPER))
    alpha_img = Image.new("L", (SIZE * SUPER, SIZE * SUPER))
    paint, cut = ImageDraw.Draw(colour_img), ImageDraw.Draw(alpha_img)
    order = np.argsort(-v[f, 1].mean(axis=1))  # far (large y) first: the nearest face wins
    polygons = np.stack([x[f[order]], y[f[order]]], axis=2).tolist()
    fills = np.rint(rgb[f[order]].mean(axis=1) * 255).astype(int).tolist()
    for poly, fill in zip(polygons, fills, strict=True):
        paint.polygon([tuple(p) for p in poly], fill=tuple(fill))
        cut.polygon([tuple(p) for p in poly], fill=255)
    colour = np.asarray(colour_img.reduce(SUPER))
    alpha = np.asarray(alpha_img.reduce(SUPER))
    return np.concatenate([colour, alpha[..., None]], axis=2)


@pytest.fixture(scope="module")
def rgba() -> np.ndarray:
    image = avatar_rgba()
    soft = (image[..., 3] > 0) & (image[..., 3] < 255)
    assert soft.sum() > 50  # a real soft edge: where m and m**2 differ
    assert frame_subject(image[..., :3], image[..., 3], size=SIZE).crop == (0, 0, SIZE)
    return image


@pytest.fixture(scope="module")
def model() -> PIFu:
    torch.manual_seed(0)
    return PIFu(ModelConfig.small(**TINY)).eval()


class Catch:
    """Records what each image filter is called with (a forward pre-hook on the real module)."""

    def __init__(self, model: PIFu) -> None:
        self.seen: dict[str, list[torch.Tensor]] = {"g": [], "c": []}
        self.handles = [
            net.image_filter.register_forward_pre_hook(
                lambda _m, args, key=key: self.seen[key].append(args[0].detach().float().contiguous()))
            for key, net in (("g", model.net_g), ("c", model.net_c))]

    def __enter__(self) -> Catch:
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


def test_training_reconstruction_and_evaluation_feed_the_same_tensor(rgba, model):
    train_image, train_mask = image_tensors(rgba, SIZE)
    expected = train_image[None]
    m = train_mask[None]
    rgb = torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float() / 255.0
    alpha = torch.from_numpy(rgba[..., 3].copy()).float()[None] / 255.0
    assert torch.equal(train_mask, alpha)
    assert torch.equal(train_image, network_image(rgb, alpha))
    assert torch.equal(train_image, (2.0 * rgb - 1.0) * alpha)
    # Sensitivity: masking twice (the bug this guards against) is visibly different on the soft edge.
    assert float((expected * m - expected).abs().max()) > 0.05

    with Catch(model) as c:  # reconstruction: frame -> network_input -> PIFu.encode
        try:
            reconstruct(model, rgba[..., :3], rgba[..., 3], resolution=16, device="cpu")
        except Exception as exc:  # a random net may find no surface after encoding; the input was caught
            assert "surface" in str(exc)
    recon_g, recon_c = c.seen["g"][0], c.seen["c"][0]

    framed = frame_subject(rgba[..., :3], rgba[..., 3], size=SIZE)
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (100, 3)).astype(np.float32)
    with Catch(model) as c:  # evaluation: the shared-geometry colour query, with and without the feature
        color_vertices(model, framed, points)
        color_vertices(model, framed, points, geometry_feature=model.net_g.get_im_feat())
    eval_g, eval_c, eval_c_shared = c.seen["g"][0], c.seen["c"][0], c.seen["c"][1]

    calib = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))
    with Catch(model) as c:  # training: validation's colour query and the training objective itself
        query_colors(model, train_image, calib, points)
        batch = {"image": train_image[None], "calib": calib[None],
                 "color_points": torch.from_numpy(points.T.copy())[None],
                 "color_targets": torch.zeros(1, 3, len(points))}
        with torch.no_grad():
            Objective(model, TrainConfig(stage="color", loss="l1"))(batch)
    val_g, val_c, obj_g, obj_c = c.seen["g"][0], c.seen["c"][0], c.seen["g"][1], c.seen["c"][1]

    for name, seen in (("reconstruct G", recon_g), ("reconstruct C", recon_c), ("evaluate G", eval_g),
                       ("evaluate C", eval_c), ("evaluate C (shared G)", eval_c_shared),
                       ("validate G", val_g), ("validate C", val_c), ("train G", obj_g), ("train C", obj_c)):
        assert seen.shape == expected.shape, name
        diff = float((seen - expected).abs().max())
        assert diff <= 1e-6, f"{name}: differs from the training input by {diff}"
