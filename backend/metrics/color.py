"""sRGB → CIELAB (D65) and the CIEDE2000 colour difference, in numpy and in torch.

Why our own implementation rather than calling colour-science everywhere: PATD/PIPATD evaluate millions
of colour pairs (k per reconstructed vertex), and the per-pair work can be cut in half by converting
every colour to Lab once and by computing the CIEDE2000 terms with fewer transcendental functions. The
formulas are those of Sharma, Wu & Dalal (Color Res. Appl. 30(1), 2005) with kL = kC = kH = 1; the
constants of the colour conversion are the standard ones colour-science also uses (IEC 61966-2-1 sRGB
transfer function and its 4-digit RGB→XYZ matrix, D65 white from xy = (0.3127, 0.3290), CIE 1976 L*a*b*
with ε = 216/24389 and κ = 24389/27), so both agree to rounding. The tests check every implementation
here against Sharma's 34 published pairs and against colour-science.

Three algebraic rewrites (exact, not approximations) keep the per-pair cost low:

* ΔH'² = Δa'² + Δb² − ΔC'², signed like sin(h'₂ − h'₁) (the cross product a'₁b₂ − b₁a'₂), so no
  per-colour hue angle is needed for ΔH';
* the mean hue h̄' is the direction of the bisector of the two hue vectors (one atan2 per pair instead
  of two), which is what the standard's case analysis (|Δh'| ≤ 180° or not) selects;
* cos(n·h̄') for n = 2, 3, 4 in T come from cos h̄' and sin h̄' by the multiple-angle identities.

The one place where the standard is discontinuous is a hue difference of exactly 180° (Sharma's pair
14): there the standard takes the "|Δh'| ≤ 180°" branch, and so do we, by detecting exactly opposite
hue vectors (zero cross product, negative dot product) instead of comparing rounded angles.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from avatex_core.color import SRGB_DECODE_LIMIT, srgb_to_linear

if TYPE_CHECKING:
    import torch

SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805],
                        [0.2126, 0.7152, 0.0722],
                        [0.0193, 0.1192, 0.9505]])
"""IEC 61966-2-1 linear sRGB → CIE XYZ (D65), the 4-digit matrix of the standard."""

D65_XY = (0.3127, 0.3290)
D65_WHITE = np.array([D65_XY[0] / D65_XY[1], 1.0, (1.0 - D65_XY[0] - D65_XY[1]) / D65_XY[1]])
"""XYZ of the D65 white point (Y = 1), the reference white of the Lab conversion."""

# sRGB decoding is linear below this code value (avatex_core.color: the exact image of 0.0031308).
_SRGB_LINEAR_LIMIT = SRGB_DECODE_LIMIT

_LAB_EPSILON = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0

_POW25_7 = 25.0 ** 7
_DEG = math.pi / 180.0
# T = 1 − 0.17 cos(h − 30°) + 0.24 cos 2h + 0.32 cos(3h + 6°) − 0.20 cos(4h − 63°), expanded:
_T_C1, _T_S1 = -0.17 * math.cos(30 * _DEG), -0.17 * math.sin(30 * _DEG)
_T_C3, _T_S3 = 0.32 * math.cos(6 * _DEG), -0.32 * math.sin(6 * _DEG)
_T_C4, _T_S4 = -0.20 * math.cos(63 * _DEG), -0.20 * math.sin(63 * _DEG)
_THETA_PEAK, _THETA_WIDTH, _THETA_AMPL = 275 * _DEG, 25 * _DEG, 30 * _DEG
_TWO_PI = 2.0 * math.pi

# Pairs per block in the blocked kernels: small enough that the ~30 temporaries stay in the L2 cache.
_BLOCK_PAIRS = 16384


# --------------------------------------------------------------------------------------------- numpy

def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65, L* in 0..100) of sRGB-encoded colours (..., 3) given as floats in [0, 1].

    No clipping happens here (values outside [0, 1] are extrapolated by the transfer function's
    pieces); callers that need clipped colours clip first and say so.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"srgb_to_lab expects (..., 3) colours, got shape {rgb.shape}")
    linear = srgb_to_linear(rgb, clip=False, dtype=np.float64)
    xyz = linear @ (SRGB_TO_XYZ / D65_WHITE[:, None]).T
    f = np.where(xyz > _LAB_EPSILON, np.cbrt(xyz), (_LAB_KAPPA * xyz + 16.0) / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) of broadcastable CIELAB arrays (..., 3); float64."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    if lab1.shape[-1:] != (3,) or lab2.shape[-1:] != (3,):
        raise ValueError(f"ciede2000 expects (..., 3) Lab arrays, got {lab1.shape} and {lab2.shape}")
    lab1, lab2 = np.broadcast_arrays(lab1, lab2)
    shape = lab1.shape[:-1]
    p1 = _prepare(lab1.reshape(-1, 3))
    p2 = _prepare(lab2.reshape(-1, 3))
    out = np.empty(p1.shape[1])
    for start in range(0, len(out), _BLOCK_PAIRS):
        s = slice(start, start + _BLOCK_PAIRS)
        out[s] = _delta_e(*p1[:, s], *p2[:, s])
    return out.reshape(shape)


def nearest_differences(lab_query: np.ndarray, lab_ref: np.ndarray, neighbours: np.ndarray,
                        workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ΔE00 of each query colour against its listed reference colours: (first column, row minimum).

    ``neighbours`` is (N, k) indices into ``lab_ref`` (e.g. a k-NN query, nearest first). Returns float64
    ΔE to ``neighbours[:, 0]`` and the minimum over the k columns. The per-colour terms (chroma) are
    computed once per colour, not once per pair, and the pairs are processed in cache-sized blocks on
    ``workers`` threads (default: one per available core; numpy releases the GIL inside its loops).
    """
    neighbours = np.asarray(neighbours)
    if neighbours.ndim == 1:
        neighbours = neighbours[:, None]
    n, k = neighbours.shape
    if len(lab_query) != n:
        raise ValueError(f"{len(lab_query)} query colours but {n} rows of neighbours")
    q = _prepare(np.asarray(lab_query, dtype=np.float64).reshape(-1, 3))
    r = _prepare(np.asarray(lab_ref, dtype=np.float64).reshape(-1, 3))
    first = np.empty(n)
    best = np.empty(n)
    rows = max(1, _BLOCK_PAIRS // k)

    def block(start: int) -> None:
        s = slice(start, min(start + rows, n))
        idx = neighbours[s]
        de = _delta_e(*(c[s, None] for c in q), *(np.take(c, idx) for c in r))
        first[s] = de[:, 0]
        np.min(de, axis=1, out=best[s])

    starts = range(0, n, rows)
    workers = _worker_count(workers)
    if workers <= 1 or n <= rows:
        for start in starts:
            block(start)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(block, starts))
    return first, best


