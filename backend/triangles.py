"""Per-triangle quantities of an indexed mesh: edge cross products, areas, face and vertex normals.

One definition for the metrics, the samplers, the inside test, the synthetic bodies and the mesh file
code. ``trimesh.triangles.cross`` crosses (v1 - v0) with (v2 - v1); the same vector on paper, but it
differs in the last bits from (v1 - v0) x (v2 - v0), which the tests' expected values were computed
with, and importing trimesh here would make every caller pay for it.
"""

from __future__ import annotations

import numpy as np


def edge_cross(tri: np.ndarray) -> np.ndarray:
    """(F, 3) cross products (v1 - v0) x (v2 - v0) of (F, 3, 3) corner positions: twice the area,
    along the counter-clockwise normal."""
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


def cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """:func:`edge_cross` of an indexed mesh's faces."""
    return edge_cross(np.asarray(vertices)[np.asarray(faces)])


def areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) triangle areas, in the vertices' dtype."""
    return 0.5 * np.linalg.norm(cross(vertices, faces), axis=1)


def unit_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) unit normals from counter-clockwise winding; zero for degenerate faces."""
    n = cross(vertices, faces)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) float64 unit vertex normals: the area-weighted sum of the adjacent faces' normals."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = cross(v, f)
    n = np.zeros_like(v)
    for k in range(3):
        for c in range(3):
            n[:, c] += np.bincount(f[:, k], weights=fn[:, c], minlength=len(v))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh; positive iff its triangles wind counter-clockwise from outside."""
    tri = np.asarray(vertices, np.float64)[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)
