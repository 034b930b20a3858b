"""Geometry helpers (pure numpy): part weights, joint landmarks, normals, midpoint subdivision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.data.synth.outfits import PART_BONES, PART_INDEX, PARTS
from backend.errors import InputError
from backend.triangles import vertex_normals  # noqa: F401 - re-exported for the synth package


def part_weights(bone_labels: list[str], vertex_bone_indices: np.ndarray,
                 vertex_bone_weights: np.ndarray) -> np.ndarray:
    """(N, len(PARTS)) float32: each vertex's skinning weight summed per coarse body part.

    Bones matching no part (none in anny's default rig) count as torso, so every row sums to 1.
    """
    bone_part = np.full(len(bone_labels), PART_INDEX["torso"], dtype=np.int64)
    for b, label in enumerate(bone_labels):
        base, side = (label[:-2], label[-2:]) if label.endswith((".L", ".R")) else (label, "")
        for name, (prefixes, want_side) in PART_BONES.items():
            if base.startswith(prefixes) and side == want_side:
                bone_part[b] = PART_INDEX[name]
                break
    idx = np.asarray(vertex_bone_indices, dtype=np.int64)
    w = np.asarray(vertex_bone_weights, dtype=np.float64)
    out = np.zeros((len(idx), len(PARTS)))
    rows = np.repeat(np.arange(len(idx)), idx.shape[1])
    np.add.at(out, (rows, bone_part[idx.ravel()]), w.ravel())
    return out.astype(np.float32)


@dataclass(frozen=True)
class Landmarks:
    """Joint centres (metres) estimated from where adjacent parts' weights blend; rows = (left, right)."""

    shoulder: np.ndarray
    elbow: np.ndarray
    wrist: np.ndarray
    hip: np.ndarray
    knee: np.ndarray
    ankle: np.ndarray
    eye: np.ndarray
    neck: np.ndarray        # (3,) torso/neck junction
    skull_base: np.ndarray  # (3,) neck/head junction
    crown_z: float          # top of the head
    face_y: float           # front-most head point (anny faces -y)
    back_y: float           # back-most head point


def landmarks(vertices: np.ndarray, weights: np.ndarray) -> Landmarks:
    """Joint centres as the centroid of vertices weighted by w_a * w_b of the two parts meeting there."""
    v = np.asarray(vertices, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)

    def joint(a: str, b: str) -> np.ndarray:
        k = w[:, PART_INDEX[a]] * w[:, PART_INDEX[b]]
        if not k.sum() > 0:
            raise InputError(f"the part weights have no {a}/{b} junction "
                             "(not an anny default-topology body?)")
        return (k[:, None] * v).sum(0) / k.sum()

    def pair(a: str, b: str) -> np.ndarray:
        return np.stack([joint(a.format(s="l"), b.format(s="l")), joint(a.format(s="r"), b.format(s="r"))])

    head = w.argmax(1) == PART_INDEX["head"]
    eyes = np.stack([(w[:, PART_INDEX[e], None] * v).sum(0) / w[:, PART_INDEX[e]].sum()
                     for e in ("eye_l", "eye_r")])
    return Landmarks(
        shoulder=pair("torso", "upperarm_{s}"), elbow=pair("upperarm_{s}", "forearm_{s}"),
        wrist=pair("forearm_{s}", "hand_{s}"), hip=pair("torso", "thigh_{s}"),
        knee=pair("thigh_{s}", "shin_{s}"), ankle=pair("shin_{s}", "foot_{s}"), eye=eyes,
        neck=joint("torso", "neck"), skull_base=joint("neck", "head"), crown_z=float(v[head, 2].max()),
        face_y=float(v[head, 1].min()), back_y=float(v[head, 1].max()))


def subdivide_midpoint(vertices: np.ndarray, faces: np.ndarray, *attributes: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Split every triangle into four at its edge midpoints (shape unchanged, watertightness kept).

    The original vertices keep their indices; midpoints follow. Per-vertex ``attributes`` are interpolated
    linearly, exactly as barycentric interpolation on the original surface would give them.
    """
    v = np.asarray(vertices)
    f = np.asarray(faces, dtype=np.int64)
    edges = np.sort(np.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=1).reshape(-1, 2), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = (len(v) + inverse.reshape(-1, 3)).astype(np.int64)  # (F, 3): edges 01, 12, 20
    e01, e12, e20 = mid[:, 0], mid[:, 1], mid[:, 2]
    new_faces = np.concatenate([
        np.stack([f[:, 0], e01, e20], 1), np.stack([f[:, 1], e12, e01], 1),
        np.stack([f[:, 2], e20, e12], 1), np.stack([e01, e12, e20], 1)])
    new_v = np.concatenate([v, 0.5 * (v[unique[:, 0]] + v[unique[:, 1]])])
    new_attrs = [np.concatenate([a, (0.5 * (a[unique[:, 0]].astype(np.float64)
                                            + a[unique[:, 1]].astype(np.float64))).astype(a.dtype)])
                 for a in (np.asarray(x) for x in attributes)]
    return new_v, new_faces, new_attrs
