"""Small meshes for tests: trimesh.creation for the simple shapes, one plane grid.

Everything returns plain ``(vertices float32 (V, 3), triangles int32 (F, 3))`` arrays, the form the
add-on's mesh import and the wire protocol take.
"""

from __future__ import annotations

import numpy as np
import trimesh


def mesh_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


def torus(major_sections: int = 24, minor_sections: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A closed torus (radii 1 and 0.3) with ``major_sections * minor_sections`` vertices, each of
    valence 6: a watertight genus-1 surface, so V - E + F = 0."""
    return mesh_arrays(trimesh.creation.torus(1.0, 0.3, major_sections=major_sections,
                                         minor_sections=minor_sections))


def grid(n: int, size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """An ``n x n`` vertex grid in z = 0 spanning ``[-size/2, size/2]^2``, normals +z.

    Hand-written because trimesh.creation has no tessellated plane; vertex ``i * n + j`` sits at column
    ``j`` (x) of row ``i`` (y), which the tests that index vertices by position rely on.
    """
    r = np.linspace(-size / 2, size / 2, n)
    xx, yy = np.meshgrid(r, r, indexing="xy")
    verts = np.stack([xx.ravel(), yy.ravel(), np.zeros(n * n)], -1).astype(np.float32)
    i, j = np.arange(n - 1)[:, None], np.arange(n - 1)[None, :]
    a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return verts, tris.astype(np.int32)
