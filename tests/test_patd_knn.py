"""The k-NN searches behind PATD/PIPATD are exact: the KD-tree shortcuts and the torch (CUDA) search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from backend.metrics.knn import knn_cpu, knn_torch, morton_codes


def surface_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """Points on a bumpy sphere, in a coherent (latitude-sorted) order like a mesh's vertex list."""
    d = rng.standard_normal((n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d = d[np.argsort(d[:, 2])]
    return d * (1.0 + 0.1 * np.sin(5 * d[:, :1]))


def plain(ref, query, k):
    dist, idx = cKDTree(ref).query(query, k=k)
    return np.asarray(dist).reshape(len(query), k), np.asarray(idx).reshape(len(query), k)


def test_bounded_query_is_exact_including_far_outliers():
    rng = np.random.default_rng(0)
    ref = surface_points(rng, 20_000)
    query = surface_points(rng, 60_000) * (1.0 + 0.01 * rng.standard_normal((60_000, 1)))
    query[::997] *= 3.0  # far from the surface: beyond the sampled distance bound
    dist, idx = knn_cpu(ref, query, 8)
    expected_d, expected_i = plain(ref, query, 8)
    np.testing.assert_array_equal(idx, expected_i)
    np.testing.assert_allclose(dist, expected_d, rtol=0, atol=1e-12)


def test_scattered_queries_are_reordered_and_put_back():
    rng = np.random.default_rng(1)
    ref = surface_points(rng, 20_000)
    query = rng.permutation(surface_points(rng, 60_000))
    dist, idx = knn_cpu(ref, query, 4)
    expected_d, expected_i = plain(ref, query, 4)
    np.testing.assert_array_equal(idx, expected_i)
    np.testing.assert_allclose(dist, expected_d, rtol=0, atol=1e-12)


def test_morton_codes_group_nearby_points():
    pts = np.array([[0.0, 0, 0], [1, 1, 1], [0.001, 0, 0], [0.999, 1, 1]])
    order = np.argsort(morton_codes(pts))
    assert {tuple(order[:2]), tuple(order[2:])} <= {(0, 2), (2, 0), (1, 3), (3, 1)}


@pytest.mark.parametrize("block", [16, 256])
def test_torch_knn_matches_kdtree(block):
    rng = np.random.default_rng(2)
    ref = surface_points(rng, 3000)
    query = surface_points(rng, 1500) * (1.0 + 0.02 * rng.standard_normal((1500, 1)))
    query[::101] *= 4.0  # forces the radius to grow for some queries
    d, i = knn_torch(torch.tensor(ref), torch.tensor(query), 8, block=block, max_pairs=1 << 16)
    expected_d, expected_i = plain(ref, query, 8)
    np.testing.assert_array_equal(i.numpy(), expected_i)
    np.testing.assert_allclose(d.numpy(), expected_d, rtol=0, atol=1e-12)


def test_torch_knn_edge_cases():
    ref = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]], dtype=torch.float64)
    d, i = knn_torch(ref, torch.tensor([[0.1, 0, 0]], dtype=torch.float64), 3)
    assert i.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(d.numpy(), [[0.1, 0.9, np.hypot(0.1, 2)]])
    empty_d, empty_i = knn_torch(ref, torch.zeros((0, 3), dtype=torch.float64), 2)
    assert empty_d.shape == (0, 2) and empty_i.shape == (0, 2)
    with pytest.raises(ValueError, match="exceeds"):
        knn_torch(ref, ref, 4)


def test_reordering_only_for_scattered_lists():
    from backend.metrics.knn import _spatial_order_if_scattered

    rng = np.random.default_rng(3)
    pts = surface_points(rng, 60_000)
    coherent = pts[np.argsort(morton_codes(pts))]
    assert _spatial_order_if_scattered(coherent) is None
    order = _spatial_order_if_scattered(rng.permutation(coherent))
    assert order is not None and np.array_equal(np.sort(order), np.arange(60_000))
    assert _spatial_order_if_scattered(coherent[:1000]) is None  # small lists: not worth sorting
