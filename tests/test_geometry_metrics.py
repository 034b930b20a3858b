"""Geometry metrics on cases with known answers: point-triangle distances, spheres, tilted planes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from avatex_core.canonical import CANONICAL_HEIGHT, normalization_for
from backend.errors import InputError
from backend.metrics.geometry import (
    closest_point_on_triangles,
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
    a, b, c = np.array([0.0, 0, 0]), np.array([1.0, 0, 0]), np.array([0.0, 1, 0])
    points = np.array([
        [0.2, 0.2, 0.5],    # above the interior: the projection
        [-1.0, -1.0, 0.0],  # beyond vertex a
        [2.0, -0.5, 0.0],   # beyond vertex b
        [0.5, -1.0, 1.0],   # beyond edge ab
        [1.0, 1.0, 0.0],    # beyond edge bc
        [-0.3, 0.5, -2.0],  # beyond edge ca, below the plane
    ])
    expected = np.array([[0.2, 0.2, 0], [0, 0, 0], [1, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0]])
    n = len(points)
    cp, d2 = closest_point_on_triangles(points, np.tile(a, (n, 1)), np.tile(b, (n, 1)), np.tile(c, (n, 1)))
    np.testing.assert_allclose(cp, expected, atol=1e-12)
    np.testing.assert_allclose(d2, ((points - expected) ** 2).sum(axis=1), atol=1e-12)


def test_point_to_surface_is_exact_against_brute_force():
    v, f = icosphere(2)
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(size=(200, 3)) * 0.8, rng.normal(size=(50, 3)) * 3.0])
    d, face, cp = point_to_surface(points, v, f, candidates=2)
    tri = v[f]
    for i in range(len(points)):
        p = np.repeat(points[i:i + 1], len(f), axis=0)
        _, d2 = closest_point_on_triangles(p, tri[:, 0], tri[:, 1], tri[:, 2])
        assert d[i] == pytest.approx(np.sqrt(d2.min()), abs=1e-12)
        assert np.sqrt(d2[face[i]]) == pytest.approx(d[i], abs=1e-12)
    np.testing.assert_allclose(np.linalg.norm(points - cp, axis=1), d, atol=1e-12)


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
