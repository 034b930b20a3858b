"""A game-style character built from a committed fixture avatar, for the geometry metrics' worst case.

Game meshes mix a finely tessellated body with a few huge flat triangles and are often double-sided
(every face duplicated with reversed winding). Both are what made a search bounded by one global
triangle radius slow, so the tests and ``benchmarks/bench_geometry.py`` share this mesh:

* the fixture avatar's feet (faces below ``z = -0.96``) are replaced by their convex hull, a few
  dozen large triangles;
* a 1.3 x 1.3 base plate of two triangles sits under the feet, over 100x the body's edge length;
* every face is duplicated in reverse winding.

Colours are the fixture's vertex colours (the plate is grey).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from backend.meshio import load_mesh

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "avatars" / "avatar_0000.ply"


def game_character(path: Path = FIXTURE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64, faces (F, 3) int64, sRGB colours (N, 3) float32) of the character."""
    mesh = load_mesh(path)
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    rgb = np.asarray(mesh.per_vertex_colors(), np.float32)
    low = v[f].mean(axis=1)[:, 2] < -0.96
    region = np.unique(f[low])
    hull = trimesh.convex.convex_hull(v[region])
    hull_v = np.asarray(hull.vertices, np.float64)
    # Hull vertices are fixture vertices: take their colours from the nearest one.
    hull_rgb = rgb[region[np.argmin(((hull_v[:, None] - v[region][None]) ** 2).sum(-1), axis=1)]]
    z0 = float(v[:, 2].min()) - 0.01
    plate_v = np.array([[-0.65, -0.65, z0], [0.65, -0.65, z0], [0.65, 0.65, z0], [-0.65, 0.65, z0]])
    plate_f = np.array([[0, 1, 2], [0, 2, 3]])
    vertices = np.concatenate([v, hull_v, plate_v])
    faces = np.concatenate([f[~low], np.asarray(hull.faces, np.int64) + len(v),
                            plate_f + len(v) + len(hull_v)])
    colors = np.concatenate([rgb, hull_rgb, np.full((4, 3), 0.5, np.float32)])
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    faces = remap[faces]
    faces = np.concatenate([faces, faces[:, ::-1]])
    return vertices[used], faces, colors[used]


def jittered(vertices: np.ndarray, colors: np.ndarray, seed: int = 1, sigma: float = 0.002,
             color_sigma: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """A noisy copy: positions and colours with Gaussian jitter (the "prediction" of the issue's test)."""
    rng = np.random.default_rng(seed)
    return (vertices + rng.normal(scale=sigma, size=vertices.shape),
            np.clip(colors + rng.normal(scale=color_sigma, size=colors.shape), 0.0, 1.0).astype(np.float32))


def edge_length_span(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Longest over median triangle edge: how far the triangle sizes spread."""
    tri = vertices[faces]
    edges = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(axis=1)
    return float(edges.max() / np.median(edges))
