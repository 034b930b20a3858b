"""Game-style test assets, generated from the committed fixture avatar (tests/fixtures/avatars, CC0/MIT as
its LICENSE.md says): each carries one fault real characters bring, and ``game`` carries them all.

Nothing here is committed as a file: every asset is written into a test's temporary folder, so the
faults are exactly the ones described and their size is known.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from backend.triangles import vertex_normals
from tests.conftest import FIXTURES

AVATAR = FIXTURES / "avatars" / "avatar_0000"


def read_fixture() -> dict[str, np.ndarray]:
    """The fixture OBJ as arrays: v (V, 3), vt (T, 2), f (F, 3) and ft (F, 3), 0-based."""
    v, vt, f, ft = [], [], [], []
    for line in AVATAR.with_suffix(".obj").read_text().splitlines():
        if line.startswith("v "):
            v.append(line[2:].split())
        elif line.startswith("vt "):
            vt.append(line[3:].split())
        elif line.startswith("f "):
            corners = [c.split("/") for c in line[2:].split()]
            f.append([c[0] for c in corners])
            ft.append([c[1] for c in corners])
    return {"v": np.asarray(v, float), "vt": np.asarray(vt, float), "f": np.asarray(f, int) - 1,
            "ft": np.asarray(ft, int) - 1}


def write_obj(path: Path, v: np.ndarray, vt: np.ndarray, groups: list[tuple[str, np.ndarray, np.ndarray]],
              vn: np.ndarray | None = None, fn: np.ndarray | None = None,
              materials: dict[str, str] | None = None) -> Path:
    """OBJ with ``groups`` = [(material, faces (F, 3), uv faces (F, 3))]; normals per corner via ``fn``
    (indices into ``vn``, in the order of the groups' faces concatenated)."""
    materials = materials or {name: AVATAR.with_suffix(".png").name for name, _, _ in groups}
    mtl = path.with_suffix(".mtl")
    mtl.write_text("".join(f"newmtl {name}\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {tex}\n\n"
                           for name, tex in materials.items()))
    lines = [f"mtllib {mtl.name}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in vt]
    if vn is not None:
        lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vn]
    offset = 0
    for name, faces, uvs in groups:
        lines.append(f"usemtl {name}")
        for i, (face, uv) in enumerate(zip(faces + 1, uvs + 1, strict=True)):
            if fn is None:
                lines.append("f " + " ".join(f"{a}/{b}" for a, b in zip(face, uv, strict=True)))
            else:
                nn = fn[offset + i] + 1
                lines.append("f " + " ".join(f"{a}/{b}/{c}" for a, b, c in zip(face, uv, nn, strict=True)))
        offset += len(faces)
    path.write_text("\n".join(lines) + "\n")
    for tex in set(materials.values()):
        if not (path.parent / tex).exists():
            shutil.copyfile(AVATAR.with_suffix(".png"), path.parent / tex)
    return path


def _jpeg_textures(folder: Path, count: int) -> list[str]:
    """The fixture texture as ``count`` JPEGs, each tinted differently (so the materials are told apart)."""
    from PIL import Image

    with Image.open(AVATAR.with_suffix(".png")) as im:
        base = np.asarray(im.convert("RGB"), dtype=np.float64)
    names = []
    tints = [(1.0, 1.0, 1.0), (1.0, 0.85, 0.7), (0.75, 0.9, 1.0)]
    for i in range(count):
        name = f"tex_{i}.jpg"
        img = np.clip(base * np.asarray(tints[i % len(tints)]), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / name, quality=92)
        names.append(name)
    return names


def _height(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Face centre height as a fraction of the avatar's (z-up fixture): 0 at the feet, 1 at the top."""
    z = v[f].mean(axis=1)[:, 2]
    return (z - v[:, 2].min()) / np.ptp(v[:, 2])


def _thirds(v: np.ndarray, f: np.ndarray) -> list[np.ndarray]:
    h = _height(v, f)
    return [h < 0.35, (h >= 0.35) & (h < 0.7), h >= 0.7]


def make(kind: str, folder: Path) -> Path:
    """Write asset ``kind`` into ``folder`` (created) and return the OBJ path."""
    folder.mkdir(parents=True, exist_ok=True)
    a = read_fixture()
    v, vt, f, ft = a["v"], a["vt"], a["f"], a["ft"]
    path = folder / f"{kind}.obj"
    if kind == "clean":
        return write_obj(path, v, vt, [("skin", f, ft)])
    if kind == "doubled":  # every face again, reversed, on its own copy of the vertices
        back = f[:, ::-1] + len(v)
        return write_obj(path, np.concatenate([v, v]), vt, [("skin", np.concatenate([f, back]),
                                                              np.concatenate([ft, ft[:, ::-1]]))])
    if kind == "flipped":  # patches (upper body, left side) wound the wrong way
        patch = (v[f].mean(axis=1)[:, 0] > 0.05) & (_height(v, f) > 0.6)
        g = f.copy()
        gt = ft.copy()
        g[patch], gt[patch] = g[patch][:, ::-1], gt[patch][:, ::-1]
        return write_obj(path, v, vt, [("skin", g, gt)])
    if kind == "normals":  # per-corner file normals, every other face's pointing inward
        n = vertex_normals(v, f)
        vn = np.concatenate([n, -n])
        fn = f.copy()
        fn[1::2] += len(v)
        return write_obj(path, v, vt, [("skin", f, ft)], vn=vn, fn=fn)
    if kind == "centimetres":
        return write_obj(path, v * 100.0, vt, [("skin", f, ft)])
    if kind == "y_up":  # z-up metres -> y-up (x, z, -y)
        return write_obj(path, np.c_[v[:, 0], v[:, 2], -v[:, 1]], vt, [("skin", f, ft)])
    if kind == "multi_material":
        names = _jpeg_textures(folder, 3)
        parts = _thirds(v, f)
        groups = [(f"mat_{i}", f[sel], ft[sel]) for i, sel in enumerate(parts)]
        return write_obj(path, v, vt, groups, materials={f"mat_{i}": names[i] for i in range(3)})
    if kind == "huge_triangle":  # one triangle two orders of magnitude larger than the rest, behind the back
        lo, hi = v.min(axis=0), v.max(axis=0)
        y = hi[1] + 0.05
        big = np.array([[lo[0], y, lo[2] + 0.3], [hi[0], y, lo[2] + 0.3], [0.0, y, hi[2] - 0.2]])
        v2 = np.concatenate([v, big])
        tri = np.array([[len(v), len(v) + 2, len(v) + 1]])  # facing +y, away from the body
        return write_obj(path, v2, vt, [("skin", np.concatenate([f, tri]), np.concatenate([ft, ft[:1]]))])
    if kind == "game":  # all of it: cm, y-up, 3 JPEG materials, doubled, per-corner normals
        n = vertex_normals(v, f)
        yup = np.c_[v[:, 0], v[:, 2], -v[:, 1]] * 100.0
        nyup = np.c_[n[:, 0], n[:, 2], -n[:, 1]]
        names = _jpeg_textures(folder, 3)
        parts = _thirds(v, f)
        vv = np.concatenate([yup, yup])
        vn = np.concatenate([nyup, -nyup])
        groups, fns = [], []
        for i, sel in enumerate(parts):
            front, back = f[sel], f[sel][:, ::-1] + len(v)
            groups.append((f"mat_{i}", np.concatenate([front, back]),
                           np.concatenate([ft[sel], ft[sel][:, ::-1]])))
            fns.append(np.concatenate([front, back]))  # the back copy's normals point the other way
        return write_obj(path, vv, vt, groups, vn=vn, fn=np.concatenate(fns),
                         materials={f"mat_{i}": names[i] for i in range(3)})
    raise ValueError(f"unknown asset kind {kind!r}")


KINDS = ("doubled", "flipped", "normals", "centimetres", "y_up", "multi_material", "huge_triangle", "game")


def nan_obj(folder: Path) -> Path:
    """An OBJ whose every coordinate is NaN: unrepairable."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "all_nan.obj"
    path.write_text("v nan nan nan\nv nan nan nan\nv nan nan nan\nv nan nan nan\nf 1 2 3\nf 1 3 4\n")
    return path
