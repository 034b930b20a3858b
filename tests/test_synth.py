"""Sample avatars: painting, baking and export (fast, on the committed fixtures), plus one slow end-to-end
run of ``avatex synth`` that builds anny for real.

Over 500 lines on purpose: one file per area (the cases share the cached fixture avatar)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend import triangles
from backend.data import synth
from backend.data.synth import (
    BOTTOMS,
    EYES,
    HAIR,
    PARTS,
    REGIONS,
    SHIRT,
    SHIRT_PATTERNS,
    SHOES,
    SKIN,
    Garment,
    Outfit,
    bake_texture,
    delta_e,
    interpolate_weights,
    landmarks,
    paint,
    paint_avatar,
    part_weights,
    random_outfit,
    rasterize_uv,
    subdivide_midpoint,
    vertex_normals,
)
from backend.errors import InputError
from backend.meshio import load_mesh, sample_texture
from tests.conftest import FIXTURES, ROOT

AVATARS = FIXTURES / "avatars"
NAMES = [f"avatar_{i:04d}" for i in range(4)]


# ---------------------------------------------------------------------------------------------------
# Helpers: read back exactly what synth wrote.

def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, faces, uv, face_uv) of a synth OBJ, numbers parsed exactly as written."""
    v, vt, f = [], [], []
    for line in path.read_text(encoding="ascii").splitlines():
        if line.startswith("v "):
            v.append(line[2:])
        elif line.startswith("vt "):
            vt.append(line[3:])
        elif line.startswith("f "):
            f.append(line[2:].replace("/", " "))
    faces = np.array([row.split() for row in f], dtype=np.int64) - 1
    return (np.array([r.split() for r in v], dtype=np.float64), faces[:, 0::2],
            np.array([r.split() for r in vt], dtype=np.float64), faces[:, 1::2])


@cache
def part_weights_fixture() -> np.ndarray:
    data = np.load(AVATARS / "anny_part_weights.npz")
    assert tuple(data["parts"]) == PARTS
    return data["weights"]


@cache
def fixture(name: str) -> dict:
    meta = json.loads((AVATARS / f"{name}.json").read_text())
    v, f, uv, fuv = read_obj(AVATARS / f"{name}.obj")
    w = part_weights_fixture()
    return {"meta": meta, "v": v, "f": f, "uv": uv, "fuv": fuv, "w": w, "marks": landmarks(v, w),
            "outfit": Outfit.from_dict(meta["outfit"]),
            "texture": np.asarray(Image.open(AVATARS / f"{name}.png").convert("RGB"))}


def palette_of(outfit: Outfit) -> np.ndarray:
    cols = [c for group in outfit.palette().values() for c in group]
    return np.unique(np.array(cols, dtype=np.uint8), axis=0)


def to_u8(colors: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(colors * 255), 0, 255).astype(np.uint8)


def flat_points(marks, z: np.ndarray, x: np.ndarray | float = 0.0, y: float | None = None):
    """Points on a vertical plane in front of the chest, facing -y, all labelled torso."""
    z = np.asarray(z, dtype=np.float64)
    pts = np.zeros((len(z), 3))
    pts[:, 0] = x
    pts[:, 1] = marks.shoulder[:, 1].mean() - 0.1 if y is None else y
    pts[:, 2] = z
    normals = np.tile([0.0, -1.0, 0.0], (len(z), 1))
    weights = np.zeros((len(z), len(PARTS)), dtype=np.float32)
    weights[:, PARTS.index("torso")] = 1.0
    return pts, normals, weights


def make_outfit(shirt: Garment, **changes) -> Outfit:
    base = Outfit(skin=(226, 173, 139), hair=(28, 24, 22), iris=(92, 56, 32), shoes=(24, 24, 26),
                  shirt=shirt, bottoms=Garment("solid", ((28, 42, 94),)), sleeve=0.5, leg=2.0, waist=0.25,
                  hairline_front=0.8, hairline_back=0.1, neckline=0.08, shoe_top=0.02)
    return Outfit(**{**base.__dict__, **changes})


