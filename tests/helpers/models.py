"""Small real models and training inputs that several test modules build."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.models import PIFu
from backend.models.config import ModelConfig
from backend.recon.framing import frame_subject
from backend.train.config import TrainConfig
from tests.helpers.tiny_models import compact_config

HALF_THICKNESS = 0.15


def silhouette_pifu(image: np.ndarray, seed: int = 0, config: ModelConfig | None = None) -> PIFu:
    """A small PIFu with random encoders whose geometry MLP is *set* (not trained) to a body-shaped field.

    A linear probe on the random hourglass features, fitted in closed form to the subject mask, gives a
    score s(x, y) > 0 inside the silhouette; the MLP computes sigmoid(K (s - |z| / t)) with its own
    layers (leaky-ReLU pass-through units), so occupancy is the silhouette extruded to |z| < t: a closed
    body-shaped surface produced by the real network code path. The colour net keeps random weights.
    ``config`` defaults to the compact one (``ModelConfig.official()`` gives official-layout files).
    """
    torch.manual_seed(seed)
    model = PIFu(config or compact_config()).eval()
    framed = frame_subject(image, size=model.config.load_size)
    img = torch.from_numpy(framed.network_input())
    mask = torch.from_numpy(framed.mask[None, None])
    with torch.no_grad():
        model.encode(img)
        feat = model.net_g.get_im_feat()[0]
        c, h, w = feat.shape
        target = F.adaptive_avg_pool2d(mask, (h, w))[0, 0].reshape(-1).double() * 2 - 1
        x = torch.cat([feat.reshape(c, -1).t(), torch.ones(h * w, 1)], 1).double()
        probe = torch.linalg.solve(x.t() @ x + 1e-3 * torch.eye(c + 1, dtype=torch.float64), x.t() @ target)
        mlp = model.net_g.surface_classifier
        for m in mlp.modules():
            if isinstance(m, torch.nn.Conv1d):
                m.weight.zero_()
                m.bias.zero_()
        mlp.conv0.weight[0, :c, 0] = probe[:c].float()
        mlp.conv0.bias[0] = probe[c].float()
        mlp.conv0.weight[1, c, 0] = 1.0   # +z
        mlp.conv0.weight[2, c, 0] = -1.0  # -z
        for layer in (1, 2, 3):
            for unit in range(3):
                mlp._modules[f"conv{layer}"].weight[unit, unit, 0] = 1.0
        k, zw = 20.0, 20.0 / (model.config.depth_scale * HALF_THICKNESS)
        mlp.conv4.weight[0, :3, 0] = torch.tensor([k, -zw, -zw])
    return model


def training_batch(b: int = 2, m: int = 6, k: int = 3, n: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random training batch with every key the objective reads (images, points, patches)."""
    g = torch.Generator().manual_seed(seed)
    p = k * k
    return {
        "image": torch.rand(b, 3, 64, 64, generator=g) * 2 - 1,
        "calib": torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0])).expand(b, 4, 4).clone(),
        "geo_points": torch.rand(b, 3, n, generator=g) * 2 - 1,
        "geo_labels": (torch.rand(b, 1, n, generator=g) > 0.5).float(),
        "color_points": torch.rand(b, 3, n, generator=g) * 2 - 1,
        "color_targets": torch.rand(b, 3, n, generator=g) * 2 - 1,
        "patch_points": torch.rand(b, 3, m * p, generator=g) * 2 - 1,
        "patch_targets": torch.rand(b, 3, m * p, generator=g) * 2 - 1,
        "patch_weights": torch.full((b, m, p), 1.0 / p),
    }


def train_config(**kw) -> TrainConfig:
    """A TrainConfig whose data and out folders do not exist (nothing is read or written)."""
    return TrainConfig.from_dict({"data": "/nonexistent", "out": "/nonexistent-run", **kw})


def silhouette_pifuhd(image: np.ndarray, seed: int = 0, normals: bool = False):
    """A small PIFuHD (release structure, ``small_options``) whose MLPs are *set* to a body-shaped field,
    like :func:`silhouette_pifu`: the coarse MLP carries ``max(±z, 0)`` through to Ω, and the fine MLP
    computes sigmoid(K (s(x, y) - |z| / t)) from a closed-form linear probe s on the random fine
    features and those two Ω channels. Everything runs through the real two-level code path."""
    from backend.models.pifuhd import PIFuHD, small_options

    torch.manual_seed(seed)
    fine, coarse = small_options(64, normals=normals)
    model = PIFuHD(fine, coarse).eval()
    framed = frame_subject(image, size=model.load_size)
    img = torch.from_numpy(framed.network_input())
    mask = torch.from_numpy(framed.mask[None, None])
    c_in = coarse.hg_dim  # index of the depth feature in the coarse MLP input
    c = fine.hg_dim       # Ω starts here in the fine MLP input
    with torch.no_grad():
        model.encode(img)
        feat = model.im_feat_list[-1][0]
        _, h, w = feat.shape
        target = F.adaptive_avg_pool2d(mask, (h, w))[0, 0].reshape(-1).double() * 2 - 1
        x = torch.cat([feat.reshape(c, -1).t(), torch.ones(h * w, 1)], 1).double()
        probe = torch.linalg.solve(x.t() @ x + 1e-3 * torch.eye(c + 1, dtype=torch.float64), x.t() @ target)
        for mlp in (model.netG.mlp, model.mlp):
            for f in mlp.filters:
                f.weight.zero_()
                f.bias.zero_()
        cf = model.netG.mlp.filters
        cf[0].weight[0, c_in, 0] = 1.0
        cf[0].weight[1, c_in, 0] = -1.0
        for layer in (1, 2):
            for unit in (0, 1):
                cf[layer].weight[unit, unit, 0] = 1.0
        ff = model.mlp.filters
        ff[0].weight[0, :c, 0] = probe[:c].float()
        ff[0].bias[0] = probe[c].float()
        ff[0].weight[1, c, 0] = 1.0
        ff[0].weight[2, c + 1, 0] = 1.0
        for layer in (1, 2):
            for unit in range(3):
                ff[layer].weight[unit, unit, 0] = 1.0
        k = 20.0
        zw = k / (model.netG.depth_scale * HALF_THICKNESS)
        ff[3].weight[0, :3, 0] = torch.tensor([k, -zw, -zw])
        model.encode(img)
    return model
