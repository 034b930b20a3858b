"""Painting as a pure function of 3D points, and baking it into a UV texture."""

from __future__ import annotations

import numpy as np

from backend.data.synth.geometry import Landmarks, vertex_normals
from backend.data.synth.outfits import (
    BOTTOMS,
    EYES,
    FONT,
    HAIR,
    PART_INDEX,
    PARTS,
    PUPIL,
    RGB,
    SCLERA,
    SHIRT,
    SHOES,
    SKIN,
    Garment,
    Outfit,
)
from backend.errors import InputError


def paint(points: np.ndarray, normals: np.ndarray, weights: np.ndarray, marks: Landmarks,
          outfit: Outfit) -> tuple[np.ndarray, np.ndarray]:
    """Colours (M, 3) float32 sRGB in [0, 1] and region labels (M,) uint8 (index into REGIONS).

    ``points`` are on the body surface, ``normals`` their (not necessarily unit) normals and ``weights``
    their interpolated part weights (M, len(PARTS)).
    """
    p = np.asarray(points, dtype=np.float64)
    n = np.asarray(normals, dtype=np.float64)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    part = np.asarray(weights).argmax(1)
    out = np.empty((len(p), 3), dtype=np.float64)
    label = np.full(len(p), SKIN, dtype=np.uint8)

    def is_part(*names: str) -> np.ndarray:
        table = np.zeros(len(PARTS), dtype=bool)
        table[[PART_INDEX[x] for x in names]] = True
        return table[part]

    # Shirt / bottoms on the torso: split by the waist hem plane; the collar opening is a ball around the
    # neck base (a smooth, round neckline instead of the ragged weight border between torso and neck).
    hip_z = marks.hip[:, 2].mean()
    waist_z = hip_z + outfit.waist * (marks.shoulder[:, 2].mean() - hip_z)
    torso = is_part("torso", "neck")
    collar_centre = marks.neck + np.array([0.0, -0.02, 0.0])  # a little forward: lower at the front
    collar = (np.linalg.norm(p - collar_centre, axis=1) < outfit.neckline) | (p[:, 2] > marks.neck[2])
    label[torso & ~collar & (p[:, 2] >= waist_z)] = SHIRT
    label[torso & ~collar & (p[:, 2] < waist_z)] = BOTTOMS
    # Sleeves and legs: hem planes across the limb; shoes: everything of the leg below the shoe top.
    for s in (0, 1):
        side = "lr"[s]
        limb = is_part(f"upperarm_{side}", f"forearm_{side}")
        label[limb & _before_hem(p, marks.shoulder[s], marks.elbow[s], marks.wrist[s], outfit.sleeve)] = SHIRT
        limb = is_part(f"thigh_{side}", f"shin_{side}", f"foot_{side}")
        label[limb & _before_hem(p, marks.hip[s], marks.knee[s], marks.ankle[s], outfit.leg)] = BOTTOMS
        label[limb & (p[:, 2] < marks.ankle[s, 2] + outfit.shoe_top)] = SHOES
    head = is_part("head")
    label[head & _hair(p, marks, outfit)] = HAIR
    eyes = is_part("eye_l", "eye_r")
    label[eyes] = EYES

    out[:] = np.asarray(outfit.skin) / 255.0
    out[label == HAIR] = np.asarray(outfit.hair) / 255.0
    out[label == SHOES] = np.asarray(outfit.shoes) / 255.0
    sel = label == SHIRT
    out[sel] = _pattern(outfit.shirt, p[sel], n[sel], marks, waist_z)
    sel = label == BOTTOMS
    out[sel] = _pattern(outfit.bottoms, p[sel], n[sel], marks, waist_z)
    if eyes.any():
        out[eyes] = _eye(p[eyes], part[eyes] == PART_INDEX["eye_r"], marks, outfit.iris)
    return out.astype(np.float32), label


def _before_hem(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, hem: float) -> np.ndarray:
    """Points on the body side of a hem plane across the limb a→b→c; ``hem`` in 0..2 along the limb."""
    if hem >= 2.0:
        return np.ones(len(p), dtype=bool)
    start, end = (a, b) if hem < 1.0 else (b, c)
    t = hem if hem < 1.0 else hem - 1.0
    axis = end - start
    return (p - (start + t * axis)) @ (axis / np.linalg.norm(axis)) < 0.0