def waist_z(marks, outfit):
    hip = marks.hip[:, 2].mean()
    return hip + outfit.waist * (marks.shoulder[:, 2].mean() - hip)


# ---------------------------------------------------------------------------------------------------
# Pure pieces.

def test_part_weights_sum_bones_per_part():
    labels = ["root", "spine01", "upperarm01.L", "lowerarm02.R", "finger2-3.L", "toe1-1.R", "eye.L", "head"]
    idx = np.array([[1, 2], [3, 4], [5, 7], [6, 0]])
    w = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0], [0.9, 0.1]])
    out = part_weights(labels, idx, w)
    P = PARTS.index
    assert out.shape == (4, len(PARTS)) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), 1.0)
    np.testing.assert_allclose(out[0, [P("torso"), P("upperarm_l")]], [0.25, 0.75])
    np.testing.assert_allclose(out[1, [P("forearm_r"), P("hand_l")]], [0.5, 0.5])
    assert out[2, P("foot_r")] == 1.0
    np.testing.assert_allclose(out[3, [P("eye_l"), P("torso")]], [0.9, 0.1])


def test_committed_part_weights_cover_every_part():
    w = part_weights_fixture()
    assert w.shape == (13718, len(PARTS))
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
    dominant = np.bincount(w.argmax(1), minlength=len(PARTS))
    assert (dominant > 0).all(), dict(zip(PARTS, dominant, strict=True))
    # Mirror parts hold the same number of vertices (anny's template is symmetric).
    for a in ("eye", "upperarm", "forearm", "hand", "thigh", "shin", "foot"):
        assert dominant[PARTS.index(f"{a}_l")] == dominant[PARTS.index(f"{a}_r")]


def test_subdivide_midpoint_keeps_surface_and_interpolates():
    box = trimesh.creation.icosphere(subdivisions=1)
    v, f = np.asarray(box.vertices), np.asarray(box.faces)
    attr = np.arange(len(v), dtype=np.float32)[:, None] * np.array([[1.0, 2.0]], dtype=np.float32)
    nv, nf, (na,) = subdivide_midpoint(v, f, attr)
    edges = len(f) * 3 // 2
    assert nv.shape == (len(v) + edges, 3) and nf.shape == (4 * len(f), 3)
    np.testing.assert_array_equal(nv[: len(v)], v)
    sub = trimesh.Trimesh(nv, nf, process=False)
    assert sub.is_watertight and sub.is_winding_consistent
    assert sub.area == pytest.approx(box.area, rel=1e-9) and sub.volume == pytest.approx(box.volume, rel=1e-9)
    # Every midpoint's attribute is the mean of its edge's ends, like its position.
    for a, b in f[:5][:, [0, 1]]:
        k = np.flatnonzero(np.all(np.isclose(nv, 0.5 * (v[a] + v[b])), axis=1))
        assert len(k) == 1
        np.testing.assert_allclose(na[k[0]], 0.5 * (attr[a] + attr[b]))


def test_rasterize_uv_covers_each_texel_centre_once():
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    face_uv = np.array([[0, 1, 2], [0, 2, 3]])
    size = 16
    texel, face, bary = rasterize_uv(uv, face_uv, size)
    assert set(texel.tolist()) == set(range(size * size))
    # Barycentric weights reproduce each texel centre's UV.
    centre = np.einsum("kc,kcj->kj", bary, uv[face_uv[face]])
    row, col = texel // size, texel % size
    np.testing.assert_allclose(centre[:, 0], (col + 0.5) / size, atol=1e-9)
    np.testing.assert_allclose(centre[:, 1], 1 - (row + 0.5) / size, atol=1e-9)
    # A triangle over the lower-left half only covers texels below the diagonal.
    texel, _, _ = rasterize_uv(uv, face_uv[:1], size)
    row, col = texel // size, texel % size
    assert np.all((col + 0.5) >= (size - row - 0.5) - 1e-9) and len(texel) == size * (size + 1) // 2


