"""Which dataset views an evaluation renders, and how a rendered view is compared with the GT.

* Novel views: ``count`` views of the same pitch as the input view, at yaws as evenly spaced around the
  subject as the dataset's cameras allow (targets ``yaw_in + j * 360 / (count + 1)``, j = 1..count, each
  taking the nearest finished view not taken yet).
* Comparison: both images are the unlit colours over a transparent background (straight alpha). They
  are composited over black (RGB x alpha) and compared inside the **union of the two masks** (alpha > 0
  in either image), so a silhouette error counts (the missing or extra part is compared with black)
  while the empty background does not inflate the scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backend.metrics.image import compare_views


def angle_between(a: float, b: float) -> float:
    """Smallest absolute difference of two angles in degrees (0..180)."""
    d = (float(a) - float(b)) % 360.0
    return min(d, 360.0 - d)


def novel_views(available: Sequence[tuple[int, float, float]], input_view: int, count: int) -> list[int]:
    """Indices of up to ``count`` views besides ``input_view``, evenly spaced in yaw (module docstring).

    ``available`` holds ``(index, yaw, pitch)`` of the subject's finished views.
    """
    if count <= 0:
        return []
    by_index = {int(i): (float(y), float(p)) for i, y, p in available}
    if input_view not in by_index:
        return []
    yaw_in, pitch_in = by_index[input_view]
    candidates = [i for i, (_, p) in by_index.items() if i != input_view and abs(p - pitch_in) < 1e-6]
    chosen: list[int] = []
    for j in range(1, count + 1):
        free = [i for i in candidates if i not in chosen]
        if not free:
            break
        target = yaw_in + j * 360.0 / (count + 1)
        chosen.append(min(free, key=lambda i: (angle_between(by_index[i][0], target), i)))
    return chosen


def composite(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RGB over black as float64 in [0, 1], alpha in [0, 1]) of a uint8 RGBA image."""
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGBA image, got {a.dtype} {a.shape}")
    alpha = a[..., 3].astype(np.float64) / 255.0
    return a[..., :3].astype(np.float64) / 255.0 * alpha[..., None], alpha


RGBAPair = tuple[np.ndarray, np.ndarray]


def compare_renders(input_pair: RGBAPair, novel_pairs: Sequence[RGBAPair], *, lpips: bool = True,
                    device=None) -> dict:
    """PSNR / SSIM (LPIPS when it can run) of (prediction, GT) RGBA renders: ``compare_views``'s dict."""
    def prepared(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        (pred, pa), (gt, ga) = composite(pair[0]), composite(pair[1])
        mask = (pa > 0) | (ga > 0)
        if not mask.any():  # both empty: compare the whole (black) frame
            mask = np.ones_like(mask)
        return pred, gt, mask

    return compare_views([prepared(input_pair)], [prepared(p) for p in novel_pairs], data_range=1.0,
                         lpips=lpips, device=device)
