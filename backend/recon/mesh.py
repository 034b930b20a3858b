"""Marching cubes on an occupancy lattice, back to canonical coordinates with outward winding."""

from __future__ import annotations

import numpy as np
from skimage import measure

from backend.errors import InputError
from backend.recon.grid import GridSpec
from backend.triangles import signed_volume  # noqa: F401 - re-exported: callers import it from here


class NoSurfaceError(InputError):
    """The occupancy never crosses the iso-level inside the box: nothing to mesh."""


def extract_surface(volume: np.ndarray, spec: GridSpec, level: float = 0.5,
                    mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of ``volume`` (indexed [x, y, z] on ``spec``'s lattice) at ``level``.

    Returns float32 vertices (N, 3) in canonical coordinates (``spec.to_coords`` of the fractional
    marching-cubes indices, PIFu's mapping) and int32 faces (F, 3), counter-clockwise seen from outside.
    skimage's Lewiner cubes (``marching_cubes_lewiner`` was removed from skimage; its successor defaults
    to the same method) orient triangles inward for a field that is high inside, hence the (0, 2, 1)
    flip, the same the official OBJ writer applies. ``mask`` (same shape as ``volume``) restricts the
    cubes examined; pass the cells near evaluated points to skip the uniform interior and exterior.
    """
    vmin, vmax = float(volume.min()), float(volume.max())
    if not (vmin < level < vmax):
        raise NoSurfaceError(
            f"no surface: occupancy stays within [{vmin:.3f}, {vmax:.3f}] and never crosses {level} inside "
            "the box (check the mask and framing, or the checkpoint)")
    verts, faces, _, _ = measure.marching_cubes(volume, level, allow_degenerate=False, mask=mask)
    if len(faces) == 0:
        raise NoSurfaceError("no surface: marching cubes produced no triangles")
    vertices = spec.to_coords(verts).astype(np.float32)
    faces = np.ascontiguousarray(faces[:, [0, 2, 1]], dtype=np.int32)
    return vertices, faces