def test_outfit_json_round_trip_and_determinism():
    a = random_outfit(np.random.default_rng(5), "logo")
    b = random_outfit(np.random.default_rng(5), "logo")
    assert a == b
    assert Outfit.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert random_outfit(np.random.default_rng(6), "logo") != a
    with pytest.raises(InputError, match="unknown shirt pattern"):
        random_outfit(np.random.default_rng(0), "polka")


def test_random_outfits_keep_their_colour_edges_visible():
    for seed in range(150):
        o = random_outfit(np.random.default_rng(seed), SHIRT_PATTERNS[seed % 4],
                          skin_darkness=(seed % 10) / 9)
        sc = o.shirt.colors
        assert delta_e(sc[0], o.skin) >= synth.GARMENT_CONTRAST
        if o.shirt.pattern in ("stripes", "checks"):
            assert delta_e(sc[0], sc[1]) >= synth.PATTERN_CONTRAST and o.shirt.scale > 0.03
        if o.shirt.pattern == "logo":
            assert delta_e(sc[0], sc[1]) >= synth.PATTERN_CONTRAST
            assert delta_e(sc[1], sc[2]) >= synth.PATTERN_CONTRAST
        edge = sc if o.shirt.pattern != "logo" else sc[:1]
        for c in o.bottoms.colors:
            assert min(delta_e(c, e) for e in (*edge, o.skin)) >= synth.GARMENT_CONTRAST
        assert min(delta_e(o.shoes, e) for e in (*o.bottoms.colors, o.skin)) >= synth.GARMENT_CONTRAST
        assert 0.0 < o.sleeve < 2.0 and 0.0 < o.leg <= 2.0


# ---------------------------------------------------------------------------------------------------
# Each pattern gives its colours, with sharp edges where they should be.

def test_solid_shirt_is_one_colour():
    marks = fixture(NAMES[0])["marks"]
    outfit = make_outfit(Garment("solid", ((196, 30, 42),)))
    z = np.linspace(waist_z(marks, outfit) + 0.01, marks.shoulder[:, 2].mean() - 0.02, 200)
    colors, labels = paint(*flat_points(marks, z), marks, outfit)
    assert (labels == SHIRT).all()
    np.testing.assert_array_equal(to_u8(colors), np.tile([196, 30, 42], (200, 1)))


def test_stripes_alternate_along_the_height():
    marks = fixture(NAMES[0])["marks"]
    outfit = make_outfit(Garment("stripes", ((236, 236, 230), (28, 42, 94)), scale=0.06, phase=0.01))
    w = waist_z(marks, outfit)
    z = np.linspace(w + 0.001, w + 0.3, 3000)
    colors, labels = paint(*flat_points(marks, z), marks, outfit)
    c = to_u8(colors)
    assert (labels == SHIRT).all()
    assert {tuple(x) for x in c} == {(236, 236, 230), (28, 42, 94)}
    expected = np.floor((z - w - 0.01) / 0.03).astype(int) % 2
    np.testing.assert_array_equal((c[:, 0] == 28).astype(int), expected)
    # Edges every half period, nothing in between: a sharp, known edge.
    changes = z[1:][np.any(c[1:] != c[:-1], axis=1)]
    np.testing.assert_allclose(np.diff(changes), 0.03, atol=2 * (z[1] - z[0]))


def test_checks_flip_across_every_cell_face():
    marks = fixture(NAMES[0])["marks"]
    outfit = make_outfit(Garment("checks", ((246, 206, 40), (112, 50, 142)), scale=0.05, phase=0.0))
    w = waist_z(marks, outfit)
    rng = np.random.default_rng(0)
    centres = np.floor(rng.uniform(-3, 3, (300, 3))) + 0.5           # cell centres in cell units
    pts = centres * 0.05 + np.array([0.0, 0.0, w + 0.2])
    _, normals, weights = flat_points(marks, pts[:, 2])
    colors, _ = paint(pts, normals, weights, marks, outfit)
    step = np.zeros((300, 3))
    step[np.arange(300), rng.integers(0, 3, 300)] = 0.05
    colors2, _ = paint(pts + step, normals, weights, marks, outfit)
    a, b = to_u8(colors), to_u8(colors2)
    assert {tuple(x) for x in a} == {(246, 206, 40), (112, 50, 142)}
    assert np.all(np.any(a != b, axis=1))                                # neighbours always differ
    colors3, _ = paint(pts + 2 * step, normals, weights, marks, outfit)
    np.testing.assert_array_equal(to_u8(colors3), a)                      # two cells on: same again


