"""Per-subject sampling state, computed once and cached on disk, keyed by the GT mesh's content hash.

Dense surface samples (with colours and normals) and the labelled geometry pool are the expensive part
of sampling (area CDFs, texture lookups, winding numbers); everything per iteration indexes into them.
They are written atomically as ``.npz`` (read back with ``allow_pickle=False``) under names made of the
mesh hash and the parameters that shaped them, so a changed mesh or setting never reuses a stale file,
and their content is a deterministic function of (mesh, parameters): rebuilding a deleted cache gives
the same arrays, which keeps resumed runs exact.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatex_core.atomic import atomic_path
from backend.data import sampling
from backend.meshio import ColoredMesh

CACHE_VERSION = 1


def mesh_hash(mesh: ColoredMesh) -> str:
    """SHA-256 of the geometry and every colour source of a mesh (hex)."""
    h = hashlib.sha256()
    for name, arr in (("v", mesh.vertices), ("f", mesh.faces), ("c", mesh.vertex_colors), ("uv", mesh.uv),
                      ("m", mesh.face_material)):
        h.update(name.encode())
        if arr is not None:
            a = np.ascontiguousarray(arr)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    for i, tex in enumerate(mesh.textures):
        a = np.ascontiguousarray(tex)
        h.update(f"t{i}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$AVATEX_CACHE/sampling``, else ``$XDG_CACHE_HOME/avatex/sampling`` (``~/.cache/...``)."""
    if os.environ.get("AVATEX_CACHE"):
        return Path(os.environ["AVATEX_CACHE"]) / "sampling"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avatex" / "sampling"


def _key(kind: str, digest: str, params: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "kind": kind, **params}, sort_keys=True)
    return f"{digest[:32]}-{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.npz"


def _build_rng(digest: str, kind: str) -> np.random.Generator:
    return np.random.default_rng([int(digest[:16], 16), sum(kind.encode())])


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None  # missing or damaged: rebuild


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def surface_samples(mesh: ColoredMesh, count: int, cache_dir: Path, digest: str | None = None
                    ) -> sampling.SurfaceSamples:
    """Dense GT surface samples of a subject, from the cache or computed and cached."""
    digest = digest or mesh_hash(mesh)
    path = Path(cache_dir) / _key("surface", digest, {"count": int(count)})
    data = _load(path)
    if data is None:
        samples = sampling.dense_surface_samples(mesh, int(count), _build_rng(digest, "surface"))
        _save(path, samples.to_arrays())
        return samples
    return sampling.SurfaceSamples.from_arrays(data)


def geometry_pool(mesh: ColoredMesh, n_surface: int, n_uniform: int, sigma: float, cache_dir: Path,
                  digest: str | None = None) -> sampling.GeometryPool:
    """The labelled geometry pool of a subject, from the cache or computed and cached."""
    digest = digest or mesh_hash(mesh)
    params = {"n_surface": int(n_surface), "n_uniform": int(n_uniform), "sigma": float(sigma)}
    path = Path(cache_dir) / _key("geometry", digest, params)
    data = _load(path)
    if data is None:
        pool = sampling.geometry_pool(mesh, int(n_surface), int(n_uniform), float(sigma),
                                      _build_rng(digest, "geometry"))
        _save(path, pool.to_arrays())
        return pool
    return sampling.GeometryPool.from_arrays(data)


@dataclass
class SubjectSampling:
    """Everything the per-iteration samplers need for one subject, held in memory by a data worker."""

    mesh: ColoredMesh
    surface: sampling.SurfaceSamples
    pool: sampling.GeometryPool | None
    vnormals: np.ndarray
    ring: np.ndarray
    kdtree: object

    @property
    def nbytes(self) -> int:
        """Memory held (arrays, textures and the k-d tree's copy of the points and its index): what the
        data workers' subject cache counts against its byte budget."""
        m = self.mesh
        arrays = [m.vertices, m.faces, m.vertex_colors, m.uv, m.face_material, *m.textures,
                  *vars(self.surface).values(), *(vars(self.pool).values() if self.pool is not None else ()),
                  self.vnormals, self.ring, getattr(self.kdtree, "data", None),
                  getattr(self.kdtree, "indices", None)]
        return int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))

    @classmethod
    def build(cls, mesh: ColoredMesh, *, dense_samples: int, geometry: bool, pool_surface: int,
              pool_uniform: int, sigma_geometry: float, cache_dir: Path) -> SubjectSampling:
        from scipy.spatial import cKDTree

        digest = mesh_hash(mesh)
        surface = surface_samples(mesh, dense_samples, cache_dir, digest)
        pool = (geometry_pool(mesh, pool_surface, pool_uniform, sigma_geometry, cache_dir, digest)
                if geometry else None)
        return cls(mesh=mesh, surface=surface, pool=pool, vnormals=sampling.vertex_normals(mesh),
                   ring=sampling.vertex_faces(mesh), kdtree=cKDTree(surface.points))
