"""Sample avatars: real anny bodies wearing painted clothes, exported like raw scans.

anny (PyPI, MakeHuman-derived CC0 assets) gives realistic naked bodies but no colour at all. Texture
metrics need ground truth whose colours have *sharp, known* edges, so the clothes are painted by rules
evaluated at 3D surface points:

* every surface point belongs to a coarse body part (torso, upper arm, hand, ...), the argmax of the
  skinning weights of the part's bones, interpolated barycentrically (smooth, mesh-independent borders);
* garments are cut from the parts by planes through joints estimated from the same weights (sleeve hem
  across the arm, waist hem across the torso, shorts hem across the thigh), the hairline is a curve on
  the head;
* patterns are functions of the 3D position: stripes along the height, checks on a 3D grid, a logo patch
  (letters or a ring) projected onto the chest front.

Because the painting is a pure function of (points, normals, part weights, outfit), the same function
bakes the UV texture (evaluated at every texel's 3D point) and the vertex colours of the subdivided PLY,
so both exports show the same clothes, and tests can repaint a committed avatar without anny.

Output is what a scanner would give: metres, z up, facing -y, anny's rest A-pose. The renderer
normalises (design.md §3).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatex_core.atomic import atomic_path, write_bytes, write_json
from backend.errors import CancelledError, InputError

Progress = Callable[[str, float, dict], None]

ANNY_INSTALL_HINT = "pip install --no-deps anny==0.6.2 roma"
FORMAT = "avatex-synth-avatar/1"

# Coarse body parts, each the set of anny bones (by label prefix and side) whose skinning weights it sums.
PARTS: tuple[str, ...] = (
    "torso", "neck", "head", "eye_l", "eye_r",
    "upperarm_l", "upperarm_r", "forearm_l", "forearm_r", "hand_l", "hand_r",
    "thigh_l", "thigh_r", "shin_l", "shin_r", "foot_l", "foot_r",
)
_PART_BONES: dict[str, tuple[tuple[str, ...], str]] = {
    "torso": (("root", "spine", "clavicle", "shoulder", "pelvis"), ""),
    "neck": (("neck",), ""),
    "head": (("head", "jaw", "tongue", "special", "levator", "oris", "orbicularis", "temporalis",
              "risorius", "eyebrows", "eyelid", "cheek", "nose", "mouth", "ear"), ""),
    "eye_l": (("eye",), ".L"), "eye_r": (("eye",), ".R"),
    "upperarm_l": (("upperarm",), ".L"), "upperarm_r": (("upperarm",), ".R"),
    "forearm_l": (("lowerarm",), ".L"), "forearm_r": (("lowerarm",), ".R"),
    "hand_l": (("wrist", "finger", "metacarpal", "thumb"), ".L"),
    "hand_r": (("wrist", "finger", "metacarpal", "thumb"), ".R"),
    "thigh_l": (("upperleg",), ".L"), "thigh_r": (("upperleg",), ".R"),
    "shin_l": (("lowerleg",), ".L"), "shin_r": (("lowerleg",), ".R"),
    "foot_l": (("foot", "toe"), ".L"), "foot_r": (("foot", "toe"), ".R"),
}
_P = {name: i for i, name in enumerate(PARTS)}

# What a painted point is; `paint` returns these as uint8 labels.
REGIONS: tuple[str, ...] = ("skin", "hair", "shirt", "bottoms", "shoes", "eyes")
SKIN, HAIR, SHIRT, BOTTOMS, SHOES, EYES = range(len(REGIONS))

SHIRT_PATTERNS: tuple[str, ...] = ("solid", "stripes", "checks", "logo")
BOTTOM_PATTERNS: tuple[str, ...] = ("solid", "checks")

RGB = tuple[int, int, int]

GARMENT_COLORS: dict[str, RGB] = {
    "white": (236, 236, 230), "black": (28, 28, 32), "charcoal": (64, 66, 72), "grey": (140, 140, 140),
    "navy": (28, 42, 94), "royal blue": (38, 82, 200), "sky blue": (120, 182, 232),
    "denim": (68, 96, 138), "red": (196, 30, 42), "maroon": (112, 26, 42), "orange": (240, 128, 30),
    "yellow": (246, 206, 40), "olive": (108, 114, 44), "green": (36, 142, 72), "teal": (18, 130, 132),
    "purple": (112, 50, 142), "pink": (236, 128, 170), "khaki": (192, 170, 120), "brown": (112, 70, 40),
}
# Light to deep, roughly spanning the Fitzpatrick/Monk scales.
SKIN_TONES: tuple[RGB, ...] = (
    (255, 224, 199), (241, 196, 168), (226, 173, 139), (201, 145, 108),
    (172, 116, 82), (141, 88, 60), (109, 66, 44), (78, 49, 35),
)
HAIR_COLORS: dict[str, RGB] = {
    "black": (28, 24, 22), "dark brown": (58, 38, 26), "brown": (102, 66, 40), "auburn": (132, 58, 34),
    "blond": (204, 166, 102), "grey": (156, 154, 150),
}
SHOE_COLORS: dict[str, RGB] = {
    "black": (24, 24, 26), "white": (238, 238, 234), "brown": (96, 58, 32), "grey": (118, 118, 122),
    "navy": (30, 40, 80), "red": (176, 30, 36),
}
IRIS_COLORS: dict[str, RGB] = {"brown": (92, 56, 32), "blue": (70, 110, 160), "green": (80, 116, 70),
                               "hazel": (130, 100, 52)}
SCLERA: RGB = (236, 234, 228)
PUPIL: RGB = (14, 14, 16)

# 5x7 bitmap letters for the logo patch ('#' = ink). Only shapes that read well at 7 texels high.
_FONT: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
}


# ---------------------------------------------------------------------------------------------------
# Outfits: what to paint, as plain data (JSON round trip) so a painted avatar can be reproduced.

@dataclass(frozen=True)
class Garment:
    """One garment's look.

    ``colors``: solid → (base,); stripes/checks → (a, b); logo → (base, patch, emblem).
    ``scale``: stripe period / check size in metres; for a logo the patch width in metres.
    ``phase``: pattern offset in metres (stripes/checks).  ``emblem``: logo letters, or "" for a ring.
    """

    pattern: str
    colors: tuple[RGB, ...]
    scale: float = 0.0
    phase: float = 0.0
    emblem: str = ""

    def to_dict(self) -> dict:
        return {"pattern": self.pattern, "colors": [list(c) for c in self.colors], "scale": self.scale,
                "phase": self.phase, "emblem": self.emblem}

    @classmethod
    def from_dict(cls, d: dict) -> Garment:
        return cls(pattern=str(d["pattern"]), colors=tuple(_rgb(c) for c in d["colors"]),
                   scale=float(d.get("scale", 0.0)), phase=float(d.get("phase", 0.0)),
                   emblem=str(d.get("emblem", "")))


@dataclass(frozen=True)
class Outfit:
    """Everything `paint` needs besides the geometry.

    ``sleeve`` and ``leg`` are hem positions along the limb: 0..1 along the upper arm / thigh (short
    sleeves, shorts), 1..2 along the forearm / shin (long sleeves, trousers; 2 = down to the hand/foot).
    ``waist``: shirt hem height between hip joints (0) and shoulder joints (1).
    ``hairline_front`` / ``hairline_back``: hair starts at this fraction of the height from the skull base
    to the crown, at the face and at the back of the head.
    ``neckline``: radius (m) of the ball around the neck base that the collar opening cuts out.
    ``shoe_top``: shoe height (m) above the ankle joint.
    """

    skin: RGB
    hair: RGB
    iris: RGB
    shoes: RGB
    shirt: Garment
    bottoms: Garment
    sleeve: float
    leg: float
    waist: float
    hairline_front: float
    hairline_back: float
    neckline: float
    shoe_top: float

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("skin", "hair", "iris", "shoes"):
            d[key] = list(d[key])
        d["shirt"] = self.shirt.to_dict()
        d["bottoms"] = self.bottoms.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Outfit:
        return cls(skin=_rgb(d["skin"]), hair=_rgb(d["hair"]), iris=_rgb(d["iris"]), shoes=_rgb(d["shoes"]),
                   shirt=Garment.from_dict(d["shirt"]), bottoms=Garment.from_dict(d["bottoms"]),
                   sleeve=float(d["sleeve"]), leg=float(d["leg"]), waist=float(d["waist"]),
                   hairline_front=float(d["hairline_front"]), hairline_back=float(d["hairline_back"]),
                   neckline=float(d["neckline"]), shoe_top=float(d["shoe_top"]))

    def palette(self) -> dict[str, list[list[int]]]:
        """Every colour a painted point can take, by region (for tests and the JSON)."""
        return {"skin": [list(self.skin)], "hair": [list(self.hair)],
                "shirt": [list(c) for c in self.shirt.colors],
                "bottoms": [list(c) for c in self.bottoms.colors], "shoes": [list(self.shoes)],
                "eyes": [list(SCLERA), list(self.iris), list(PUPIL)]}


def _rgb(c) -> RGB:
    r, g, b = (int(x) for x in c)
    return (r, g, b)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours in [0, 1]; enough to keep palette choices apart (not a metric)."""
    c = np.asarray(rgb, dtype=np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def delta_e(a: RGB, b: RGB) -> float:
    """CIE76 colour difference of two 8-bit sRGB colours."""
    la, lb = srgb_to_lab(np.array([a, b], dtype=np.float64) / 255.0)
    return float(np.linalg.norm(la - lb))


PATTERN_CONTRAST = 35.0   # ΔE76 between the colours inside one pattern: edges stay obvious
GARMENT_CONTRAST = 22.0   # between neighbouring regions (shirt / bottoms / skin)


def random_outfit(rng: np.random.Generator, shirt_pattern: str | None = None,
                  skin_darkness: float | None = None) -> Outfit:
    """A random, plausible outfit with well separated colours.

    ``skin_darkness`` in [0, 1] centres the skin tone (anny's ancestry sliders feed it); None = uniform.
    """
    if shirt_pattern is None:
        shirt_pattern = SHIRT_PATTERNS[int(rng.integers(len(SHIRT_PATTERNS)))]
    if shirt_pattern not in SHIRT_PATTERNS:
        raise InputError(f"unknown shirt pattern {shirt_pattern!r}; use one of {', '.join(SHIRT_PATTERNS)}")
    if skin_darkness is None:
        tone = int(rng.integers(len(SKIN_TONES)))
    else:
        centre = float(np.clip(skin_darkness, 0, 1)) * (len(SKIN_TONES) - 1)
        tone = int(np.clip(np.rint(centre + rng.normal(0, 0.8)), 0, len(SKIN_TONES) - 1))
    skin = SKIN_TONES[tone]

    def pick(pool: dict[str, RGB], rules: list[tuple[list[RGB], float]]) -> RGB:
        """A random colour of ``pool`` at least ΔE away from each rule's colours (else the best one)."""
        names = sorted(pool)
        order = rng.permutation(len(names))
        best, best_margin = pool[names[order[0]]], -np.inf
        for i in order:
            c = pool[names[i]]
            margin = min((delta_e(c, e) - de for others, de in rules for e in others), default=0.0)
            if margin >= 0:
                return c
            if margin > best_margin:
                best, best_margin = c, margin
        return best

    G, P = GARMENT_CONTRAST, PATTERN_CONTRAST
    shirt_base = pick(GARMENT_COLORS, [([skin], G)])
    if shirt_pattern == "solid":
        shirt = Garment("solid", (shirt_base,))
    elif shirt_pattern in ("stripes", "checks"):
        second = pick(GARMENT_COLORS, [([shirt_base], P), ([skin], G)])
        scale = float(rng.uniform(0.04, 0.09) if shirt_pattern == "stripes" else rng.uniform(0.05, 0.09))
        shirt = Garment(shirt_pattern, (shirt_base, second), scale=round(scale, 4),
                        phase=round(float(rng.uniform(0, scale)), 4))
    else:
        patch = pick(GARMENT_COLORS, [([shirt_base], P)])
        ink = pick(GARMENT_COLORS, [([patch], P)])
        letters = sorted(_FONT)
        emblem = "" if rng.random() < 0.3 else "".join(letters[int(i)] for i in rng.integers(len(letters),
                                                                                             size=3))
        shirt = Garment("logo", (shirt_base, patch, ink), scale=round(float(rng.uniform(0.13, 0.17)), 4),
                        emblem=emblem)
    # Colours touching the shirt (waist hem) or the skin (shorts hem) stay apart from both.
    edge = shirt.colors if shirt.pattern != "logo" else shirt.colors[:1]
    bottom_base = pick(GARMENT_COLORS, [([skin], G), (list(edge), G)])
    if rng.random() < 0.3:
        size = float(rng.uniform(0.05, 0.09))
        second = pick(GARMENT_COLORS, [([bottom_base], P), ([skin], G), (list(edge), G)])
        bottoms = Garment("checks", (bottom_base, second), scale=round(size, 4),
                          phase=round(float(rng.uniform(0, size)), 4))
    else:
        bottoms = Garment("solid", (bottom_base,))
    shoes = pick(SHOE_COLORS, [(list(bottoms.colors), G), ([skin], G)])
    hair = pick(HAIR_COLORS, [([skin], 15.0)])
    iris_names = sorted(IRIS_COLORS)
    long_sleeves = rng.random() < 0.5
    trousers = rng.random() < 0.65
    return Outfit(
        skin=skin,
        hair=hair,
        iris=IRIS_COLORS[iris_names[int(rng.integers(len(iris_names)))]],
        shoes=shoes, shirt=shirt, bottoms=bottoms,
        sleeve=round(float(rng.uniform(1.85, 1.95) if long_sleeves else rng.uniform(0.35, 0.6)), 4),
        leg=2.0 if trousers else round(float(rng.uniform(0.45, 0.8)), 4),
        waist=round(float(rng.uniform(0.22, 0.32)), 4),
        hairline_front=round(float(rng.uniform(0.78, 0.86)), 4),
        hairline_back=round(float(rng.uniform(0.02, 0.3)), 4),
        neckline=round(float(rng.uniform(0.07, 0.1)), 4),
        shoe_top=round(float(rng.uniform(0.0, 0.04)), 4),
    )


# ---------------------------------------------------------------------------------------------------
# Geometry helpers (pure numpy).

def part_weights(bone_labels: list[str], vertex_bone_indices: np.ndarray,
                 vertex_bone_weights: np.ndarray) -> np.ndarray:
    """(N, len(PARTS)) float32: each vertex's skinning weight summed per coarse body part.

    Bones matching no part (none in anny's default rig) count as torso, so every row sums to 1.
    """
    bone_part = np.full(len(bone_labels), _P["torso"], dtype=np.int64)
    for b, label in enumerate(bone_labels):
        base, side = (label[:-2], label[-2:]) if label.endswith((".L", ".R")) else (label, "")
        for name, (prefixes, want_side) in _PART_BONES.items():
            if base.startswith(prefixes) and side == want_side:
                bone_part[b] = _P[name]
                break
    idx = np.asarray(vertex_bone_indices, dtype=np.int64)
    w = np.asarray(vertex_bone_weights, dtype=np.float64)
    out = np.zeros((len(idx), len(PARTS)))
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    np.add.at(out, (rows, bone_part[idx.ravel()]), w.ravel())
    return out.astype(np.float32)


@dataclass(frozen=True)
class Landmarks:
    """Joint centres (metres) estimated from where adjacent parts' weights blend; rows = (left, right)."""

    shoulder: np.ndarray
    elbow: np.ndarray
    wrist: np.ndarray
    hip: np.ndarray
    knee: np.ndarray
    ankle: np.ndarray
    eye: np.ndarray
    neck: np.ndarray        # (3,) torso/neck junction
    skull_base: np.ndarray  # (3,) neck/head junction
    crown_z: float          # top of the head
    face_y: float           # front-most head point (anny faces -y)
    back_y: float           # back-most head point


def landmarks(vertices: np.ndarray, weights: np.ndarray) -> Landmarks:
    """Joint centres as the centroid of vertices weighted by w_a * w_b of the two parts meeting there."""
    v = np.asarray(vertices, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)

    def joint(a: str, b: str) -> np.ndarray:
        k = w[:, _P[a]] * w[:, _P[b]]
        if not k.sum() > 0:
            raise InputError(f"the part weights have no {a}/{b} junction "
                             "(not an anny default-topology body?)")
        return (k[:, None] * v).sum(0) / k.sum()

    def pair(a: str, b: str) -> np.ndarray:
        return np.stack([joint(a.format(s="l"), b.format(s="l")), joint(a.format(s="r"), b.format(s="r"))])

    head = w.argmax(1) == _P["head"]
    eyes = np.stack([(w[:, _P[e], None] * v).sum(0) / w[:, _P[e]].sum() for e in ("eye_l", "eye_r")])
    return Landmarks(
        shoulder=pair("torso", "upperarm_{s}"), elbow=pair("upperarm_{s}", "forearm_{s}"),
        wrist=pair("forearm_{s}", "hand_{s}"), hip=pair("torso", "thigh_{s}"),
        knee=pair("thigh_{s}", "shin_{s}"), ankle=pair("shin_{s}", "foot_{s}"), eye=eyes,
        neck=joint("torso", "neck"), skull_base=joint("neck", "head"), crown_z=float(v[head, 2].max()),
        face_y=float(v[head, 1].min()), back_y=float(v[head, 1].max()))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (N, 3) float64."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        for c in range(3):
            n[:, c] += np.bincount(f[:, k], weights=fn[:, c], minlength=len(v))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def subdivide_midpoint(vertices: np.ndarray, faces: np.ndarray, *attributes: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Split every triangle into four at its edge midpoints (shape unchanged, watertightness kept).

    The original vertices keep their indices; midpoints follow. Per-vertex ``attributes`` are interpolated
    linearly, exactly as barycentric interpolation on the original surface would give them.
    """
    v = np.asarray(vertices)
    f = np.asarray(faces, dtype=np.int64)
    edges = np.sort(np.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=1).reshape(-1, 2), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = (len(v) + inverse.reshape(-1, 3)).astype(np.int64)  # (F, 3): edges 01, 12, 20
    e01, e12, e20 = mid[:, 0], mid[:, 1], mid[:, 2]
    new_faces = np.concatenate([
        np.stack([f[:, 0], e01, e20], 1), np.stack([f[:, 1], e12, e01], 1),
        np.stack([f[:, 2], e20, e12], 1), np.stack([e01, e12, e20], 1)])
    new_v = np.concatenate([v, 0.5 * (v[unique[:, 0]] + v[unique[:, 1]])])
    new_attrs = [np.concatenate([a, (0.5 * (a[unique[:, 0]].astype(np.float64)
                                            + a[unique[:, 1]].astype(np.float64))).astype(a.dtype)])
                 for a in (np.asarray(x) for x in attributes)]
    return new_v, new_faces, new_attrs


# ---------------------------------------------------------------------------------------------------
# Painting: a pure function of 3D points.

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
        table[[_P[x] for x in names]] = True
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
        out[eyes] = _eye(p[eyes], part[eyes] == _P["eye_r"], marks, outfit.iris)
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
            glyph = np.array([[c == "#" for c in row] for row in _FONT[ch]], dtype=bool)
            bitmap[:, 6 * k: 6 * k + 5] = glyph
        inside = patch & (ix >= 0) & (ix < cols) & (iy >= 0) & (iy < 7)
        ink[inside] = bitmap[iy[inside], ix[inside]]
    else:
        r = np.hypot((u - 0.5) * width, (v - 0.5) * height) / height
        ink = patch & (((r > 0.24) & (r < 0.38)) | (r < 0.1))
    return patch, ink


# ---------------------------------------------------------------------------------------------------
# Baking into a UV texture.

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


# ---------------------------------------------------------------------------------------------------
# One avatar, ready to write.

@dataclass
class Avatar:
    """A painted body: textured mesh (OBJ export) and vertex-coloured dense mesh (PLY export)."""

    vertices: np.ndarray      # (N, 3) float64, metres, z up, facing -y
    faces: np.ndarray         # (F, 3) int64
    uv: np.ndarray            # (T, 2) float64
    face_uv: np.ndarray       # (F, 3) int64
    texture: np.ndarray       # (S, S, 3) uint8
    dense_vertices: np.ndarray
    dense_faces: np.ndarray
    dense_colors: np.ndarray  # (M, 3) float32 sRGB
    outfit: Outfit
    landmarks: Landmarks

    @property
    def height(self) -> float:
        return float(np.ptp(self.vertices[:, 2]))


def quantize(x: np.ndarray, decimals: int) -> np.ndarray:
    """Round to a decimal grid so that a ``%.{decimals}f`` text file reads back to the identical doubles."""
    scale = 10.0 ** decimals
    return np.rint(np.asarray(x, dtype=np.float64) * scale) / scale


VERTEX_DECIMALS = 5   # 10 µm
UV_DECIMALS = 6


def paint_avatar(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, face_uv: np.ndarray,
                 weights: np.ndarray, outfit: Outfit, texture_size: int = 1024, subdivisions: int = 1
                 ) -> Avatar:
    """Paint one body: bake the texture and colour the vertices of a ``subdivisions``-times split copy.

    Vertices and UVs are first put on the grid the OBJ is written with, so repainting the written file
    gives the same texture bit for bit.
    """
    v = quantize(vertices, VERTEX_DECIMALS)
    t = quantize(uv, UV_DECIMALS)
    f = np.asarray(faces, dtype=np.int64)
    ft = np.asarray(face_uv, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float32)
    marks = landmarks(v, w)
    texture = bake_texture(v, f, t, ft, w, marks, outfit, size=texture_size)
    dv, df, (dn, dw) = v, f, (vertex_normals(v, f), w)
    for _ in range(subdivisions):
        dv, df, (dn, dw) = subdivide_midpoint(dv, df, dn, dw)
    colors, _ = paint(dv, dn, dw, marks, outfit)
    return Avatar(vertices=v, faces=f, uv=t, face_uv=ft, texture=texture, dense_vertices=dv,
                  dense_faces=df, dense_colors=colors, outfit=outfit, landmarks=marks)


# ---------------------------------------------------------------------------------------------------
# Bodies from anny.

# Plausible adults: (low, high) of each anny phenotype slider; height is solved for separately.
PHENOTYPE_RANGES: dict[str, tuple[float, float]] = {
    "age": (0.6, 0.9),            # anny: 1/3 child, 2/3 young adult (~25 y), 1 old (~90 y)
    "muscle": (0.25, 0.75),
    "weight": (0.2, 0.75),
    "proportions": (0.2, 0.7),
    "cupsize": (0.25, 0.75),
    "firmness": (0.3, 0.8),
}
# Adult stature (m), mean and spread by sex, clipped to HEIGHT_LIMITS.
STATURE = {"male": (1.76, 0.07), "female": (1.63, 0.065)}
HEIGHT_LIMITS = (1.52, 1.97)
LOCAL_CHANGE_SIGMA = 0.06
LOCAL_CHANGE_LIMIT = 0.15


def random_identity(rng: np.random.Generator, local_change_labels: list[str]
                    ) -> tuple[dict[str, float], dict[str, float], float]:
    """(phenotype sliders without height, mild symmetric local changes, target height in metres)."""
    sex = "male" if rng.random() < 0.5 else "female"
    pheno = {"gender": float(rng.uniform(0.0, 0.12) if sex == "male" else rng.uniform(0.88, 1.0))}
    for key, (lo, hi) in PHENOTYPE_RANGES.items():
        pheno[key] = float(rng.uniform(lo, hi))
    ancestry = rng.dirichlet([0.6, 0.6, 0.6])
    pheno.update(african=float(ancestry[0]), asian=float(ancestry[1]), caucasian=float(ancestry[2]))
    pheno = {k: round(v, 4) for k, v in pheno.items()}
    local: dict[str, float] = {}
    for label in local_change_labels:
        if label.startswith("r-") or "trans-out" in label or "pregnant" in label:
            continue  # right sides mirror the left; sideways shifts and pregnancy are not "mild"
        value = round(float(np.clip(rng.normal(0, LOCAL_CHANGE_SIGMA), -LOCAL_CHANGE_LIMIT,
                                    LOCAL_CHANGE_LIMIT)), 4)
        local[label] = value
        if label.startswith("l-") and "r-" + label[2:] in local_change_labels:
            local["r-" + label[2:]] = value
    mean, sd = STATURE[sex]
    target = float(np.clip(rng.normal(mean, sd), *HEIGHT_LIMITS))
    return pheno, local, round(target, 4)


class AnnyBodies:
    """anny's full-body model, built once (the first build caches ~1 GB under $ANNY_CACHE_DIR)."""

    def __init__(self) -> None:
        import warnings

        try:
            import anny
            import roma  # noqa: F401  (anny needs it; fail here with the hint, not deep inside anny)
            import torch
        except ImportError as exc:
            raise InputError(f"the sample avatars need anny and roma ({exc.name} is missing): "
                             f"{ANNY_INSTALL_HINT}") from exc
        self._torch = torch
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ww]arp.*")
            self.model = anny.Anny(local_changes="default", phenotypes="all")
        m = self.model
        self.version = getattr(anny, "__version__", "unknown")
        self.faces = m.faces.cpu().numpy().astype(np.int64)
        # anny's atlas lists UVs no body face uses (helper geometry): keep only the used ones.
        face_uv = m.face_texture_coordinate_indices.cpu().numpy().astype(np.int64)
        used, self.face_uv = np.unique(face_uv, return_inverse=True)
        self.face_uv = self.face_uv.reshape(face_uv.shape)
        self.uv = m.texture_coordinates.cpu().numpy().astype(np.float64)[used]
        self.weights = part_weights(list(m.bone_labels), m.vertex_bone_indices.cpu().numpy(),
                                    m.vertex_bone_weights.cpu().numpy())
        self.local_change_labels = list(m.local_change_labels)

    def vertices(self, phenotype: dict[str, float], local_changes: dict[str, float],
                 heights: list[float]) -> np.ndarray:
        """(len(heights), N, 3) rest-pose vertices for each value of the height slider."""
        torch = self._torch
        b = len(heights)
        pk = {k: torch.full((b,), float(v), dtype=torch.float64) for k, v in phenotype.items()}
        pk["height"] = torch.tensor(heights, dtype=torch.float64)
        lk = {k: torch.full((b,), float(v), dtype=torch.float64) for k, v in local_changes.items()}
        with torch.no_grad():
            out = self.model(phenotype_kwargs=pk, local_changes_kwargs=lk)
        return out["vertices"].cpu().numpy().astype(np.float64)

    def body(self, phenotype: dict[str, float], local_changes: dict[str, float], target_height: float
             ) -> tuple[np.ndarray, float]:
        """Vertices of the body whose standing height is ``target_height``, and the height slider used.

        Height is linear in anny's height slider for fixed other sliders, so two evaluations give the
        slider, and a secant step absorbs what the local changes add.
        """
        ends = self.vertices(phenotype, local_changes, [0.0, 1.0])
        h0, h1 = (float(np.ptp(e[:, 2])) for e in ends)
        s = float(np.clip((target_height - h0) / (h1 - h0), 0.0, 1.0))
        v = self.vertices(phenotype, local_changes, [s])[0]
        h = float(np.ptp(v[:, 2]))
        if abs(h - target_height) > 0.005 and 0.0 < s < 1.0:
            s = float(np.clip(s + (target_height - h) / (h1 - h0), 0.0, 1.0))
            v = self.vertices(phenotype, local_changes, [s])[0]
        return v, round(s, 6)


# ---------------------------------------------------------------------------------------------------
# Writing files.

def obj_text(avatar: Avatar, material: str, mtl_name: str) -> str:
    """Wavefront OBJ with one texture coordinate per face corner (seams split, vertices shared)."""
    buf = io.StringIO()
    buf.write("# avatex synth: anny body (MakeHuman-derived CC0 assets), clothes painted by avatex\n")
    buf.write("# units: metres, +z up, facing -y (rest A-pose)\n")
    buf.write(f"mtllib {mtl_name}\n")
    np.savetxt(buf, avatar.vertices, fmt=f"v %.{VERTEX_DECIMALS}f %.{VERTEX_DECIMALS}f %.{VERTEX_DECIMALS}f")
    np.savetxt(buf, avatar.uv, fmt=f"vt %.{UV_DECIMALS}f %.{UV_DECIMALS}f")
    buf.write(f"usemtl {material}\n")
    idx = np.stack([avatar.faces + 1, avatar.face_uv + 1], axis=2).reshape(len(avatar.faces), 6)
    np.savetxt(buf, idx, fmt="f %d/%d %d/%d %d/%d")
    return buf.getvalue()


def mtl_text(material: str, texture_name: str) -> str:
    return (f"# avatex synth\nnewmtl {material}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\n"
            f"Ks 0.000 0.000 0.000\nd 1.0\nillum 1\nmap_Kd {texture_name}\n")


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_avatar(out_dir: Path, name: str, avatar: Avatar, meta: dict) -> dict[str, Path]:
    """Write ``name``.{png,mtl,obj,ply,json} atomically; the JSON comes last and marks completion."""
    from backend.meshio import save_mesh

    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("png", "mtl", "obj", "ply", "json")}
    write_bytes(paths["png"], png_bytes(avatar.texture))
    with atomic_path(paths["mtl"]) as tmp:
        tmp.write_text(mtl_text(name, paths["png"].name), encoding="ascii")
    with atomic_path(paths["obj"]) as tmp:
        tmp.write_text(obj_text(avatar, name, paths["mtl"].name), encoding="ascii")
    save_mesh(paths["ply"], avatar.dense_vertices.astype(np.float32), avatar.dense_faces, avatar.dense_colors)
    write_json(paths["json"], meta)
    return paths