@pytest.mark.parametrize("emblem", ["HOT", ""])
def test_logo_patch_sits_on_the_chest_front(emblem):
    marks = fixture(NAMES[0])["marks"]
    base, patch, ink = (28, 28, 32), (246, 206, 40), (196, 30, 42)
    g = Garment("logo", (base, patch, ink), scale=0.15, emblem=emblem)
    outfit = make_outfit(g)
    w = waist_z(marks, outfit)
    s = marks.shoulder.mean(0)
    cz = w + 0.62 * (s[2] - w)
    height = 0.62 * 0.15
    # Sample the patch on a fine grid seen from the front.
    xs = s[0] + np.linspace(-0.1, 0.1, 401)
    zs = cz + np.linspace(-0.08, 0.08, 321)
    X, Z = np.meshgrid(xs, zs)
    colors, _ = paint(*flat_points(marks, Z.ravel(), X.ravel()), marks, outfit)
    img = to_u8(colors).reshape(len(zs), len(xs), 3)
    is_patch = np.all(img == patch, axis=2) | np.all(img == ink, axis=2)
    cols = np.flatnonzero(is_patch.any(0))
    rows = np.flatnonzero(is_patch.any(1))
    assert xs[cols[-1]] - xs[cols[0]] == pytest.approx(0.15, abs=0.002)
    assert zs[rows[-1]] - zs[rows[0]] == pytest.approx(height, abs=0.002)
    n_ink = np.all(img == ink, axis=2).sum()
    assert 0.05 * is_patch.sum() < n_ink < 0.6 * is_patch.sum()
    if emblem:
        # The letters read back: sampling each glyph cell centre reproduces the 5x7 font bitmaps.
        ncols = 6 * len(emblem) - 1
        cell = min(0.84 / ncols, 0.7 / 7 * 0.62)
        gx = (np.arange(ncols) + 0.5 - ncols / 2) * cell * 0.15 + s[0]
        gz = cz - (np.arange(7) + 0.5 - 3.5) * cell * 0.15
        GX, GZ = np.meshgrid(gx, gz)
        c, _ = paint(*flat_points(marks, GZ.ravel(), GX.ravel()), marks, outfit)
        got = np.all(to_u8(c) == ink, axis=1).reshape(7, ncols)
        want = np.zeros((7, ncols), dtype=bool)
        for k, ch in enumerate(emblem):
            want[:, 6 * k: 6 * k + 5] = [[p == "#" for p in row] for row in synth.FONT[ch]]
        np.testing.assert_array_equal(got, want)
    # Seen from the back (normals +y, behind the body centre) there is no patch.
    pts, normals, weights = flat_points(marks, Z.ravel(), X.ravel(), y=marks.back_y)
    colors, _ = paint(pts, -normals, weights, marks, outfit)
    assert np.all(to_u8(colors) == base)


# ---------------------------------------------------------------------------------------------------
# Regions on a real body.

