"""Geometry metrics on cases with known answers: point-triangle distances, spheres, tilted planes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from avatex_core.canonical import CANONICAL_HEIGHT, normalization_for
from backend.errors import InputError
from backend.metrics.geometry import (
    cm_per_canonical_unit,
    cm_per_unit_from_normalization,
    face_normals,
    geometry_metrics,
    point_to_surface,
)


def icosphere(subdivisions: int):
    s = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(s.vertices, dtype=np.float64), np.asarray(s.faces, dtype=np.int64)


def test_closest_point_regions_of_one_triangle():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    f = np.array([[0, 1, 2]])
    points = np.array([
        [0.2, 0.2, 0.5],    # above the interior: the projection
        [-1.0, -1.0, 0.0],  # beyond vertex a
        [2.0, -0.5, 0.0],   # beyond vertex b
        [0.5, -1.0, 1.0],   # beyond edge ab
        [1.0, 1.0, 0.0],    # beyond edge bc
        [-0.3, 0.5, -2.0],  # beyond edge ca, below the plane
    ])
    expected = np.array([[0.2, 0.2, 0], [0, 0, 0], [1, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0]])
    d, face, cp = point_to_surface(points, v, f)
    np.testing.assert_allclose(cp, expected, atol=1e-12)
    np.testing.assert_allclose(d, np.linalg.norm(points - expected, axis=1), atol=1e-12)
    assert (face == 0).all()


def test_distances_to_a_cube_are_analytic():
    """Points at known distances outside a unit cube (faces, edges, corners) and inside it."""
    cube = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    v, f = np.asarray(cube.vertices, np.float64), np.asarray(cube.faces, np.int64)
    rng = np.random.default_rng(4)
    n = 6000  # > 4096: the Morton-ordered path
    inside = rng.uniform(-1, 1, (n, 3))
    outside = rng.uniform(-3, 3, (n, 3))
    points = np.concatenate([inside, outside])
    q = np.abs(points)
    expected_out = np.linalg.norm(np.maximum(q - 1.0, 0.0), axis=1)
    expected = np.where((q <= 1).all(axis=1), (1.0 - q).min(axis=1), expected_out)
    d, face, cp = point_to_surface(points, v, f)
    np.testing.assert_allclose(d, expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(points - cp, axis=1), d, atol=1e-12)
    assert face.min() >= 0 and face.max() < len(f)


def test_points_above_a_plane_of_mixed_triangle_sizes():
    """A plane tessellated with a few huge and many tiny triangles: distance = height, exactly."""
    xs = np.linspace(0.0, 1.0, 41)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    fine_v = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    idx = np.arange(gx.size).reshape(41, 41)
    a, b, c, d_ = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    fine_f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d_], 1)])
    big_v = np.array([[1.0, 0, 0], [100.0, 0, 0], [100.0, 100.0, 0], [1.0, 100.0, 0]])
    v = np.concatenate([fine_v, big_v])
    o = len(fine_v)
    f = np.concatenate([fine_f, [[o, o + 1, o + 2], [o, o + 2, o + 3]]])
    rng = np.random.default_rng(5)
    points = np.concatenate([rng.uniform([0, 0, -2], [1, 1, 2], (3000, 3)),
                             rng.uniform([1, 0, -2], [100, 100, 2], (3000, 3))])
    dist, face, _ = point_to_surface(points, v, f)
    np.testing.assert_allclose(dist, np.abs(points[:, 2]), atol=1e-12)
    assert (face[3000:] >= len(fine_f)).all()


def test_figures_equal_igl_on_the_same_samples():
    """geometry_metrics' means are libigl's distances on the very samples geometry_metrics draws."""
    import igl

    from backend.meshio import ColoredMesh, sample_surface

    gv, gf = icosphere(4)
    rng = np.random.default_rng(6)
    pv = gv * (1.0 + 0.05 * np.sin(4 * gv[:, :1])) + rng.normal(scale=0.01, size=gv.shape)
    pf = gf[:, ::-1]
    m = geometry_metrics(pv, pf, gv, gf, samples=8000, rng=7)
    generator = np.random.default_rng(7)
    pred_pts, pred_face, _ = sample_surface(ColoredMesh(vertices=pv, faces=pf), 8000, generator)
    gt_pts, gt_face, _ = sample_surface(ColoredMesh(vertices=gv, faces=gf), 8000, generator)
    d_pg, f_pg, _ = igl.point_mesh_squared_distance(pred_pts, gv, gf)
    d_gp, f_gp, _ = igl.point_mesh_squared_distance(gt_pts, pv, pf)
    assert m.pred_to_gt == pytest.approx(float(np.sqrt(d_pg).mean()), abs=1e-6)
    assert m.gt_to_pred == pytest.approx(float(np.sqrt(d_gp).mean()), abs=1e-6)
    assert m.chamfer == pytest.approx(0.5 * (np.sqrt(d_pg).mean() + np.sqrt(d_gp).mean()), abs=1e-6)
    pn, gn = face_normals(pv, pf), face_normals(gv, gf)
    nc = 0.5 * (np.abs((pn[pred_face] * gn[f_pg]).sum(1)).mean()
                + np.abs((gn[gt_face] * pn[f_gp]).sum(1)).mean())
    assert m.normal_consistency == pytest.approx(float(nc), abs=1e-6)
    assert 0.01 < m.chamfer < 0.1 and 0.5 < m.normal_consistency < 1.0


@pytest.mark.slow
def test_point_to_surface_agrees_with_dense_sampling():
    """An independent check: distance to 200k surface samples is never below the exact distance."""
    v, f = icosphere(3)
    rng = np.random.default_rng(1)
    points = rng.normal(size=(5000, 3)) * 0.7  # > 4096 queries: the Morton-ordered path
    d, _, _ = point_to_surface(points, v, f)
    mesh = trimesh.Trimesh(v, f, process=False)
    samples, _ = trimesh.sample.sample_surface(mesh, 200_000, seed=1)
    from scipy.spatial import cKDTree

    approx, _ = cKDTree(samples).query(points)
    assert np.all(approx >= d - 1e-12)
    assert np.max(approx - d) < 0.015


def test_scaled_sphere_distances():
    v, f = icosphere(4)
    m = geometry_metrics(v * 1.1, f, v, f, samples=20_000)
    # Both polyhedra share their tessellation: the gap is 0.1 times the face-plane distance (0.994..1).
    assert m.pred_to_gt == pytest.approx(0.1, abs=1e-3)
    assert m.gt_to_pred == pytest.approx(0.1, abs=1e-3)
    assert m.chamfer == pytest.approx(0.5 * (m.pred_to_gt + m.gt_to_pred))
    assert m.normal_consistency > 0.999
    same = geometry_metrics(v, f, v, f, samples=5000)
    assert same.chamfer < 1e-12 and same.normal_consistency == pytest.approx(1.0, abs=1e-12)


def test_shifted_sphere_matches_the_analytic_mean_distance():
    # Points p = s·x̂ + u on a unit sphere shifted by s lie |p| - 1 from the unit sphere; u·x̂ is uniform
    # on [-1, 1] for area-uniform u (Archimedes), so the mean is a 1D integral.
    s = 0.15
    t = np.linspace(-1.0, 1.0, 2_000_001)
    expected = float(np.mean(np.abs(np.sqrt(1.0 + s * s + 2.0 * s * t) - 1.0)))
    v, f = icosphere(5)
    m = geometry_metrics(v + [s, 0.0, 0.0], f, v, f, samples=20_000, rng=3)
    assert m.pred_to_gt == pytest.approx(expected, abs=2e-3)
    assert m.gt_to_pred == pytest.approx(expected, abs=2e-3)


def test_normal_consistency_of_tilted_planes_is_the_cosine():
    theta = np.deg2rad(30.0)
    big = np.array([[-2.0, -2, 0], [2, -2, 0], [2, 2, 0], [-2, 2, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    rot = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    small = (big * 0.25) @ rot.T
    m = geometry_metrics(small, faces, big, faces, samples=2000)
    assert m.normal_consistency == pytest.approx(np.cos(theta), abs=1e-12)
    flipped = geometry_metrics(small, faces[:, ::-1], big, faces, samples=2000)
    assert flipped.normal_consistency == pytest.approx(np.cos(theta), abs=1e-12)


def test_centimetres():
    assert cm_per_canonical_unit(CANONICAL_HEIGHT) == pytest.approx(100.0)
    assert cm_per_canonical_unit(1.80) == pytest.approx(180.0 / CANONICAL_HEIGHT)
    scan_in_metres = np.array([[0.0, 0.0, 0.0], [0.3, 1.75, 0.2], [0.1, 0.9, 0.1], [-0.2, 0.5, 0.0]])
    norm = normalization_for(scan_in_metres, up_axis="y")
    assert cm_per_unit_from_normalization(norm) == pytest.approx(cm_per_canonical_unit(1.75))
    assert cm_per_unit_from_normalization(norm, source_unit_m=0.01) == pytest.approx(
        cm_per_canonical_unit(0.0175))
    v, f = icosphere(3)
    m = geometry_metrics(v * 1.05, f, v, f, samples=3000, cm_per_unit=50.0)
    d = m.to_dict()
    assert d["chamfer_cm"] == pytest.approx(m.chamfer * 50.0)
    assert d["pred_to_gt_cm"] == pytest.approx(m.pred_to_gt * 50.0)
    assert "chamfer_cm" not in geometry_metrics(v * 1.05, f, v, f, samples=3000).to_dict()
    with pytest.raises(InputError):
        cm_per_canonical_unit(0.0)


def test_face_normals_and_degenerate_faces():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]])
    f = np.array([[0, 1, 2], [0, 1, 3]])  # the second is degenerate (collinear)
    np.testing.assert_allclose(face_normals(v, f), [[0, 0, 1], [0, 0, 0]])
    d, face, _ = point_to_surface(np.array([[0.2, 0.2, 1.0]]), v, f)
    assert d[0] == pytest.approx(1.0) and face[0] == 0


def test_bad_meshes_are_named():
    v, f = icosphere(1)
    with pytest.raises(InputError, match="face indices"):
        geometry_metrics(v, f + 1000, v, f)
    with pytest.raises(InputError, match="faces must be"):
        geometry_metrics(v, f[:0], v, f)
    with pytest.raises(InputError, match="NaN"):
        geometry_metrics(np.where(v > 0.9, np.nan, v), f, v, f)
    with pytest.raises(InputError, match="samples"):
        geometry_metrics(v, f, v, f, samples=0)