def avatar_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of avatar ``index`` of a run with ``seed`` (independent of ``count``)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def check_options(count: int, out_dir: str | Path, *, start: int = 0, prefix: str = "avatar_",
                  texture_size: int = 1024, subdivisions: int = 1) -> Path:
    """Validate `synthesize`'s options (cheaply, before anny is built); returns the output folder."""
    if count < 1:
        raise InputError(f"--count must be at least 1 (got {count})")
    if start < 0:
        raise InputError(f"--start must be >= 0 (got {start})")
    if not 64 <= texture_size <= 8192:
        raise InputError(f"--texture-size must be between 64 and 8192 (got {texture_size})")
    if subdivisions not in (0, 1, 2):
        raise InputError(f"--subdivide must be 0, 1 or 2 (got {subdivisions})")
    if not prefix or any(c in "/\\\0" or c.isspace() for c in prefix) or prefix.startswith("."):
        raise InputError(f"--prefix must be a plain file-name prefix without spaces (got {prefix!r})")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    return out


def synthesize(count: int, out_dir: str | Path, seed: int = 0, *, prefix: str = "avatar_", start: int = 0,
               texture_size: int = 1024, subdivisions: int = 1, progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None) -> list[Path]:
    """Generate avatars ``start .. start+count-1`` into ``out_dir``; returns the OBJ paths.

    Avatar i depends only on (seed, i): re-running reproduces identical files, and runs with different
    ``start`` can be sharded. Shirt patterns cycle through SHIRT_PATTERNS from a seed-chosen offset, so any
    four consecutive avatars show all of them.
    """
    out = check_options(count, out_dir, start=start, prefix=prefix, texture_size=texture_size,
                        subdivisions=subdivisions)

    def report(stage: str, fraction: float, **info) -> None:
        if progress is not None:
            progress(stage, fraction, info)

    report("building anny model", 0.0)
    bodies = anny_bodies()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(count):
        if should_stop is not None and should_stop():
            raise CancelledError(f"synth stopped after {k} of {count} avatars")
        name = f"{prefix}{start + k:04d}"
        report("painting", k / count, avatar=name)
        avatar, meta = make_avatar(bodies, seed, start + k, texture_size=texture_size,
                                   subdivisions=subdivisions)
        write_avatar(out, name, avatar, {"format": FORMAT, "name": name, **meta})
        written.append(out / f"{name}.obj")
        report("painting", (k + 1) / count, avatar=name)
    return written