def test_regions_on_a_real_body():
    fx = fixture(NAMES[2])
    v, f, w, marks, outfit = fx["v"], fx["f"], fx["w"], fx["marks"], fx["outfit"]
    colors, labels = paint(v, vertex_normals(v, f), w, marks, outfit)
    part = w.argmax(1)
    P = PARTS.index
    face_area = triangles.areas(v, f)
    area = np.bincount(f.ravel(), weights=np.repeat(face_area / 3, 3), minlength=len(v))

    def share(region, *parts):
        """Area share of the parts painted as ``region`` (anny's face is far denser than its scalp)."""
        sel = np.isin(part, [P(p) for p in parts])
        return np.sum(area[sel] * (labels[sel] == region)) / np.sum(area[sel])

    assert share(SKIN, "hand_l", "hand_r") == 1.0
    assert share(EYES, "eye_l", "eye_r") == 1.0
    assert share(SHOES, "foot_l", "foot_r") > 0.9
    assert 0.2 < share(HAIR, "head") < 0.6
    assert share(SHIRT, "torso") > 0.4 and share(BOTTOMS, "torso") > 0.1
    assert outfit.sleeve < 1.0 and share(SKIN, "forearm_l", "forearm_r") == 1.0  # short sleeves
    assert outfit.leg == 2.0                                                      # trousers...
    assert share(BOTTOMS, "shin_l", "shin_r") + share(SHOES, "shin_l", "shin_r") == pytest.approx(1.0)
    # Left and right are painted alike (anny's rest pose is symmetric in x).
    left, right = v[:, 0] > 0.02, v[:, 0] < -0.02
    assert abs(np.mean(labels[left] == SHIRT) - np.mean(labels[right] == SHIRT)) < 0.02
    # The hair sits on top, the shoes at the bottom.
    assert v[labels == HAIR, 2].min() > marks.skull_base[2]
    assert v[labels == SHOES, 2].max() < marks.knee[:, 2].min()
    # Every colour is one of the outfit's.
    pal = {tuple(c) for c in palette_of(outfit)}
    assert {tuple(c) for c in to_u8(colors)} <= pal
    for r, name in enumerate(REGIONS):
        assert (labels == r).any(), name


def test_landmarks_are_anatomical():
    marks = fixture(NAMES[1])["marks"]
    for s in (0, 1):
        assert marks.shoulder[s, 2] > marks.elbow[s, 2] > marks.wrist[s, 2]
        assert marks.hip[s, 2] > marks.knee[s, 2] > marks.ankle[s, 2]
    # anny's .L side is +x; the skeleton is mirror-symmetric.
    assert marks.shoulder[0, 0] > 0 > marks.shoulder[1, 0]
    np.testing.assert_allclose(marks.knee[0] * [-1, 1, 1], marks.knee[1], atol=1e-6)
    assert marks.face_y < marks.eye[:, 1].min() < marks.back_y  # faces -y
    assert marks.crown_z > marks.eye[:, 2].max() > marks.skull_base[2] > marks.neck[2]


# ---------------------------------------------------------------------------------------------------
# The committed fixtures.

@pytest.mark.parametrize("name", NAMES)
def test_fixture_texture_is_the_painting_baked(name):
    """Repainting the written OBJ with the committed part weights gives the committed PNG, bit for bit."""
    fx = fixture(name)
    size = fx["meta"]["mesh"]["texture_size"]
    image = bake_texture(fx["v"], fx["f"], fx["uv"], fx["fuv"], fx["w"], fx["marks"], fx["outfit"], size=size)
    np.testing.assert_array_equal(image, fx["texture"])


@pytest.mark.parametrize("name", NAMES)
def test_fixture_texture_has_only_outfit_colours(name):
    """Sharp edges: no texel holds a blend; every texel is an outfit colour or the background."""
    fx = fixture(name)
    used = {tuple(c) for c in np.unique(fx["texture"].reshape(-1, 3), axis=0)}
    allowed = {tuple(c) for c in palette_of(fx["outfit"])} | {(128, 128, 128)}
    assert used <= allowed
    painted = used - {(128, 128, 128)}
    assert len(painted) >= 7  # skin, hair, shoes, eyes (3), shirt, bottoms ...


@pytest.mark.parametrize("name", NAMES)
def test_fixture_texture_matches_vertex_colours(name):
    fx = fixture(name)
    v, f, uv, fuv = fx["v"], fx["f"], fx["uv"], fx["fuv"]
    want, _ = paint(v, vertex_normals(v, f), fx["w"], fx["marks"], fx["outfit"])
    # Each face corner's UV, looked up bilinearly, gives the colour painted at that vertex.
    got = sample_texture(fx["texture"], uv[fuv.ravel()])
    diff = np.abs(got - want[f.ravel()]).max(1)
    assert np.mean(diff < 1.5 / 255) > 0.97    # the rest sit within a texel of a pattern edge
    assert np.mean(diff < 0.5) > 0.995
    # The PLY's vertex colours are the same painting (its first vertices are the OBJ's).
    ply = load_mesh(AVATARS / f"{name}.ply")
    np.testing.assert_array_equal(to_u8(ply.vertex_colors[: len(v)]), to_u8(want))