def _worker_count(workers: int | None) -> int:
    if workers is not None and workers > 0:
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _prepare(lab: np.ndarray) -> np.ndarray:
    """(4, N) rows L, a, b, C*ab: the per-colour part of CIEDE2000, computed once per colour."""
    out = np.empty((4, len(lab)))
    out[:3] = lab.T
    np.hypot(lab[:, 1], lab[:, 2], out=out[3])
    return out


def _delta_e(L1, a1, b1, C1, L2, a2, b2, C2):  # noqa: N803 - the standard's symbols
    """CIEDE2000 of colour pairs given per-colour (L, a, b, C*ab) arrays that broadcast together."""
    cbar = (C1 + C2) * 0.5
    c7 = cbar * cbar
    c7 = c7 * c7 * c7 * cbar
    g1 = 1.5 - 0.5 * np.sqrt(c7 / (c7 + _POW25_7))  # 1 + G
    ap1 = a1 * g1
    ap2 = a2 * g1
    cp1 = np.sqrt(ap1 * ap1 + b1 * b1)
    cp2 = np.sqrt(ap2 * ap2 + b2 * b2)
    dl = L2 - L1
    dc = cp2 - cp1
    da = ap2 - ap1
    db = b2 - b1
    dh2 = da * da + db * db - dc * dc
    np.maximum(dh2, 0.0, out=dh2)
    cross = ap1 * b2 - b1 * ap2
    dh = np.copysign(np.sqrt(dh2), cross)
    # Mean hue: the bisector of the two hue vectors (scaled by C'1 C'2). It is their sum for an acute
    # angle and the perpendicular of their difference, turned towards the shorter arc, for an obtuse
    # one: each well conditioned where the other cancels. One zero chroma gives the other colour's hue.
    zero = (cp1 * cp2 == 0).astype(np.float64)
    v1x, v1y = ap1 * (cp2 + zero), b1 * (cp2 + zero)
    v2x, v2y = ap2 * (cp1 + zero), b2 * (cp1 + zero)
    dot = ap1 * ap2 + b1 * b2
    obtuse = dot < 0
    side = np.copysign(1.0, cross)
    x = np.where(obtuse, side * (v2y - v1y), v1x + v2x)
    y = np.where(obtuse, side * (v1x - v2x), v1y + v2y)
    opposite = (cross == 0) & obtuse
    if opposite.any():
        x, y, dh = _opposite_hues(x, y, dh, opposite, ap1, b1, ap2, b2)
    hbar = np.arctan2(y, x)
    hbar += (hbar < 0) * _TWO_PI
    r = np.sqrt(x * x + y * y)
    none = r == 0  # both chromas zero: the standard's h̄' = 0
    r += none
    t = _hue_weight((x + none) / r, y / r)
    z = (hbar - _THETA_PEAK) / _THETA_WIDTH
    rotation = np.sin((2.0 * _THETA_AMPL) * np.exp(-(z * z)))
    cpbar = (cp1 + cp2) * 0.5
    c7 = cpbar * cpbar
    c7 = c7 * c7 * c7 * cpbar
    rt = -2.0 * np.sqrt(c7 / (c7 + _POW25_7)) * rotation
    lm = (L1 + L2) * 0.5 - 50.0
    lm = lm * lm
    sl = 1.0 + 0.015 * lm / np.sqrt(20.0 + lm)
    tl = dl / sl
    tc = dc / (1.0 + 0.045 * cpbar)
    th = dh / (1.0 + 0.015 * cpbar * t)
    return np.sqrt(tl * tl + tc * tc + th * th + rt * tc * th)


