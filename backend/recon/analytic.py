"""A trained-like analytic occupancy field: a standing human body made of capsules and ellipsoids.

Random network weights give an occupancy that crosses 0.5 everywhere, so grid schedules cannot be
judged with them. A trained PIFu's field is close to ``sigmoid(-k * sdf)`` of the subject (sharp, 0/1
away from the surface). This module provides such a field in canonical space (height 1.7578, y up,
facing +z): torso, head, limbs, hands and thin fingers (radius 0.008-0.01, about 1-1.3 voxels at
resolution 256) plus mild smooth noise. Tests and the reconstruction benchmark use it to decide
occupancy while, in the benchmark, the real network is run on every queried point for its cost.
"""

from __future__ import annotations

import numpy as np

_CAPSULES = [  # (a, b, radius)
    ((0.0, 0.58, 0.0), (0.0, 0.66, 0.0), 0.045),           # neck
    ((0.08, 0.02, 0.0), (0.09, -0.42, 0.01), 0.065),       # thighs
    ((0.09, -0.42, 0.01), (0.10, -0.82, -0.01), 0.05),     # shins
    ((0.10, -0.85, -0.01), (0.10, -0.86, 0.10), 0.028),    # feet
    ((0.19, 0.50, 0.0), (0.30, 0.22, 0.0), 0.042),         # upper arms
    ((0.30, 0.22, 0.0), (0.38, -0.02, 0.04), 0.034),       # forearms
    ((0.385, -0.14, 0.05), (0.39, -0.22, 0.05), 0.009),    # fingers
    ((0.405, -0.14, 0.05), (0.415, -0.21, 0.05), 0.009),
    ((0.425, -0.13, 0.045), (0.44, -0.19, 0.045), 0.008),
    ((0.37, -0.10, 0.07), (0.355, -0.16, 0.09), 0.010),    # thumbs
]
_CANE = ((0.40, -0.08, 0.06), (0.52, -0.86, 0.16), 0.011)  # a thin stick held in the right hand
_ELLIPSOIDS = [  # (centre, radii)
    ((0.0, 0.74, 0.0), (0.085, 0.11, 0.095)),    # head
    ((0.0, 0.30, 0.0), (0.17, 0.30, 0.10)),      # torso
    ((0.0, 0.02, 0.0), (0.16, 0.12, 0.10)),      # hips
    ((0.40, -0.09, 0.05), (0.032, 0.055, 0.018)),  # hands
]
_PONYTAIL = ((0.0, 0.72, -0.09), (0.0, 0.45, -0.13), 0.010)  # a thin strand behind the head


def _capsule(p: np.ndarray, a, b, r: float) -> np.ndarray:
    a = np.asarray(a, np.float64)
    ab = np.asarray(b, np.float64) - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1) - r


def _ellipsoid(p: np.ndarray, c, radii) -> np.ndarray:
    # the scaled-distance approximation: exact on the surface, smooth, a fair stand-in for an SDF
    q = (p - np.asarray(c, np.float64)) / np.asarray(radii, np.float64)
    return (np.linalg.norm(q, axis=1) - 1.0) * min(radii)


def body_sdf(points: np.ndarray, noise: float = 0.002) -> np.ndarray:
    """Approximate signed distance (negative inside) of the body at points (N, 3)."""
    p = np.asarray(points, np.float64)
    mirrored = p.copy()
    mirrored[:, 0] = np.abs(mirrored[:, 0])  # limbs are symmetric in x
    d = np.full(len(p), np.inf)
    for a, b, r in _CAPSULES:
        d = np.minimum(d, _capsule(mirrored, a, b, r))
    for c, radii in _ELLIPSOIDS:
        d = np.minimum(d, _ellipsoid(mirrored, c, radii))
    d = np.minimum(d, _capsule(p, *_PONYTAIL))
    d = np.minimum(d, _capsule(p, *_CANE))
    if noise:
        d = d + noise * np.sin(37.0 * p[:, 0]) * np.sin(41.0 * p[:, 1] + 1.0) * np.sin(43.0 * p[:, 2] + 2.0)
    return d


def body_occupancy(points: np.ndarray, sharpness: float = 200.0, noise: float = 0.002) -> np.ndarray:
    """``sigmoid(-sharpness * sdf)`` as float32 (N,): ~1 inside, ~0 outside, 0.5 on the surface."""
    z = np.clip(-sharpness * body_sdf(points, noise), -60.0, 60.0)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def _capsule_2d(q: np.ndarray, a, b, r: float) -> np.ndarray:
    a = np.asarray(a, np.float64)[:2]
    ab = np.asarray(b, np.float64)[:2] - a
    denom = max(float(ab @ ab), 1e-12)
    t = np.clip(((q - a) @ ab) / denom, 0.0, 1.0)
    return np.linalg.norm(q - (a + t[:, None] * ab), axis=1) - r


def silhouette_sdf(xy: np.ndarray) -> np.ndarray:
    """Signed 2D distance to the body's orthographic silhouette seen from +z (x right, y up)."""
    q = np.asarray(xy, np.float64)
    mirrored = q.copy()
    mirrored[:, 0] = np.abs(mirrored[:, 0])
    d = np.full(len(q), np.inf)
    for a, b, r in _CAPSULES:
        d = np.minimum(d, _capsule_2d(mirrored, a, b, r))
    for c, radii in _ELLIPSOIDS:
        e = (mirrored - np.asarray(c, np.float64)[:2]) / np.asarray(radii, np.float64)[:2]
        d = np.minimum(d, (np.linalg.norm(e, axis=1) - 1.0) * min(radii[:2]))
    d = np.minimum(d, _capsule_2d(q, *_PONYTAIL))
    return np.minimum(d, _capsule_2d(q, *_CANE))


def body_image(size: int = 512) -> np.ndarray:
    """An RGBA uint8 picture of the body from the yaw-0 camera (canonical calib diag(1,-1,1,1)),
    pixel centres at u = -1..1 as in ``avatex_core.canonical``; alpha is the silhouette, colours mark
    head/skin, shirt, trousers and shoes so colour queries have something to see."""
    u = np.linspace(-1.0, 1.0, size)
    xx, yy = np.meshgrid(u, -u)  # row 0 is the top (y = +1)
    xy = np.column_stack([xx.ravel(), yy.ravel()])
    inside = silhouette_sdf(xy) <= 0.0
    y = xy[:, 1]
    rgb = np.empty((len(xy), 3), np.float64)
    rgb[:] = (0.20, 0.25, 0.60)                       # trousers
    rgb[y > 0.05] = (0.80, 0.20, 0.15)                # shirt
    rgb[(y > 0.05) & (np.abs(xy[:, 0]) > 0.19)] = (0.85, 0.65, 0.50)  # arms: skin
    rgb[np.abs(xy[:, 0]) > 0.34] = (0.85, 0.65, 0.50)  # hands
    rgb[y > 0.62] = (0.85, 0.65, 0.50)                # neck and head
    rgb[y > 0.80] = (0.15, 0.10, 0.08)                # hair
    rgb[y < -0.80] = (0.10, 0.10, 0.10)               # shoes
    stripes = (np.floor((y + 1.0) * 20.0) % 2 == 0) & (y > 0.05) & (y < 0.6) & (np.abs(xy[:, 0]) < 0.19)
    rgb[stripes] *= 0.6
    out = np.zeros((len(xy), 4), np.uint8)
    out[:, :3] = np.rint(rgb * 255.0).astype(np.uint8)
    out[:, 3] = np.where(inside, 255, 0)
    out[~inside, :3] = 0
    return out.reshape(size, size, 4)