@pytest.mark.parametrize("name", NAMES)
def test_fixtures_load_watertight_with_colours_and_plausible_height(name):
    meta = json.loads((AVATARS / f"{name}.json").read_text())
    obj = load_mesh(AVATARS / f"{name}.obj")
    ply = load_mesh(AVATARS / f"{name}.ply")
    assert obj.has_texture and obj.textures[0].shape == (1024, 1024, 3)
    assert ply.vertex_colors is not None and ply.vertex_colors.std() > 0.1
    for m in (obj, ply):
        t = trimesh.Trimesh(m.vertices, m.faces, process=False)
        t.merge_vertices()  # UV seams may be split on load; the surface itself is closed
        assert t.is_watertight and t.is_winding_consistent and t.volume > 0.03
        height = np.ptp(m.vertices[:, 2])
        assert 1.5 < height < 2.0 and height == pytest.approx(meta["height_m"], abs=2e-4)
    assert len(obj.faces) == 27420 and len(ply.vertices) == meta["mesh"]["ply_vertices"]
    # z up, facing -y: the feet are at the bottom, the nose is the front-most point of the head.
    top = obj.vertices[:, 2] > obj.vertices[:, 2].max() - 0.25
    assert obj.vertices[top, 1].min() < obj.vertices[top, 1].max() - 0.15


def test_fixtures_cover_every_pattern():
    metas = [json.loads((AVATARS / f"{n}.json").read_text()) for n in NAMES]
    shirts = {m["patterns"]["shirt"] for m in metas}
    assert shirts == set(SHIRT_PATTERNS)
    assert {m["patterns"]["bottoms"] for m in metas} == {"solid", "checks"}
    assert {m["sleeves"] for m in metas} == {"short", "long"} and {m["legs"] for m in metas} == {"shorts",
                                                                                                 "trousers"}
    assert len({m["index"] for m in metas}) == 4 and all(m["format"] == synth.FORMAT for m in metas)
    assert (AVATARS / "LICENSE.md").is_file()
    total = sum(p.stat().st_size for p in AVATARS.iterdir())
    assert total < 10_000_000


def unexplained_mismatch(fx: dict, mesh) -> float:
    """Share of surface samples whose loaded colour differs from the painting away from pattern edges.

    Within a texel or two of an edge, bilinear lookups blend the two sides; that is expected. Anywhere
    else the loaded colour must be the painted one.
    """
    from backend.meshio import sample_surface

    pts, face, bary = sample_surface(mesh, 8000, np.random.default_rng(0))
    got = mesh.colors_at(face, bary)
    want = paint_at_points(fx, pts)
    bad = np.abs(got - want).max(1) >= 0.1
    rng = np.random.default_rng(1)
    near_edge = np.zeros(len(pts), dtype=bool)
    for _ in range(6):
        jitter = paint_at_points(fx, pts[bad] + rng.normal(0, 0.004, (bad.sum(), 3)))
        near_edge[bad] |= np.abs(jitter - want[bad]).max(1) > 0.1
    return float(np.mean(bad & ~near_edge))


def paint_at_points(fx, pts):
    """Paint points near the fixture body at their closest surface point on the written mesh."""
    t = trimesh.Trimesh(fx["v"], fx["f"], process=False)
    closest, _, tri = trimesh.proximity.closest_point(t, pts)
    bary = trimesh.triangles.points_to_barycentric(t.triangles[tri], closest)
    corners = fx["f"][tri]
    normals = vertex_normals(fx["v"], fx["f"])
    weights = interpolate_weights(fx["w"], corners, bary)
    colors, _ = paint(closest, np.einsum("kc,kcj->kj", bary, normals[corners]), weights, fx["marks"],
                      fx["outfit"])
    return colors


