"""Writing avatars (OBJ + MTL + PNG, PLY, JSON) and :func:`synthesize`, the entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from avatex_core.atomic import atomic_path, write_bytes, write_json
from avatex_core.progress import NULL, Progress
from backend.data.synth.bodies import (
    UV_DECIMALS,
    VERTEX_DECIMALS,
    AnnyBodies,
    Avatar,
    paint_avatar,
    random_identity,
)
from backend.data.synth.outfits import SHIRT_PATTERNS, random_outfit
from backend.errors import InputError

FORMAT = "avatex-synth-avatar/1"


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
               texture_size: int = 1024, subdivisions: int = 1, poses: bool = False,
               progress: Progress = NULL) -> list[Path]:
    """Generate avatars ``start .. start+count-1`` into ``out_dir``; returns the OBJ paths.

    Avatar i depends only on (seed, i): re-running reproduces identical files, and runs with different
    ``start`` can be sharded. Shirt patterns cycle through SHIRT_PATTERNS from a seed-chosen offset, so any
    four consecutive avatars show all of them.
    """
    out = check_options(count, out_dir, start=start, prefix=prefix, texture_size=texture_size,
                        subdivisions=subdivisions)
    progress.report("building anny model", 0.0)
    bodies = anny_bodies()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(count):
        progress.check(f"synth stopped after {k} of {count} avatars")
        name = f"{prefix}{start + k:04d}"
        progress.report("painting", k / count, avatar=name)
        avatar, meta = make_avatar(bodies, seed, start + k, texture_size=texture_size,
                                   subdivisions=subdivisions, poses=poses)
        write_avatar(out, name, avatar, {"format": FORMAT, "name": name, **meta})
        written.append(out / f"{name}.obj")
        progress.report("painting", (k + 1) / count, avatar=name)
    return written


def make_avatar(bodies: AnnyBodies, seed: int, index: int, *, texture_size: int = 1024,
                subdivisions: int = 1, poses: bool = False) -> tuple[Avatar, dict]:
    """Avatar ``index`` of the set ``seed``, and its metadata (what the JSON records).

    ``poses`` draws a random pose (:mod:`.poses`) from its own stream, so the identity and clothes of
    avatar ``index`` are the same with and without it.
    """
    rng = avatar_rng(seed, index)
    phenotype, local, target = random_identity(rng, bodies.local_change_labels)
    angles = None
    if poses:
        from backend.data.synth.poses import sample_angles

        angles = sample_angles(bodies.bone_labels, np.random.default_rng(np.random.SeedSequence(
            [int(seed), int(index), 1])))
    vertices, height_slider = bodies.body(phenotype, local, target, pose=angles)
    offset = int(np.random.default_rng(np.random.SeedSequence([int(seed), 2**31]))
                 .integers(len(SHIRT_PATTERNS)))
    outfit = random_outfit(rng, SHIRT_PATTERNS[(offset + index) % len(SHIRT_PATTERNS)],
                           skin_darkness=phenotype["african"] + 0.35 * phenotype["asian"])
    avatar = paint_avatar(vertices, bodies.faces, bodies.uv, bodies.face_uv, bodies.weights, outfit,
                          texture_size=texture_size, subdivisions=subdivisions)
    meta = {
        "seed": int(seed), "index": int(index),
        "height_m": round(avatar.height, 4), "target_height_m": target,
        "units": "metres", "up": "+z", "facing": "-y",
        "pose": "random (anny rig, joint limits)" if poses else "anny rest A-pose",
        **({"pose_angles_deg": angles} if angles else {}),
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
