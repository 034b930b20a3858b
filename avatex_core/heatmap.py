"""The audit heatmap: per-vertex CIEDE2000 error -> colour on one fixed, documented scale.

The scale is fixed (not stretched to each mesh's own min/max) so that two heatmaps side by side mean
the same thing: the same colour is the same ΔE00 on every mesh, every run, every machine.

Scale (docs/addon.md repeats it): ΔE00 from 0 to 20, mapped linearly onto matplotlib's *viridis*, a
perceptually uniform, colour-blind-safe ramp from dark violet (no error) to yellow (ΔE00 ≥ 20; larger
values clip). Nine stops, one every 2.5 ΔE00, interpolated linearly in sRGB:

    ΔE00   0.0   2.5   5.0   7.5   10.0  12.5  15.0  17.5  20.0+
    sRGB  #440154 #472d7b #3b528b #2c728e #21918c #28ae80 #5ec962 #addc30 #fde725

For orientation: ΔE00 ≈ 1 is a just-noticeable difference side by side, 2-5 is visible at a glance, and
above ~10 the colours read as different colours. Vertices without a value (NaN) are mid grey.

Pure numpy (no bpy): the panels, the headless audit script and the tests all use these functions.
"""

from __future__ import annotations

import numpy as np

from .color import rgba, srgb_to_linear

SCALE_MAX = 20.0
"""ΔE00 at and above which the heatmap is saturated (the top stop)."""

STOPS_DE = np.linspace(0.0, SCALE_MAX, 9, dtype=np.float32)
"""ΔE00 value of each stop."""

STOPS_SRGB = np.array(
    [
        [0.2670, 0.0049, 0.3294],
        [0.2788, 0.1755, 0.4834],
        [0.2297, 0.3224, 0.5457],
        [0.1727, 0.4488, 0.5579],
        [0.1276, 0.5669, 0.5506],
        [0.1579, 0.6838, 0.5017],
        [0.3692, 0.7889, 0.3829],
        [0.6785, 0.8637, 0.1895],
        [0.9932, 0.9062, 0.1439],
    ],
    dtype=np.float32,
)
"""sRGB colour of each stop: viridis sampled at ΔE00 / 20."""

MISSING_SRGB = np.array([0.5, 0.5, 0.5], dtype=np.float32)
"""Colour of vertices whose error is NaN (no value)."""

LEGEND_TICKS = (0.0, 5.0, 10.0, 15.0, 20.0)
"""ΔE00 values the Audit panel's legend labels."""


def heatmap_srgb(delta_e: np.ndarray) -> np.ndarray:
    """(N,) ΔE00 -> (N, 3) float32 sRGB colours on the fixed scale (values clip to [0, SCALE_MAX])."""
    d = np.asarray(delta_e, dtype=np.float32).reshape(-1)
    missing = ~np.isfinite(d)
    d = np.clip(np.where(missing, 0.0, d), 0.0, SCALE_MAX)
    # Uniform stops: the stop index is d / step; interpolate between neighbours directly, which is
    # several times cheaper than three np.interp calls on a million values.
    step = SCALE_MAX / (len(STOPS_DE) - 1)
    pos = d / step
    lo = np.minimum(pos.astype(np.int32), len(STOPS_DE) - 2)
    t = (pos - lo)[:, None]
    out = STOPS_SRGB[lo] * (1.0 - t) + STOPS_SRGB[lo + 1] * t
    if missing.any():
        out[missing] = MISSING_SRGB
    return out.astype(np.float32, copy=False)


def heatmap_linear_rgba(delta_e: np.ndarray) -> np.ndarray:
    """(N,) ΔE00 -> (N, 4) scene-linear RGBA float32, ready for a FLOAT_COLOR attribute."""
    return rgba(srgb_to_linear(heatmap_srgb(delta_e)))


def legend(ticks: tuple[float, ...] = LEGEND_TICKS) -> list[tuple[str, tuple[float, float, float]]]:
    """(label, sRGB colour) pairs for a legend: the last tick is labelled "20+" because it saturates."""
    colors = heatmap_srgb(np.asarray(ticks, dtype=np.float32))
    out = []
    for value, color in zip(ticks, colors, strict=True):
        label = f"{value:g}+" if value >= SCALE_MAX else f"{value:g}"
        out.append((label, tuple(float(c) for c in color)))
    return out


def summarize(values: np.ndarray) -> dict[str, float]:
    """mean / median / p90 of the finite values (NaN when there are none), for selections and legends."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "p90": float("nan"), "count": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "count": int(v.size)}