@pytest.mark.slow
def test_obj_shows_the_painting_when_seams_are_split():
    """The written OBJ is right: read with one vertex per v/vt pair (trimesh's default) it shows the
    painting everywhere."""
    from backend.meshio import _from_trimesh

    fx = fixture(NAMES[0])
    obj = _from_trimesh(trimesh.load(AVATARS / f"{NAMES[0]}.obj", process=False))
    assert len(obj.vertices) == 14898  # split at the UV seams
    assert unexplained_mismatch(fx, obj) < 0.002


@pytest.mark.slow
def test_obj_loaded_by_meshio_shows_the_painting_everywhere():
    fx = fixture(NAMES[0])
    assert unexplained_mismatch(fx, load_mesh(AVATARS / f"{NAMES[0]}.obj")) < 0.002


# ---------------------------------------------------------------------------------------------------
# Options and the CLI (no anny needed).

def test_paint_avatar_is_deterministic_and_subdivides():
    fx = fixture(NAMES[3])
    args = (fx["v"], fx["f"], fx["uv"], fx["fuv"], fx["w"], fx["outfit"])
    a = paint_avatar(*args, texture_size=256, subdivisions=1)
    b = paint_avatar(*args, texture_size=256, subdivisions=1)
    np.testing.assert_array_equal(a.texture, b.texture)
    np.testing.assert_array_equal(a.dense_colors, b.dense_colors)
    assert len(a.dense_vertices) == 13718 + 27420 * 3 // 2 == 54848
    assert trimesh.Trimesh(a.dense_vertices, a.dense_faces, process=False).is_watertight
    assert a.height == pytest.approx(fx["meta"]["height_m"], abs=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--count", "0"], "--count must be at least 1"),
    (["--count", "1", "--texture-size", "10"], "--texture-size"),
    (["--count", "1", "--prefix", "a/b"], "--prefix"),
    (["--count", "1", "--start", "-1"], "--start"),
])
def test_cli_rejects_bad_options(tmp_path, capsys, argv, message):
    from backend.cli import main

    assert main(["synth", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_out_must_be_a_folder(tmp_path, capsys):
    from backend.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["synth", "--count", "1", "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_missing_anny_is_a_clear_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "anny", None)  # what Python does when the package is absent
    with pytest.raises(InputError, match=r"pip install --no-deps anny==0\.6\.2 roma"):
        synth.AnnyBodies()


# ---------------------------------------------------------------------------------------------------
# End to end, with anny for real.

@pytest.mark.slow
def test_cli_synth_end_to_end_is_deterministic(tmp_path):
    """Builds anny (on a fresh machine this writes its ~1 GB cache first), writes one avatar twice."""
    env = dict(os.environ)
    env.setdefault("ANNY_CACHE_DIR", str(ROOT / ".cache" / "anny"))
    for run in ("a", "b"):
        out = subprocess.run([sys.executable, "-m", "backend", "synth", "--count", "1", "--seed", "3",
                              "--start", "2", "--out", str(tmp_path / run)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [f"avatar_0002.{e}" for e in ("json", "mtl", "obj", "ply", "png")]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    stem = tmp_path / "a" / "avatar_0002"
    meta = synth.read_meta(stem.with_suffix(".obj"))
    assert meta["seed"] == 3 and meta["index"] == 2 and 1.5 < meta["height_m"] < 2.0
    assert meta["patterns"]["shirt"] in SHIRT_PATTERNS
    ply = load_mesh(stem.with_suffix(".ply"))
    assert len(ply.vertices) == 54848
    assert trimesh.Trimesh(ply.vertices, ply.faces, process=False).is_watertight
    obj = load_mesh(stem.with_suffix(".obj"))
    assert obj.has_texture and obj.textures[0].shape == (1024, 1024, 3)
    # anny's skinning weights are what the committed fixture weights say: repainting matches exactly.
    v, f, uv, fuv = read_obj(stem.with_suffix(".obj"))
    w = part_weights_fixture()
    image = bake_texture(v, f, uv, fuv, w, landmarks(v, w), Outfit.from_dict(meta["outfit"]), size=1024)
    np.testing.assert_array_equal(image, np.asarray(Image.open(stem.with_suffix(".png")).convert("RGB")))