def _opposite_hues(x, y, dh, opposite, ap1, b1, ap2, b2):
    """Exactly opposite hues (|Δh'| = 180°): the standard's h̄' = (h'₁ + h'₂)/2, sign ΔH' = sign(h'₂ − h'₁)."""
    shape = opposite.shape
    x, y, dh = (np.array(np.broadcast_to(v, shape)) for v in (x, y, dh))
    sel = opposite
    h1 = np.arctan2(np.broadcast_to(b1, shape)[sel], np.broadcast_to(ap1, shape)[sel]) % _TWO_PI
    h2 = np.arctan2(np.broadcast_to(b2, shape)[sel], np.broadcast_to(ap2, shape)[sel]) % _TWO_PI
    hbar = 0.5 * (h1 + h2)
    x[sel] = np.cos(hbar)
    y[sel] = np.sin(hbar)
    dh[sel] = np.copysign(np.abs(dh[sel]), h2 - h1)
    return x, y, dh


def _hue_weight(cos1, sin1):
    """The standard's T from cos h̄' and sin h̄' (multiple angles by the addition formulas, no trig).

    Plain arithmetic, so the numpy and the torch engine share it (numpy arrays or tensors alike)."""
    cos2 = cos1 * cos1 - sin1 * sin1
    sin2 = 2.0 * sin1 * cos1
    return (1.0 + _T_C1 * cos1 + _T_S1 * sin1 + 0.24 * cos2
            + _T_C3 * (cos1 * cos2 - sin1 * sin2) + _T_S3 * (sin1 * cos2 + cos1 * sin2)
            + _T_C4 * (cos2 * cos2 - sin2 * sin2) + _T_S4 * (2.0 * sin2 * cos2))


# --------------------------------------------------------------------------------------------- torch

def srgb_to_lab_torch(rgb: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`srgb_to_lab` (same constants); keeps the input's dtype and device."""
    import torch

    if rgb.shape[-1:] != (3,):
        raise ValueError(f"srgb_to_lab_torch expects (..., 3) colours, got shape {tuple(rgb.shape)}")
    if not rgb.is_floating_point():
        raise ValueError("srgb_to_lab_torch expects floating-point colours in [0, 1]")
    matrix = torch.as_tensor(SRGB_TO_XYZ / D65_WHITE[:, None], dtype=rgb.dtype, device=rgb.device)
    # avatex_core.color's decode, in torch: the tensors stay on their device (same threshold).
    linear = torch.where(rgb <= _SRGB_LINEAR_LIMIT, rgb / 12.92,
                         ((torch.clamp(rgb, min=_SRGB_LINEAR_LIMIT) + 0.055) / 1.055) ** 2.4)
    xyz = linear @ matrix.T
    f = torch.where(xyz > _LAB_EPSILON, torch.pow(torch.clamp(xyz, min=_LAB_EPSILON), 1.0 / 3.0),
                    (_LAB_KAPPA * xyz + 16.0) / 116.0)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)


