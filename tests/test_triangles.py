"""backend.triangles: the one definition of per-triangle cross products, areas and normals."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend import triangles


def test_areas_normals_and_volume_of_a_real_box_match_trimesh():
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    v, f = np.asarray(box.vertices), np.asarray(box.faces)
    np.testing.assert_allclose(triangles.areas(v, f), box.area_faces, rtol=1e-12)
    assert triangles.areas(v, f).sum() == pytest.approx(2 * (2 + 3 + 6))
    np.testing.assert_allclose(triangles.unit_normals(v, f), box.face_normals, atol=1e-12)
    assert triangles.signed_volume(v, f) == pytest.approx(6.0)
    assert triangles.signed_volume(v, f[:, ::-1]) == pytest.approx(-6.0)   # inward winding
    # A box corner's area-weighted normal points out along the diagonal of its three faces' areas.
    n = triangles.vertex_normals(v, f)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    assert np.all(np.einsum("ij,ij->i", n, v) > 0)


def test_a_degenerate_face_has_zero_area_and_a_zero_normal():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]])
    f = np.array([[0, 1, 2], [0, 1, 3]])
    np.testing.assert_allclose(triangles.areas(v, f), [0.5, 0.0])
    np.testing.assert_allclose(triangles.unit_normals(v, f), [[0, 0, 1], [0, 0, 0]])
    np.testing.assert_allclose(triangles.edge_cross(v[f]), triangles.cross(v, f))
