"""PATD and PIPATD: how far a reconstructed mesh's colours are from the ground truth's, per vertex.

Definitions (the paper, *Avatar Texture Enhancement via 3D Patch-wise SSIM Loss*; docs/metrics.md has
the full conventions). Two flavours, told apart by the GT point set (``flavour`` in every summary):

* ``"vertices"`` (``gt_samples=None``, the paper's protocol, comparable with its numbers): the GT mesh's
  vertices with their colours (vertex colours, or the texture at each vertex's UV). Its perfect-prediction
  floor depends on the GT's tessellation: a prediction vertex between GT vertices is compared with the
  colour of the nearest one, not with the colour field there.
* ``"dense"`` (``gt_samples=N``): N area-uniform samples of the GT surface with the colour field
  interpolated there (vertex colours barycentrically, textures at the interpolated UV). Its floor is set
  by N alone, whatever the tessellation, and so is PIPATD's tolerance (the k nearest of N samples).
* PATD(x) = ΔE00(colour_R(x), colour_G(nearest GT point to x)); the mesh's PATD is the mean over its
  vertices.
* PIPATD(x) = min over the k nearest GT points p of ΔE00(colour_R(x), colour_G(p)), k = 8 by default.
  With k = 1 it equals PATD; it is never larger than PATD, since the nearest point is among the k.
* Colours are clipped to [0, 1] (counted and reported), read as sRGB, converted to CIELAB (D65) and
  compared with CIEDE2000 (kL = kC = kH = 1).

One k-NN query serves both metrics (its first column is the nearest point), and every colour is
converted to Lab once, not once per pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avatex_core.progress import NULL, Progress
from backend.errors import InputError
from backend.meshio import ColoredMesh, sample_surface
from backend.metrics import color, knn

DEFAULT_K = 8
DEFAULT_GT_SAMPLES = 500_000
"""Surface samples of the dense flavour when no count is given: a few times denser than a 256³
marching-cubes reconstruction's vertices. A perfect prediction then scores about 0.5 ΔE00 whatever the
GT's tessellation (0.36 at 1M, which costs twice the time; docs/metrics.md has the floors)."""

FLAVOURS = {"vertices": "GT vertices (the paper's protocol)", "dense": "GT surface samples (dense)"}
"""What each flavour's number is measured against, as the reports and the add-on label it."""

@dataclass(frozen=True)
class TextureDistance:
    """Per-vertex PATD/PIPATD of a reconstructed mesh and what they were measured against.

    Attributes:
        patd: (N,) float32 ΔE00 to the nearest GT point, per reconstructed vertex.
        pipatd: (N,) float32 minimum ΔE00 over the k nearest GT points.
        nearest: (N,) int64 index of the nearest GT point (a GT vertex index when ``gt_kind`` is
            "vertices", else an index into ``gt_positions``).
        k: neighbours used for PIPATD.
        gt_points: number of GT points.
        gt_kind: "vertices" or "surface-samples" (the "vertices" or "dense" flavour).
        clipped_pred / clipped_gt: colour components outside [0, 1] that were clipped.
        gt_positions: (M, 3) float32 sample positions when ``gt_kind`` is "surface-samples", else None.
        device: where it ran ("cpu" or a torch device string); engine: "numpy" or "torch".
        dense: the dense flavour's result beside a "vertices" one, when both were measured
            (``backend.metrics.evaluate.evaluate_meshes``), else None.
    """

    patd: np.ndarray
    pipatd: np.ndarray
    nearest: np.ndarray
    k: int
    gt_points: int
    gt_kind: str
    clipped_pred: int = 0
    clipped_gt: int = 0
    gt_positions: np.ndarray | None = None
    device: str = "cpu"
    engine: str = "numpy"
    _stats: dict = field(default_factory=dict, repr=False)
    dense: TextureDistance | None = field(default=None, repr=False)

    @property
    def flavour(self) -> str:
        """"vertices" (the paper's protocol) or "dense" (surface samples), see the module docstring."""
        return "vertices" if self.gt_kind == "vertices" else "dense"

    def summary(self) -> dict:
        """{"patd": {mean, median, p90}, "pipatd": {...}, k, gt_points, gt_kind, flavour, vertices,
        clipping}.

        The statistics come from the float64 values, before the per-vertex arrays were cast to float32.
        """
        stats = self._stats or {"patd": _stats(self.patd), "pipatd": _stats(self.pipatd)}
        return {
            "patd": dict(stats["patd"]),
            "pipatd": dict(stats["pipatd"]),
            "k": self.k,
            "gt_points": self.gt_points,
            "gt_kind": self.gt_kind,
            "flavour": self.flavour,
            "vertices": len(self.patd),
            "clipped": {"pred": self.clipped_pred, "gt": self.clipped_gt},
            "device": self.device,
            "engine": self.engine,
        }