def _hair(p: np.ndarray, marks: Landmarks, outfit: Outfit) -> np.ndarray:
    """Head points above a hairline that drops from the forehead to the nape."""
    z0 = marks.skull_base[2]
    zn = (p[:, 2] - z0) / (marks.crown_z - z0)
    yn = (p[:, 1] - marks.face_y) / (marks.back_y - marks.face_y)
    s = np.clip((yn - 0.5) / 0.35, 0.0, 1.0)
    s = s * s * (3 - 2 * s)
    line = outfit.hairline_front + (outfit.hairline_back - outfit.hairline_front) * s
    return zn > line


def _eye(p: np.ndarray, right: np.ndarray, marks: Landmarks, iris: RGB) -> np.ndarray:
    """Sclera, iris and pupil of eyeballs looking straight ahead (-y)."""
    centre = np.where(right[:, None], marks.eye[1], marks.eye[0])
    d = p - centre
    cos = -d[:, 1] / np.maximum(np.linalg.norm(d, axis=1), 1e-12)
    out = np.tile(np.asarray(SCLERA, dtype=np.float64) / 255.0, (len(p), 1))
    out[cos > 0.86] = np.asarray(iris) / 255.0
    out[cos > 0.96] = np.asarray(PUPIL) / 255.0
    return out


def _pattern(g: Garment, p: np.ndarray, n: np.ndarray, marks: Landmarks, waist_z: float) -> np.ndarray:
    colors = np.asarray(g.colors, dtype=np.float64) / 255.0
    out = np.tile(colors[0], (len(p), 1))
    if g.pattern == "stripes":
        band = np.floor((p[:, 2] - waist_z - g.phase) / (0.5 * g.scale)).astype(np.int64)
        out[band % 2 == 1] = colors[1]
    elif g.pattern == "checks":
        cell = np.floor((p - np.array([0.0, 0.0, waist_z]) - g.phase) / g.scale).astype(np.int64)
        out[cell.sum(1) % 2 == 1] = colors[1]
    elif g.pattern == "logo":
        patch, ink = _logo(g, p, n, marks, waist_z)
        out[patch] = colors[1]
        out[ink] = colors[2]
    elif g.pattern != "solid":
        raise InputError(f"unknown garment pattern {g.pattern!r}")
    return out


