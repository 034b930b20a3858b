"""Training losses: occupancy (PIFu's MSE, or BCE), colour L1, 3D patch-wise SSIM, and their mixes.

All colour tensors are in the network's encoding, sRGB mapped to [-1, 1] (docs/architecture.md), so the SSIM
data range is L = 2 and C1 = (0.01 L)^2, C2 = (0.03 L)^2. The formulas are written out in
docs/training.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from backend.train.choices import COLOR_LOSSES, OCCUPANCY_LOSSES, SSIM_RANGES, SSIM_SPACES, SSIM_VARIANTS

SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 2.0
"""Range of the [-1, 1] colour encoding."""
FLAT_STD = 0.01
"""In-patch GT standard deviation (sRGB, [0, 1]) under which the logs count a patch as flat."""



def occupancy_loss(preds: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor,
                   kind: str = "mse") -> torch.Tensor:
    """Mean over hourglass stacks of the per-stack occupancy loss (PIFu's intermediate supervision).

    ``preds``: one tensor or a list (one per stack) of sigmoid occupancies, any shape matching
    ``labels`` in {0, 1}. ``kind="mse"`` is PIFu's ``nn.MSELoss``; ``"bce"`` is binary cross-entropy on
    the same probabilities (clamped away from 0 and 1 so it stays finite).
    """
    if isinstance(preds, torch.Tensor):
        preds = [preds]
    if not preds:
        raise ValueError("occupancy_loss needs at least one prediction")
    if kind not in OCCUPANCY_LOSSES:
        raise ValueError(f"occupancy loss must be one of {OCCUPANCY_LOSSES}, got {kind!r}")
    labels = labels.to(preds[0].dtype)
    total = preds[0].new_zeros(())
    for p in preds:
        p = p.reshape(labels.shape)
        if kind == "mse":
            total = total + F.mse_loss(p, labels)
        else:
            eps = 1e-6
            total = total + F.binary_cross_entropy(p.float().clamp(eps, 1 - eps), labels.float())
    return total / len(preds)


def color_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PIFu's colour loss: mean absolute difference of [-1, 1] colours."""
    return F.l1_loss(pred, target)


def ssim_from_stats(mu_x: torch.Tensor, mu_y: torch.Tensor, var_x: torch.Tensor, var_y: torch.Tensor,
                    cov: torch.Tensor, c1: float, c2: float) -> torch.Tensor:
    """Wang et al.'s SSIM from weighted statistics (alpha = beta = gamma = 1, C3 = C2/2)."""
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def patch_ssim(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, *,
               data_range: float = DATA_RANGE, k1: float = SSIM_K1, k2: float = SSIM_K2,
               variant: str = "local", unbiased: bool = False) -> torch.Tensor:
    """SSIM values of 3D patches.

    ``pred``, ``target``: (..., M, P, C) colours of M patches of P points; ``weights``: (..., M, P),
    non-negative (normalised here per patch), or None for uniform.

    ``variant="local"`` (default, docs/training.md): per patch and channel, the weighted mean, variance and
    covariance over the patch's own P points; returns (..., M, C).
    ``variant="seed"``: the public seed code's reduction -- statistics across the M patch centres, once
    per in-patch offset p and channel (a global SSIM); returns (..., P, C). Weights are ignored there
    (the paper's code has none).

    ``unbiased`` applies the n/(n-1) sample correction to variance and covariance (scikit-image's
    default and the paper's choice); the Wang et al. definition uses the population form (False).
    """
    if pred.shape != target.shape or pred.dim() < 3:
        raise ValueError(f"pred and target must both be (..., M, P, C), got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if variant not in SSIM_VARIANTS:
        raise ValueError(f"SSIM variant must be one of {SSIM_VARIANTS}, got {variant!r}")
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    # Statistics in float32 at least: under fp16 autocast, variances of nearly flat patches underflow.
    x = pred.float() if pred.dtype in (torch.float16, torch.bfloat16) else pred
    y = target.to(x.dtype)
    if variant == "local":
        axis = -2
        n = x.shape[-2]
        if weights is None:
            w = x.new_full(x.shape[:-1] + (1,), 1.0 / n)
        else:
            w = weights.to(x.dtype).unsqueeze(-1)
            w = w / w.sum(dim=-2, keepdim=True).clamp_min(1e-12)
    else:
        axis = -3
        n = x.shape[-3]
        w = x.new_full(x.shape[:-3] + (n, 1, 1), 1.0 / n)
    mu_x = (w * x).sum(dim=axis, keepdim=True)
    mu_y = (w * y).sum(dim=axis, keepdim=True)
    dx = x - mu_x
    dy = y - mu_y
    var_x = (w * dx * dx).sum(dim=axis)
    var_y = (w * dy * dy).sum(dim=axis)
    cov = (w * dx * dy).sum(dim=axis)
    if unbiased:
        if n < 2:
            raise ValueError("unbiased statistics need at least 2 points")
        if variant == "local" and weights is not None:
            # Reliability-weights correction: 1 / (1 - sum w^2) for normalised weights.
            corr = 1.0 / (1.0 - (w * w).sum(dim=axis)).clamp_min(1e-12)
        else:
            corr = n / (n - 1.0)
        var_x, var_y, cov = var_x * corr, var_y * corr, cov * corr
    return ssim_from_stats(mu_x.squeeze(axis), mu_y.squeeze(axis), var_x, var_y, cov, c1, c2)


def lab_unit(colors: torch.Tensor) -> torch.Tensor:
    """[-1, 1]-encoded sRGB -> CIELAB scaled to about [0, 1]: (L*/100, (a* + 128)/255, (b* + 128)/255).

    SSIM in L*a*b* (``ssim_space="lab"``): a global brightness bias moves L* by the same amount on
    dark and light colours, where in sRGB it is a product that local statistics hardly see.
    The offset keeps a* and b* away from 0, where SSIM's luminance term is ill-conditioned.
    """
    from backend.metrics.color import srgb_to_lab_torch

    lab = srgb_to_lab_torch(((colors.float() + 1.0) * 0.5).clamp(0.0, 1.0))
    scale = lab.new_tensor([1.0 / 100.0, 1.0 / 255.0, 1.0 / 255.0])
    shift = lab.new_tensor([0.0, 128.0 / 255.0, 128.0 / 255.0])
    return lab * scale + shift


def patch_std(colors: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(..., M) in-patch standard deviation of (..., M, P, C) [-1, 1] colours, in sRGB [0, 1] units,
    averaged over the channels (weighted like the local SSIM statistics)."""
    x = colors.float()
    if weights is None:
        w = torch.full_like(x[..., :1], 1.0 / x.shape[-2])
    else:
        w = weights.float().unsqueeze(-1)
        w = w / w.sum(dim=-2, keepdim=True).clamp_min(1e-12)
    mu = (w * x).sum(dim=-2, keepdim=True)
    var = (w * (x - mu) ** 2).sum(dim=-2)
    return 0.5 * var.clamp_min(0.0).sqrt().mean(dim=-1)


def patch_ssim_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, *,
                    variant: str = "local", value_range: str = "signed", data_range: float | None = None,
                    unbiased: bool | None = None, space: str = "srgb", min_std: float = 0.0
                    ) -> torch.Tensor:
    """1 - mean SSIM over patches (or offsets, for ``variant="seed"``) and channels.

    ``value_range="signed"`` (docs/training.md) computes SSIM on the [-1, 1] colours themselves with L = 2.
    ``"unit"`` maps them to [0, 1] first (L = 1), the convention of 2D image SSIM; only the luminance
    term differs (variances and covariances are shift-invariant), but it differs a lot for dark-to-mid
    colours, whose signed means are near 0 -- see docs/training.md.

    ``variant="seed"`` defaults to the paper's code's constants as well as its reduction: C1 = 0.01^2,
    C2 = 0.03^2 (L = 1 although colours are in [-1, 1]), n/(n-1) statistics, the loss clamped to
    [0, 1], and the [-1, 1] values as given (``value_range`` is ignored). Pass ``data_range``/``unbiased``
    to override either variant's defaults.

    ``space="lab"`` computes SSIM on :func:`lab_unit` colours (L = 1; ``value_range`` is ignored).
    ``min_std`` (local variant only): patches whose GT in-patch standard deviation (:func:`patch_std`)
    is below it are flat, their structure term carries no signal, and they are left out of the mean
    (the loss is 0 when every patch is flat).
    """
    if value_range not in SSIM_RANGES:
        raise ValueError(f"SSIM value range must be one of {SSIM_RANGES}, got {value_range!r}")
    if space not in SSIM_SPACES:
        raise ValueError(f"SSIM colour space must be one of {SSIM_SPACES}, got {space!r}")
    seed = variant == "seed"
    if min_std > 0 and seed:
        raise ValueError("min_std needs the local SSIM variant: the seed's statistics span all patches")
    keep = patch_std(target, weights) >= min_std if min_std > 0 else None
    if data_range is None:
        data_range = 1.0 if seed or space == "lab" else DATA_RANGE
    if unbiased is None:
        unbiased = seed
    if space == "lab":
        pred, target = lab_unit(pred), lab_unit(target)
    elif value_range == "unit" and not seed:
        # SSIM(a x, a y; a L) = SSIM(x, y; L): [0, 1] with L = 1 is x + 1 with L = 2.
        pred, target = pred + 1.0, target + 1.0
    s = patch_ssim(pred, target, weights, data_range=data_range, variant=variant, unbiased=unbiased)
    if keep is not None:
        per_patch = s.mean(dim=-1)
        kept = keep.to(per_patch.dtype)
        return (kept * (1.0 - per_patch)).sum() / kept.sum().clamp_min(1.0)
    loss = 1.0 - s.mean()
    return loss.clamp(0.0, 1.0) if seed else loss


def color_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
               *, w_l1: float = 1.0, w_ssim: float = 1.0, ssim_variant: str = "local",
               ssim_range: str = "signed", ssim_space: str = "srgb", min_std: float = 0.0
               ) -> dict[str, torch.Tensor]:
    """The colour objective by name, with its parts for logging.

    ``kind="l1"``: ``pred``/``target`` (..., C) colours of individual points. ``"ssim"`` and
    ``"l1+ssim"``: (..., M, P, C) patches; the mix is ``w_l1 * L1 + w_ssim * (1 - SSIM)`` with the L1
    taken over the same patch points. Returns ``{"loss": total, "l1": ..., "ssim": ...}`` (the parts
    present); patch losses also report, without gradient, ``std_ratio`` (mean over the patches that are
    not flat in the GT of predicted / GT in-patch standard deviation: 1 when the net reproduces the
    GT's texture contrast, near 0 when it predicts flat colour) and ``flat`` (the fraction of patches
    under ``min_std``, or under 0.01 when it is 0).
    """
    if kind not in COLOR_LOSSES:
        raise ValueError(f"colour loss must be one of {COLOR_LOSSES}, got {kind!r}")
    out: dict[str, torch.Tensor] = {}
    if kind == "l1":
        out["l1"] = color_l1(pred, target)
        out["loss"] = out["l1"]
        return out
    out["ssim"] = patch_ssim_loss(pred, target, weights, variant=ssim_variant, value_range=ssim_range,
                                  space=ssim_space, min_std=min_std)
    with torch.no_grad():
        gt_std, pred_std = patch_std(target, weights), patch_std(pred, weights)
        textured = gt_std >= (min_std if min_std > 0 else FLAT_STD)
        ratio = pred_std / gt_std.clamp_min(1e-6)
        out["std_ratio"] = (ratio * textured).sum() / textured.sum().clamp_min(1)
        out["flat"] = 1.0 - textured.float().mean()
    if kind == "ssim":
        out["loss"] = w_ssim * out["ssim"]
    else:
        out["l1"] = color_l1(pred, target)
        out["loss"] = w_l1 * out["l1"] + w_ssim * out["ssim"]
    return out
