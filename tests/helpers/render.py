"""Helpers for the renderer tests: small real mesh files and running the renderer in subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from avatex_core.render_jobs import parse_event_line
from tests.conftest import FIXTURES, ROOT

SCRIPT = ROOT / "render_scripts" / "render_dataset.py"
SCENARIOS = ROOT / "tests" / "scenarios"
AVATARS = FIXTURES / "avatars"


def avatar(name: str = "avatar_0000", suffix: str = ".obj") -> Path:
    path = AVATARS / f"{name}{suffix}"
    assert path.is_file(), f"sample avatar missing: {path}"
    return path


def sphere_ply(path: Path, color=(1.0, 1.0, 1.0), radius: float = 1.0, subdivisions: int = 4,
               up: str = "y") -> Path:
    """A vertex-coloured icosphere, stretched along its up axis (a standing 'subject')."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    v = np.asarray(s.vertices).copy()
    rgb = np.tile(np.rint(np.asarray(color) * 255).astype(np.uint8), (len(v), 1))
    rgba = np.c_[rgb, np.full(len(v), 255, np.uint8)]
    mesh = trimesh.Trimesh(v, s.faces, vertex_colors=rgba, process=False)
    mesh.export(path)
    return path


def two_material_obj(folder: Path) -> Path:
    """A THuman-like OBJ: two materials with a texture each (top half red-ish, bottom half blue-ish)."""
    import trimesh
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    s = trimesh.creation.icosphere(subdivisions=3)
    v = np.asarray(s.vertices) * [0.5, 1.0, 0.4]
    f = np.asarray(s.faces)
    uv = np.c_[np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi) + 0.5, (v[:, 1] + 1) / 2]
    top = v[f].mean(axis=1)[:, 1] >= 0
    for name, color in (("top", (200, 40, 30)), ("bottom", (30, 60, 210))):
        img = np.zeros((16, 16, 3), np.uint8)
        img[:] = color
        img[::4] = (250, 250, 250)  # stripes: texture detail
        Image.fromarray(img).save(folder / f"{name}.png")
    lines = ["mtllib two.mtl"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in uv]
    for name, sel in (("top", top), ("bottom", ~top)):
        lines.append(f"usemtl {name}")
        lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in f[sel]]
    (folder / "two.obj").write_text("\n".join(lines) + "\n")
    (folder / "two.mtl").write_text("newmtl top\nKd 1 1 1\nmap_Kd top.png\n\nnewmtl bottom\nKd 1 1 1\n"
                                    "map_Kd bottom.png\n")
    return folder / "two.obj"


def glb_with_factor(path: Path, factor: float = 0.5) -> Path:
    """A textured GLB whose baseColorFactor darkens its texture (the glTF importer adds a Mix node)."""
    import trimesh
    from PIL import Image

    s = trimesh.creation.icosphere(subdivisions=3)
    v = np.asarray(s.vertices) * [0.4, 1.0, 0.3]
    uv = np.c_[np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi) + 0.5, (v[:, 1] + 1) / 2]
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:] = (240, 200, 20)
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex),
                                                    baseColorFactor=[factor, factor, factor, 1.0],
                                                    metallicFactor=0.0, roughnessFactor=1.0)
    mesh = trimesh.Trimesh(v, s.faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
                           process=False)
    mesh.export(path)
    return path


def broken_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad_ply = folder / "broken.ply"
    bad_ply.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1 2\n")
    not_mesh = folder / "notamesh.obj"
    not_mesh.write_text("this is not an OBJ file\n")
    return [bad_ply, not_mesh]


def events_of(stdout: str) -> list[dict]:
    return [e for e in map(parse_event_line, stdout.splitlines()) if e is not None]


def render(args: list[str], timeout: float = 600) -> tuple[int, list[dict], str]:
    """Run ``render_scripts/render_dataset.py`` with the bpy wheel; returns (exit code, events, stderr)."""
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args), "--progress", "jsonl"],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return proc.returncode, events_of(proc.stdout), proc.stderr


def cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``avatex render ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "backend", "render", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def read_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.uint8)


def fbx_from(obj: Path, out: Path) -> Path:
    """An FBX (embedded texture) exported by Blender from an OBJ, in a separate process."""
    proc = subprocess.run([sys.executable, str(SCENARIOS / "scenario_fbx_export.py"), str(obj), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return out