def _logo(g: Garment, p: np.ndarray, n: np.ndarray, marks: Landmarks, waist_z: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """(patch, ink) masks of a rectangular chest patch, projected along y onto the front of the torso."""
    shoulder = marks.shoulder.mean(0)
    cx = shoulder[0]
    cz = waist_z + 0.62 * (shoulder[2] - waist_z)
    width = g.scale
    height = 0.62 * width
    u = (p[:, 0] - cx) / width + 0.5           # 0..1 left to right as seen from the front
    v = (cz - p[:, 2]) / height + 0.5          # 0..1 top to bottom
    front = (n[:, 1] < -0.3) & (p[:, 1] < shoulder[1])
    patch = front & (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    ink = np.zeros(len(p), dtype=bool)
    if g.emblem:
        cols = 6 * len(g.emblem) - 1
        cell = min(0.84 / cols, 0.7 / 7 * height / width)  # in units of the patch width
        gx = (u - 0.5) / cell + cols / 2
        gy = (v - 0.5) * (height / width) / cell + 3.5
        ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        bitmap = np.zeros((7, cols), dtype=bool)
        for k, ch in enumerate(g.emblem):
            glyph = np.array([[c == "#" for c in row] for row in FONT[ch]], dtype=bool)
            bitmap[:, 6 * k: 6 * k + 5] = glyph
        inside = patch & (ix >= 0) & (ix < cols) & (iy >= 0) & (iy < 7)
        ink[inside] = bitmap[iy[inside], ix[inside]]
    else:
        r = np.hypot((u - 0.5) * width, (v - 0.5) * height) / height
        ink = patch & (((r > 0.24) & (r < 0.38)) | (r < 0.1))
    return patch, ink


def rasterize_uv(uv: np.ndarray, face_uv: np.ndarray, size: int, chunk: int = 4096
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texels whose centres lie in a UV triangle: (flat texel index (K,), face (K,), barycentric (K, 3)).

    Texel (row i, column j) has its centre at u = (j + 0.5) / size, v = 1 - (i + 0.5) / size (row 0 is the
    top, as in the PNG and in `backend.meshio.sample_texture`). A texel on a shared edge goes to the
    triangle listed last.
    """
    t = np.asarray(uv, dtype=np.float64)[np.asarray(face_uv, dtype=np.int64)]  # (F, 3, 2)
    px = t[..., 0] * size - 0.5
    py = (1.0 - t[..., 1]) * size - 0.5
    texel, face, bary = [], [], []
    for lo in range(0, len(t), chunk):
        x, y = px[lo:lo + chunk], py[lo:lo + chunk]
        x0 = np.clip(np.ceil(x.min(1)), 0, size - 1).astype(np.int64)
        x1 = np.clip(np.floor(x.max(1)), 0, size - 1).astype(np.int64)
        y0 = np.clip(np.ceil(y.min(1)), 0, size - 1).astype(np.int64)
        y1 = np.clip(np.floor(y.max(1)), 0, size - 1).astype(np.int64)
        w = np.maximum(x1 - x0 + 1, 0)
        h = np.maximum(y1 - y0 + 1, 0)
        count = w * h
        f = np.repeat(np.arange(len(x)), count)
        local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        wf = np.maximum(w[f], 1)
        cx = (x0[f] + local % wf).astype(np.float64)
        cy = (y0[f] + local // wf).astype(np.float64)
        ax, ay = x[f, 0], y[f, 0]
        bx, by = x[f, 1], y[f, 1]
        qx, qy = x[f, 2], y[f, 2]
        det = (by - qy) * (ax - qx) + (qx - bx) * (ay - qy)
        ok = np.abs(det) > 1e-12
        det = np.where(ok, det, 1.0)
        l0 = ((by - qy) * (cx - qx) + (qx - bx) * (cy - qy)) / det
        l1 = ((qy - ay) * (cx - qx) + (ax - qx) * (cy - qy)) / det
        l2 = 1.0 - l0 - l1
        eps = -1e-9
        inside = ok & (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
        texel.append((cy * size + cx).astype(np.int64)[inside])
        face.append(f[inside] + lo)
        bary.append(np.clip(np.stack([l0, l1, l2], 1)[inside], 0.0, 1.0))
    return np.concatenate(texel), np.concatenate(face), np.concatenate(bary)


def interpolate_weights(weights: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of per-vertex part weights (float32: only their argmax matters)."""
    w = np.asarray(weights, dtype=np.float32)
    b = np.asarray(bary, dtype=np.float32)
    out = b[:, 0:1] * w[corners[:, 0]]
    out += b[:, 1:2] * w[corners[:, 1]]
    out += b[:, 2:3] * w[corners[:, 2]]
    return out


def bake_texture(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, face_uv: np.ndarray,
                 weights: np.ndarray, marks: Landmarks, outfit: Outfit, size: int = 1024,
                 pad: int | None = None, background: RGB = (128, 128, 128)) -> np.ndarray:
    """The outfit painted into a (size, size, 3) uint8 sRGB texture for the given UV layout.

    Each covered texel is painted at its own 3D point (so pattern edges are as sharp as the texture
    allows), then colours are pushed ``pad`` texels past island borders (default size/256, at least 2) so
    bilinear lookups and mip-maps at seams do not pick up the background.
    """
    from scipy import ndimage

    if pad is None:
        pad = max(2, size // 256)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    normals = vertex_normals(v, f)
    texel, face, bary = rasterize_uv(uv, face_uv, size)
    corners = f[face]
    pts = np.einsum("kc,kcj->kj", bary, v[corners])
    nrm = np.einsum("kc,kcj->kj", bary, normals[corners])
    colors, _ = paint(pts, nrm, interpolate_weights(weights, corners, bary), marks, outfit)
    image = np.empty((size * size, 3), dtype=np.uint8)
    image[:] = background
    image[texel] = np.clip(np.rint(colors * 255.0), 0, 255).astype(np.uint8)
    image = image.reshape(size, size, 3)
    if pad > 0:
        covered = np.zeros(size * size, dtype=bool)
        covered[texel] = True
        covered = covered.reshape(size, size)
        dist, (iy, ix) = ndimage.distance_transform_edt(~covered, return_indices=True)
        grow = (~covered) & (dist <= pad)
        image[grow] = image[iy[grow], ix[grow]]
    return image