def make_avatar(bodies: AnnyBodies, seed: int, index: int, *, texture_size: int = 1024,
                subdivisions: int = 1) -> tuple[Avatar, dict]:
    """Avatar ``index`` of the set ``seed``, and its metadata (what the JSON records)."""
    rng = avatar_rng(seed, index)
    phenotype, local, target = random_identity(rng, bodies.local_change_labels)
    vertices, height_slider = bodies.body(phenotype, local, target)
    offset = int(np.random.default_rng(np.random.SeedSequence([int(seed), 2**31]))
                 .integers(len(SHIRT_PATTERNS)))
    outfit = random_outfit(rng, SHIRT_PATTERNS[(offset + index) % len(SHIRT_PATTERNS)],
                           skin_darkness=phenotype["african"] + 0.35 * phenotype["asian"])
    avatar = paint_avatar(vertices, bodies.faces, bodies.uv, bodies.face_uv, bodies.weights, outfit,
                          texture_size=texture_size, subdivisions=subdivisions)
    meta = {
        "seed": int(seed), "index": int(index),
        "height_m": round(avatar.height, 4), "target_height_m": target,
        "units": "metres", "up": "+z", "facing": "-y", "pose": "anny rest A-pose",
        "phenotype": {**phenotype, "height": height_slider},
        "local_changes": {k: v for k, v in local.items() if v != 0.0},
        "outfit": outfit.to_dict(), "palette": outfit.palette(),
        "patterns": {"shirt": outfit.shirt.pattern, "bottoms": outfit.bottoms.pattern},
        "sleeves": "long" if outfit.sleeve >= 1.0 else "short",
        "legs": "trousers" if outfit.leg >= 1.0 else "shorts",
        "mesh": {"obj_vertices": len(avatar.vertices), "obj_faces": len(avatar.faces),
                 "texture_size": texture_size, "ply_vertices": len(avatar.dense_vertices),
                 "ply_faces": len(avatar.dense_faces), "subdivisions": subdivisions},
        "generator": {"avatex_synth": FORMAT, "anny": bodies.version,
                      "anny_model": "Anny(local_changes='default', phenotypes='all'), default topology"},
        "license": "body: anny (code Apache-2.0, MakeHuman-derived assets CC0-1.0); painting: avatex",
    }
    return avatar, meta


_BODIES: list[AnnyBodies] = []


def anny_bodies() -> AnnyBodies:
    """The process-wide anny model (built on first use; a server keeps it between jobs)."""
    if not _BODIES:
        _BODIES.append(AnnyBodies())
    return _BODIES[0]


def read_meta(path: str | Path) -> dict:
    """The JSON written beside an avatar (``path`` may name any of its files)."""
    p = Path(path).with_suffix(".json")
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read avatar metadata {p}: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise InputError(f"{p} is not an avatex synth avatar (format {meta.get('format')!r})")
    return meta

