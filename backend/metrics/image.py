"""Image-space metrics on renders of prediction and GT: PSNR, SSIM, and LPIPS when it can run offline.

* Images are (H, W) or (H, W, C) arrays. uint8 images are read as 0..255 and compared on [0, 1]
  (data range 1); float images need an explicit ``data_range`` (the most common SSIM mistake is a
  silently wrong default range). An alpha channel (C = 4) is ignored: pass a mask instead.
* SSIM is Wang et al. 2004: Gaussian window of 11 taps with σ = 1.5, K1 = 0.01, K2 = 0.03, population
  statistics, computed per channel and averaged; statistics near the border use reflected pixels and
  the 5-pixel border of the SSIM map is left out of the mean (scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).
* A mask (H, W), true inside the subject, restricts PSNR to the masked pixels and SSIM to the map
  entries whose window centre is masked.
* LPIPS needs a pretrained backbone (AlexNet/VGG) that its packages download at run time. avatex never
  downloads: LPIPS runs only when the ``lpips`` package, torchvision and the backbone's weights in
  ``$TORCH_HOME/hub/checkpoints`` are all present; otherwise results say it was skipped and why.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import correlate1d

from backend.errors import InputError, NotAvailableError

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11 taps: scikit-image's int(3.5 * 1.5 + 0.5)
SSIM_K1, SSIM_K2 = 0.01, 0.03

LPIPS_BACKBONES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
"""torchvision's file names for the backbones LPIPS builds on, as they sit in the hub cache."""

ImagePair = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def psnr(pred: np.ndarray, gt: np.ndarray, *, data_range: float | None = None,
         mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images), over the masked pixels if given."""
    a, b, rng = _pair(pred, gt, data_range)
    m = _mask(mask, a.shape[:2])
    diff = (a - b) ** 2
    mse = float(diff[m].mean()) if m is not None else float(diff.mean())
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(rng * rng / mse))


def ssim(pred: np.ndarray, gt: np.ndarray, *, data_range: float | None = None,
         mask: np.ndarray | None = None) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian 11 / σ 1.5), over the masked window centres if given."""
    a, b, rng = _pair(pred, gt, data_range)
    if min(a.shape[:2]) < 2 * SSIM_RADIUS + 1:
        raise InputError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} pixels a side, "
                         f"got {a.shape[:2]}")
    m = _mask(mask, a.shape[:2])
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    smap = _ssim_map(a, b, rng)  # (H, W, C)
    r = SSIM_RADIUS
    inner = smap[r:-r, r:-r]
    if m is None:
        return float(inner.mean())
    centres = m[r:-r, r:-r]
    if not centres.any():
        raise InputError("the mask has no pixel at least 5 pixels from the image border")
    return float(inner[centres].mean())