def texture_distance(pred_vertices: np.ndarray, pred_colors: np.ndarray, gt: ColoredMesh,
                     k: int = DEFAULT_K, device=None, gt_samples: int | None = None,
                     rng: np.random.Generator | int | None = None, *, engine: str = "auto",
                     progress: Progress = NULL,
                     gt_points: tuple[np.ndarray, np.ndarray, str, int] | None = None) -> TextureDistance:
    """PATD and PIPATD of a coloured point set (a reconstruction's vertices) against a GT mesh.

    Both must be in the same space (e.g. the canonical space of ``avatex_core.canonical``). ``pred_colors``
    are sRGB in [0, 1] (float) or 0..255 (uint8 only). ``gt_samples``: None for the "vertices" flavour
    (the GT's vertices), N for the "dense" one (N surface samples). ``rng`` (Generator or seed; default
    seed 0) draws the GT surface samples, so the metric is deterministic. ``device``: None = CUDA when
    available else CPU.
    ``engine``: "numpy" (scipy KD-tree + numpy, the CPU path), "torch" (blocked k-NN + CIEDE2000 in
    torch float64 on ``device``; the CUDA path, also runnable on the CPU), or "auto" (torch on CUDA,
    numpy otherwise). Both engines give the same values. ``gt_points``: what :func:`gt_point_set` returned
    for this ``gt``, ``gt_samples`` and ``rng``, for a caller that scores many predictions against one GT.
    """
    def report(stage: str, fraction: float, **info) -> None:
        progress.check("texture distance cancelled")
        progress.report(stage, fraction, **info)

    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    vertices = _points(pred_vertices, "reconstructed vertices")
    colors, clipped_pred = _colors(pred_colors, len(vertices), "reconstructed colours")
    report("gt-points", 0.0)
    gt_xyz, gt_rgb, gt_kind, clipped_gt = gt_points if gt_points is not None else gt_point_set(
        gt, gt_samples, rng)
    if k > len(gt_xyz):
        raise InputError(f"k = {k} exceeds the {len(gt_xyz)} GT points")
    device_name, use_torch = _choose_engine(engine, device)
    report("nearest", 0.2, gt_points=len(gt_xyz), gt_kind=gt_kind)
    if use_torch:
        first, best, nearest = _run_torch(vertices, colors, gt_xyz, gt_rgb, k, device_name, report)
    else:
        first, best, nearest = _run_numpy(vertices, colors, gt_xyz, gt_rgb, k, report)
    report("done", 1.0)
    return TextureDistance(
        patd=first.astype(np.float32), pipatd=best.astype(np.float32), nearest=nearest, k=k,
        gt_points=len(gt_xyz), gt_kind=gt_kind, clipped_pred=clipped_pred, clipped_gt=clipped_gt,
        gt_positions=gt_xyz.astype(np.float32) if gt_kind == "surface-samples" else None,
        device=device_name, engine="torch" if use_torch else "numpy",
        _stats={"patd": _stats(first), "pipatd": _stats(best)},
    )


def gt_point_set(gt: ColoredMesh, gt_samples: int | None = None,
                 rng: np.random.Generator | int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, str, int]:
    """(positions (M, 3) float64, colours (M, 3) float64 clipped to [0, 1], kind, clipped count).

    ``gt_samples=None``: the GT's vertices with their colours (vertex colours, or the texture at each
    vertex's UV), kind "vertices". Else that many area-uniform surface samples with the colour field
    interpolated there, kind "surface-samples".
    """
    if not isinstance(gt, ColoredMesh):
        raise InputError(f"gt must be a ColoredMesh (backend.meshio.load_mesh), got {type(gt).__name__}")
    if not gt.has_colors:
        raise InputError("the GT mesh has neither vertex colours nor a texture: nothing to compare with")
    gt_vertices = _points(gt.vertices, "GT vertices")
    if gt_samples is None:
        what = "GT texture colours at the vertices" if gt.has_texture else "GT vertex colours"
        rgb, clipped = _colors(gt.per_vertex_colors(), len(gt_vertices), what)
        return gt_vertices, rgb, "vertices", clipped
    count = gt_samples
    if not isinstance(count, int | np.integer) or isinstance(count, bool) or count < 1:
        raise InputError(f"gt_samples must be a positive integer, got {gt_samples!r}")
    if len(gt.faces) == 0:
        raise InputError("the GT mesh has no faces to sample")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
        0 if rng is None else rng)
    points, face_index, bary = sample_surface(gt, int(count), generator)
    rgb, clipped = _colors(gt.colors_at(face_index, bary), len(points), "GT texture colours")
    return np.asarray(points, dtype=np.float64), rgb, "surface-samples", clipped


# ------------------------------------------------------------------------------------------ engines

