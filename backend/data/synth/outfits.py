"""What the avatars wear, as plain data: body parts, paint regions, palettes, the logo letters and
random outfits (JSON round trip, so a painted avatar can be reproduced)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from backend.errors import InputError

# Coarse body parts, each the set of anny bones (by label prefix and side) whose skinning weights it sums.
PARTS: tuple[str, ...] = (
    "torso", "neck", "head", "eye_l", "eye_r",
    "upperarm_l", "upperarm_r", "forearm_l", "forearm_r", "hand_l", "hand_r",
    "thigh_l", "thigh_r", "shin_l", "shin_r", "foot_l", "foot_r",
)
PART_BONES: dict[str, tuple[tuple[str, ...], str]] = {
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
PART_INDEX = {name: i for i, name in enumerate(PARTS)}

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
FONT: dict[str, tuple[str, ...]] = {
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


def delta_e(a: RGB, b: RGB) -> float:
    """CIE76 colour difference of two 8-bit sRGB colours (palette choices, not a metric)."""
    from backend.metrics.color import srgb_to_lab  # here: backend.metrics costs a second to import

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
        letters = sorted(FONT)
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