def ciede2000_torch(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`ciede2000` for broadcastable (..., 3) tensors; float32 or float64.

    Same formulas and the same handling of the 180° hue case. In float32 the result agrees with float64
    to about 1e-5 on Sharma's pairs; use float64 where results must match the numpy path to rounding.
    """
    import torch

    if lab1.shape[-1:] != (3,) or lab2.shape[-1:] != (3,):
        raise ValueError(f"ciede2000_torch expects (..., 3) Lab tensors, got {tuple(lab1.shape)} "
                         f"and {tuple(lab2.shape)}")
    dtype = torch.promote_types(lab1.dtype, lab2.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    lab1, lab2 = torch.broadcast_tensors(lab1.to(dtype), lab2.to(dtype))
    L1, a1, b1 = lab1.unbind(-1)  # noqa: N806
    L2, a2, b2 = lab2.unbind(-1)  # noqa: N806
    return delta_e_torch(L1, a1, b1, torch.hypot(a1, b1), L2, a2, b2, torch.hypot(a2, b2))


def delta_e_torch(L1, a1, b1, C1, L2, a2, b2, C2):  # noqa: N803
    """Torch kernel of CIEDE2000 on per-colour (L, a, b, C*ab) tensors that broadcast together."""
    # Parallel to _delta_e on purpose: that one works in place on L2-sized blocks, this one stays free
    # of data-dependent control flow for the GPU; tests hold them to each other on Sharma's pairs.
    import torch

    cbar = (C1 + C2) * 0.5
    c7 = cbar ** 7
    g1 = 1.5 - 0.5 * torch.sqrt(c7 / (c7 + _POW25_7))
    ap1 = a1 * g1
    ap2 = a2 * g1
    cp1 = torch.sqrt(ap1 * ap1 + b1 * b1)
    cp2 = torch.sqrt(ap2 * ap2 + b2 * b2)
    dl = L2 - L1
    dc = cp2 - cp1
    da = ap2 - ap1
    db = b2 - b1
    dh2 = torch.clamp(da * da + db * db - dc * dc, min=0.0)
    cross = ap1 * b2 - b1 * ap2
    dh = torch.copysign(torch.sqrt(dh2), cross)
    zero = (cp1 * cp2 == 0).to(cp1.dtype)
    v1x, v1y = ap1 * (cp2 + zero), b1 * (cp2 + zero)
    v2x, v2y = ap2 * (cp1 + zero), b2 * (cp1 + zero)
    obtuse = ap1 * ap2 + b1 * b2 < 0
    side = torch.where(cross < 0, -1.0, 1.0).to(cross.dtype)
    x = torch.where(obtuse, side * (v2y - v1y), v1x + v2x)
    y = torch.where(obtuse, side * (v1x - v2x), v1y + v2y)
    opposite = (cross == 0) & obtuse
    # Exactly opposite hues (Sharma pair 14): h̄' = (h'₁ + h'₂)/2 and sign(ΔH') = sign(h'₂ − h'₁).
    # Computed for all pairs and selected with where(), which keeps the code free of data-dependent
    # control flow (one kernel stream on the GPU); the extra atan2s are cheap there.
    h1 = torch.remainder(torch.atan2(b1, ap1), _TWO_PI)
    h2 = torch.remainder(torch.atan2(b2, ap2), _TWO_PI)
    hmid = 0.5 * (h1 + h2)
    x = torch.where(opposite, torch.cos(hmid), x)
    y = torch.where(opposite, torch.sin(hmid), y)
    dh = torch.where(opposite, torch.copysign(dh.abs(), h2 - h1), dh)
    hbar = torch.atan2(y, x)
    hbar = hbar + (hbar < 0).to(hbar.dtype) * _TWO_PI
    r = torch.sqrt(x * x + y * y)
    none = (r == 0).to(r.dtype)
    r = r + none
    t = _hue_weight((x + none) / r, y / r)
    z = (hbar - _THETA_PEAK) / _THETA_WIDTH
    rotation = torch.sin((2.0 * _THETA_AMPL) * torch.exp(-(z * z)))
    cpbar = (cp1 + cp2) * 0.5
    c7 = cpbar ** 7
    rt = -2.0 * torch.sqrt(c7 / (c7 + _POW25_7)) * rotation
    lm = ((L1 + L2) * 0.5 - 50.0) ** 2
    sl = 1.0 + 0.015 * lm / torch.sqrt(20.0 + lm)
    tl = dl / sl
    tc = dc / (1.0 + 0.045 * cpbar)
    th = dh / (1.0 + 0.015 * cpbar * t)
    return torch.sqrt(tl * tl + tc * tc + th * th + rt * tc * th)