def _run_numpy(vertices, colors, gt_xyz, gt_rgb, k, report):
    lab_pred = color.srgb_to_lab(colors)
    report("nearest", 0.3)
    _, idx = knn.knn_cpu(gt_xyz, vertices, k)
    report("colour-difference", 0.6)
    # Only GT points that are someone's neighbour need CIELAB: a fifth of 500k dense samples, typically.
    used, local = np.unique(idx, return_inverse=True)
    lab_gt = color.srgb_to_lab(gt_rgb[used])
    first, best = color.nearest_differences(lab_pred, lab_gt, local.reshape(idx.shape))
    return first, best, idx[:, 0].copy()


def _run_torch(vertices, colors, gt_xyz, gt_rgb, k, device_name, report):
    import torch

    dev = torch.device(device_name)
    f64 = torch.float64
    with torch.no_grad():
        q = torch.as_tensor(vertices, dtype=f64, device=dev)
        ref = torch.as_tensor(gt_xyz, dtype=f64, device=dev)
        _, idx = knn.knn_torch(ref, q, k)
        report("colour-difference", 0.6)
        lab_pred = color.srgb_to_lab_torch(torch.as_tensor(colors, dtype=f64, device=dev))
        lab_gt = color.srgb_to_lab_torch(torch.as_tensor(gt_rgb, dtype=f64, device=dev))
        cq = [*lab_pred.unbind(1), torch.hypot(lab_pred[:, 1], lab_pred[:, 2])]
        cr = [*lab_gt.unbind(1), torch.hypot(lab_gt[:, 1], lab_gt[:, 2])]
        n = len(q)
        first = torch.empty(n, dtype=f64, device=dev)
        best = torch.empty(n, dtype=f64, device=dev)
        rows = max(1, (1 << (22 if dev.type == "cuda" else 14)) // k)
        for start in range(0, n, rows):
            s = slice(start, start + rows)
            ii = idx[s]
            de = color.delta_e_torch(*(c[s, None] for c in cq), *(c[ii] for c in cr))
            first[s] = de[:, 0]
            best[s] = de.min(dim=1).values
        return (first.cpu().numpy(), best.cpu().numpy(), idx[:, 0].cpu().numpy().astype(np.int64))


def _choose_engine(engine: str, device) -> tuple[str, bool]:
    if engine not in ("auto", "numpy", "torch"):
        raise InputError(f"engine must be 'auto', 'numpy' or 'torch', not {engine!r}")
    if device is None:
        # engine="numpy" means the CPU path: no device was asked for, so none is implied.
        device = "cpu" if engine == "numpy" or not _cuda_available() else "cuda"
    name = str(device)
    is_cuda = name.startswith("cuda")
    if is_cuda:
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but CUDA is not available here")
    if engine == "numpy" and is_cuda:
        raise InputError("engine 'numpy' runs on the CPU only; use engine 'torch' or 'auto' for CUDA")
    use_torch = engine == "torch" or (engine == "auto" and is_cuda)
    return name, use_torch


def _cuda_available() -> bool:
    """CUDA availability without importing torch (~2 s) on machines that have no NVIDIA driver."""
    import os
    import sys

    no_driver = sys.platform.startswith("linux") and not os.path.exists("/proc/driver/nvidia/version")
    if "torch" not in sys.modules and no_driver:
        return False
    import torch

    return bool(torch.cuda.is_available())


# ------------------------------------------------------------------------------------- validation

def _points(points, what: str) -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InputError(f"{what} must be an (N, 3) array, got shape {arr.shape}")
    if len(arr) == 0:
        raise InputError(f"{what}: empty")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr).all(axis=1)).sum())
        raise InputError(f"{what}: {bad} point(s) have NaN or infinite coordinates")
    return arr


def _colors(colors, count: int, what: str) -> tuple[np.ndarray, int]:
    """float64 sRGB (count, 3) clipped to [0, 1], and how many components were clipped."""
    arr = np.asarray(colors)
    if arr.ndim != 2 or arr.shape[1] not in (3, 4):
        raise InputError(f"{what} must be an (N, 3) array (RGB), got shape {arr.shape}")
    if len(arr) != count:
        raise InputError(f"{what}: {len(arr)} colours for {count} points")
    arr = arr[:, :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0, 0
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr).all(axis=1)).sum())
        raise InputError(f"{what}: {bad} colour(s) are NaN or infinite")
    lo, hi = float(arr.min()), float(arr.max())
    if hi > 1.5:
        hint = (" — they look like 0..255 values; divide by 255 (or pass uint8)" if hi <= 255.0
                else "")
        raise InputError(f"{what} must be sRGB floats in [0, 1], but the largest is {hi:g}{hint}")
    if lo < -0.5:
        hint = " — they look like [-1, 1] values; map them with c * 0.5 + 0.5" if lo >= -1.0 else ""
        raise InputError(f"{what} must be sRGB floats in [0, 1], but the smallest is {lo:g}{hint}")
    outside = int(np.count_nonzero((arr < 0.0) | (arr > 1.0)))
    if outside:
        arr = np.clip(arr, 0.0, 1.0)
    return arr, outside


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90))}