def _ssim_map(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    window = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    window /= window.sum()

    def blur(img: np.ndarray) -> np.ndarray:
        return correlate1d(correlate1d(img, window, axis=0, mode="reflect"), window, axis=1, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


# --------------------------------------------------------------------------------------------- LPIPS

@dataclass(frozen=True)
class LpipsStatus:
    available: bool
    reason: str
    weights: str | None = None


def torch_hub_checkpoints() -> Path:
    """Where torch keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints`` (torch's default rules)."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(cache, "torch")
    return Path(home) / "hub" / "checkpoints"


def lpips_status(net: str = "alex") -> LpipsStatus:
    """Whether LPIPS with backbone ``net`` can run without downloading anything, and if not, why."""
    if net not in LPIPS_BACKBONES:
        raise InputError(f"LPIPS backbone must be one of {', '.join(LPIPS_BACKBONES)}, not {net!r}")
    if importlib.util.find_spec("lpips") is None:
        return LpipsStatus(False, "the 'lpips' package is not installed")
    weights = torch_hub_checkpoints() / LPIPS_BACKBONES[net]
    if not weights.is_file():
        return LpipsStatus(False, f"the {net} backbone weights are not on disk ({weights}); "
                                  "avatex never downloads them")
    if importlib.util.find_spec("torchvision") is None:
        return LpipsStatus(False, "torchvision is not installed")
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a CUDA-only torchvision build fails to import on a CPU torch
        return LpipsStatus(False, f"torchvision does not import: {exc}")
    return LpipsStatus(True, "ok", str(weights))


_LPIPS_MODELS: dict = {}


def lpips_distance(pred: np.ndarray, gt: np.ndarray, *, data_range: float | None = None,
                   mask: np.ndarray | None = None, net: str = "alex", device=None) -> float:
    """LPIPS distance (lower is better); raises NotAvailableError when it cannot run offline.

    Outside the mask both images are set to white, so the background does not count.
    """
    status = lpips_status(net)
    if not status.available:
        raise NotAvailableError(f"LPIPS skipped: {status.reason}")
    import lpips
    import torch

    a, b, rng = _pair(pred, gt, data_range)
    if a.ndim == 2:
        a, b = np.repeat(a[..., None], 3, axis=2), np.repeat(b[..., None], 3, axis=2)
    m = _mask(mask, a.shape[:2])
    if m is not None:
        a, b = a.copy(), b.copy()
        a[~m], b[~m] = rng, rng
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (net, str(device))
    if key not in _LPIPS_MODELS:
        _LPIPS_MODELS[key] = lpips.LPIPS(net=net, verbose=False).to(device).eval()
    model = _LPIPS_MODELS[key]

    def tensor(img: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(img[..., :3] / rng * 2.0 - 1.0, dtype=torch.float32, device=device)
        return t.permute(2, 0, 1)[None]

    with torch.no_grad():
        return float(model(tensor(a), tensor(b)).item())


# ------------------------------------------------------------------------------------------- views

def compare_views(input_pairs: Sequence[ImagePair], novel_pairs: Sequence[ImagePair] = (), *,
                  data_range: float | None = None, lpips: bool = True, lpips_net: str = "alex",
                  device=None) -> dict:
    """PSNR/SSIM (and LPIPS when available) of rendered views, averaged over input and novel views.

    Each pair is (pred image, GT image, mask or None), e.g. Blender renders of the reconstruction and
    the GT mesh from the same dataset camera. Returns ``{"input": {...}, "novel": {...}, "lpips": {...}}``
    where each group has ``views``, ``psnr``, ``ssim``, ``lpips`` (means; None when the group is empty
    or LPIPS was skipped) and ``per_view`` values.
    """
    status = lpips_status(lpips_net) if lpips else LpipsStatus(False, "not requested")
    out: dict = {"lpips": {"available": status.available, "reason": status.reason, "net": lpips_net}}
    for name, pairs in (("input", input_pairs), ("novel", novel_pairs)):
        per_view = []
        for i, pair in enumerate(pairs):
            if len(pair) != 3:
                raise InputError(f"{name} view {i}: expected (pred image, GT image, mask or None)")
            pred, gt, mask = pair
            row = {"psnr": psnr(pred, gt, data_range=data_range, mask=mask),
                   "ssim": ssim(pred, gt, data_range=data_range, mask=mask)}
            if status.available:
                row["lpips"] = lpips_distance(pred, gt, data_range=data_range, mask=mask,
                                              net=lpips_net, device=device)
            per_view.append(row)
        group = {"views": len(per_view), "per_view": per_view}
        for key in ("psnr", "ssim", "lpips"):
            values = [row[key] for row in per_view if key in row]
            group[key] = float(np.mean(values)) if values else None
        out[name] = group
    return out


# ------------------------------------------------------------------------------------------ inputs

def _pair(pred, gt, data_range) -> tuple[np.ndarray, np.ndarray, float]:
    a, b = np.asarray(pred), np.asarray(gt)
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise InputError(f"images must be (H, W) or (H, W, 1|3|4), got {a.shape}")
    if a.ndim == 3 and a.shape[2] == 4:
        a, b = a[..., :3], b[..., :3]
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        if data_range not in (None, 255, 255.0):
            raise InputError(f"uint8 images have data range 255, not {data_range}")
        return a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0, 1.0
    if data_range is None:
        raise InputError("float images need an explicit data_range (1.0 for [0, 1], 2.0 for [-1, 1])")
    if not data_range > 0:
        raise InputError(f"data_range must be positive, got {data_range}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("images contain NaN or infinite values")
    return a, b, float(data_range)


def _mask(mask, shape) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise InputError(f"mask shape {m.shape} does not match the images' {tuple(shape)}")
    # uint8 masks come as 0/255 (alpha) or 0/1; anything else non-zero means inside.
    m = m > (127 if m.dtype == np.uint8 and m.max() > 1 else 0)
    if not m.any():
        raise InputError("the mask is empty")
    return m
