"""Reconstruction: frame -> encode -> occupancy grid -> marching cubes -> vertex colours, from one image
(:func:`reconstruct`, framed around its mask) or from several calibrated views (:func:`reconstruct_views`,
PIFu's multi-view mode: each image as its calib sees it, fused inside the MLPs).

Speed (docs/models.md) comes from changes that leave the
network's maths alone: the surface-tracking coarse-to-fine grid of :mod:`backend.recon.grid` (about 6x
fewer network queries than the official octree; at R = 256, the dense mesh on every field tested),
the pre-projected MLP of :mod:`backend.models.surface_classifier` (about 40% fewer multiply-adds per
point, image features sampled once per pixel column), cache-sized query chunks, NHWC image encoding on
the CPU, and ``inference_mode``.
None of the official code's bugs are kept: every vertex is coloured (including the last, and meshes
under 10k vertices), and marching cubes uses skimage's current API.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from avatex_core import canonical
from avatex_core.progress import NULL, Progress
from backend.errors import InputError
from backend.models.blocks import index, orthogonal
from backend.models.device import resolve_device
from backend.models.pifu import PIFu
from backend.models.surface_classifier import SurfaceClassifier
from backend.recon.framing import FramedImage, calibrated_view, frame_subject
from backend.recon.grid import (
    GridSpec,
    evaluate_coarse_to_fine,
    evaluate_dense,
    evaluate_octree_official,
)
from backend.recon.mesh import extract_surface

if TYPE_CHECKING:
    from backend.recon.pifuhd import PIFuHDRecon

SCHEDULES = ("coarse-to-fine", "official", "dense")


@dataclass
class Reconstruction:
    """A coloured mesh in canonical space: float32 vertices (N, 3), int32 faces (F, 3) wound
    counter-clockwise seen from outside, float32 sRGB colours (N, 3) in [0, 1], and ``stats``."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    stats: dict = field(default_factory=dict)


def default_chunk(device: torch.device) -> int:
    """Points per network call: 1k on CPU, 64k on GPU (about 0.5 GB of pre-projected features per call).

    On the CPU each call samples 1,920 pre-projected floats per point (official MLP); measured on a
    2-core CPU at R = 256, the network costs 10.0-10.3 us per point at 1-1.5k points per call, 10.3 at
    2k, 12.5 at 4k and 15.3 at 8k (the sampled rows fall out of cache), and 10.8-11.3 at 512-768 (per-call
    overhead)."""
    return 1024 if device.type == "cpu" else 65536


def fast_pays(classifier: SurfaceClassifier, feature_pixels: int, points: int) -> bool:
    """Whether pre-projecting the feature map costs fewer multiply-adds than the plain MLP for
    ``points`` queries (break-even is ~17k points for both official MLPs)."""
    dims = classifier.filter_channels
    c0 = dims[0]
    plain = sum((dims[i] + (c0 if i and classifier.residual else 0)) * dims[i + 1]
                for i in range(len(dims) - 1))
    hidden = sum(dims[i] * dims[i + 1] for i in range(1, len(dims) - 1))
    width = classifier.projected_width()
    per_point_fast = hidden + 4 * width
    projection = width * (c0 - 1) * feature_pixels
    return points * (plain - per_point_fast) > projection


def reconstruct(model: PIFu | PIFuHDRecon, image: np.ndarray, mask: np.ndarray | None = None, *,
                resolution: int = 256, device: str | torch.device | None = None, progress: Progress = NULL,
                schedule: str = "coarse-to-fine",
                fast: bool | None = None, chunk: int | None = None) -> Reconstruction:
    """Reconstruct a coloured mesh from one image of a person with PIFu, or with PIFuHD wrapped by
    :func:`backend.recon.pifuhd.load_pifuhd_recon` (framed at its 1024² input).

    ``image``: uint8 (H, W, 3|4) (or float in [0, 1]); ``mask``: (H, W) bool / uint8 / float, or None to
    use the image's alpha (an :class:`InputError` says a mask is needed if there is neither).
    ``resolution``: grid cells per axis over the box [-1, 1]^3. ``device``: None = CUDA when available
    (the model is moved there). ``schedule``: ``coarse-to-fine`` (default), ``official`` (PIFu's octree,
    for comparison) or ``dense``. ``fast``: pre-projected MLP path (None = when it pays). ``chunk``:
    points per network call. Progress stages (each from 0 to 1): frame, encode, occupancy, mesh, color;
    ``progress`` cancelling raises :class:`~backend.errors.CancelledError` between network calls.
    """
    _check_options(schedule, resolution)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    dev = _prepare(model, device)
    chunk = chunk or default_chunk(dev)

    t = time.perf_counter()
    progress.report("frame", 0.0)
    framed = frame_subject(image, mask, size=model.config.load_size)
    seconds["frame"] = time.perf_counter() - t
    progress.report("frame", 1.0, crop=framed.crop)

    calib = canonical.calib_for_view(0.0)[None]
    rec = _evaluate(model, [framed], calib, dev, resolution, schedule, fast, chunk, progress, seconds,
                    t_start)
    # With the crop, these map the mesh back into the source image's frame (evaluation, the demo).
    rec.stats["crop"] = {"top": framed.crop[0], "left": framed.crop[1], "side": framed.crop[2]}
    rec.stats["image_size"] = [int(np.shape(image)[0]), int(np.shape(image)[1])]
    return rec


@dataclass(frozen=True)
class View:
    """One calibrated view: an image (uint8 (H, W, 3|4) or float in [0, 1]), its (4, 4) ``calib``
    (canonical points -> normalised image coordinates of *this* image, ``avatex_core.canonical``), and
    an optional mask (else the image's alpha)."""

    image: np.ndarray
    calib: np.ndarray
    mask: np.ndarray | None = None


def reconstruct_views(model: PIFu, views: Sequence[View | tuple], *, resolution: int = 256,
                      device: str | torch.device | None = None, progress: Progress = NULL,
                      schedule: str = "coarse-to-fine", fast: bool | None = None,
                      chunk: int | None = None) -> Reconstruction:
    """Reconstruct a coloured mesh from several calibrated views of one person (PIFu's multi-view mode).

    ``views``: :class:`View` objects or ``(image, mask, calib)`` tuples. Each image is used as its calib
    sees it (resized to the model's input, masked, never re-framed), so the mesh comes out in the space
    the calibs map from: for views of an avatex dataset, the subject's canonical space, where its ground
    truth lies. All views are encoded together and fused inside the MLPs (``backend.models.nets``);
    one view is the single-view network. Without a colour net, vertex colours come from the first
    view's image. Other arguments and progress stages as :func:`reconstruct`.
    """
    _check_options(schedule, resolution)
    if isinstance(views, View) or not isinstance(views, Sequence) or len(views) == 0:
        raise InputError("views must be a non-empty list of (image, mask, calib) views")
    views = [v if isinstance(v, View) else _view_of(v, k) for k, v in enumerate(views)]
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    progress.report("frame", 0.0)
    framed, calibs = [], []
    for k, view in enumerate(views):
        calibs.append(check_calib(view.calib, f"view {k}"))
        framed.append(calibrated_view(view.image, view.mask, model.config.load_size, f"view {k}"))
    seconds["frame"] = time.perf_counter() - t
    progress.report("frame", 1.0, views=len(views))
    dev = _prepare(model, device)
    rec = _evaluate(model, framed, np.stack(calibs), dev, resolution, schedule, fast,
                    chunk or default_chunk(dev), progress, seconds, t_start)
    rec.stats["image_sizes"] = [[int(np.shape(v.image)[0]), int(np.shape(v.image)[1])] for v in views]
    return rec


def _view_of(view: tuple, k: int) -> View:
    if not isinstance(view, tuple | list) or len(view) != 3:
        raise InputError(f"view {k} must be a View or an (image, mask, calib) tuple")
    image, mask, calib = view
    return View(image=image, calib=calib, mask=mask)


def check_calib(calib: object, what: str = "calib") -> np.ndarray:
    """``calib`` as a float32 (4, 4) array, or an :class:`InputError` in one line saying what is wrong
    (``avatex_core.canonical.calib_problem``)."""
    problem = canonical.calib_problem(calib)
    if problem is not None:
        raise InputError(f"{what}: {problem}")
    return np.asarray(calib, dtype=np.float32)


def _check_options(schedule: str, resolution: object) -> None:
    if schedule not in SCHEDULES:
        raise InputError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not isinstance(resolution, int) or resolution < 8:
        raise InputError(f"resolution must be an integer >= 8, got {resolution!r}")


def _prepare(model: PIFu, device: str | torch.device | None) -> torch.device:
    dev = resolve_device(device)
    if model.device != dev:
        model.to(dev)
    return dev


def _evaluate(model: PIFu, framed: list[FramedImage], calibs: np.ndarray, dev: torch.device, resolution: int,
              schedule: str, fast: bool | None, chunk: int, progress: Progress, seconds: dict[str, float],
              t_start: float) -> Reconstruction:
    """Encode the views, in eval mode and ``inference_mode``, and run the grid, mesh and colours."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return _run(model, framed, calibs, dev, resolution, schedule, fast, chunk, progress, seconds,
                        t_start)
    finally:
        model.train(was_training)


def _run(model: PIFu, framed: list[FramedImage], calibs: np.ndarray, dev: torch.device, resolution: int,
         schedule: str, fast: bool | None, chunk: int, progress: Progress, seconds: dict[str, float],
         t_start: float) -> Reconstruction:
    progress.check("reconstruction cancelled")
    t = time.perf_counter()
    progress.report("encode", 0.0)
    images = framed[0].network_input() if len(framed) == 1 else np.concatenate([f.network_input()
                                                                                 for f in framed])
    model.encode(torch.from_numpy(images).to(dev))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds["encode"] = time.perf_counter() - t
    progress.report("encode", 1.0)

    calib = torch.from_numpy(calibs).float().to(dev)
    spec = GridSpec(resolution, canonical.BOX_MIN, canonical.BOX_MAX)
    feature_pixels = model.config.feature_size ** 2
    expected_points = (resolution // 8 + 1) ** 3 + 2 * resolution ** 2  # R = 256 body: 155k measured
    if not isinstance(model, PIFu):   # PIFuHD (backend.recon.pifuhd) has no pre-projected path
        fast_g = False
    else:
        fast_g = fast if fast is not None else fast_pays(model.net_g.surface_classifier, feature_pixels,
                                                         expected_points)

    def occupancy(points: np.ndarray) -> np.ndarray:
        pts = torch.from_numpy(points).to(dev).t().unsqueeze(0)
        return model.query_occupancy(pts, calib, fast=fast_g)[0, 0].float().cpu().numpy()

    t = time.perf_counter()
    progress.report("occupancy", 0.0)
    if schedule == "coarse-to-fine":
        grid = evaluate_coarse_to_fine(occupancy, spec, batch_size=chunk, progress=progress)
    elif schedule == "official":
        grid = evaluate_octree_official(occupancy, spec, batch_size=chunk, progress=progress)
    else:
        grid = evaluate_dense(occupancy, spec, batch_size=chunk, progress=progress)
    seconds["occupancy"] = time.perf_counter() - t
    progress.report("occupancy", 1.0, points=grid.points_evaluated)

    progress.check("reconstruction cancelled")
    t = time.perf_counter()
    progress.report("mesh", 0.0)
    vertices, faces = extract_surface(grid.volume, spec, 0.5)
    seconds["marching_cubes"] = time.perf_counter() - t
    progress.report("mesh", 1.0, vertices=len(vertices), faces=len(faces))

    t = time.perf_counter()
    colors, color_source, fast_c = _vertex_colors(model, framed[0], vertices, calib, dev, fast, chunk,
                                                  progress)
    seconds["color"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_start
    stats = {
        "resolution": resolution,
        "schedule": schedule,
        "grid_points": int(grid.volume.size),
        "points_evaluated": int(grid.points_evaluated),
        "levels": grid.levels,
        "vertices": int(len(vertices)),
        "faces": int(len(faces)),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "device": str(dev),
        "fast_query": {"occupancy": bool(fast_g), "color": bool(fast_c)},
        "color_source": color_source,
        "views": len(framed),
        "input_size": int(model.config.load_size),
    }
    return Reconstruction(vertices, faces, colors, stats)


def _vertex_colors(model: PIFu, framed: FramedImage, vertices: np.ndarray, calib: torch.Tensor,
                   dev: torch.device, fast: bool | None, chunk: int,
                   progress: Progress) -> tuple[np.ndarray, str, bool]:
    """sRGB colour of every vertex (all of them, in chunks): the colour net's ``0.5 * c + 0.5``, or
    without a colour net the (first) input image at the vertex's projection (official ``gen_mesh``)."""
    n = len(vertices)
    out = np.empty((n, 3), dtype=np.float32)
    progress.report("color", 0.0)
    if model.net_c is None:
        image = torch.from_numpy(framed.rgb.transpose(2, 0, 1)[None].copy()).to(dev)
        query = lambda pts: index(image, orthogonal(pts, calib[:1])[:, :2])[0].t()  # noqa: E731
        source, fast_c = "image", False
    else:
        fast_c = fast if fast is not None else fast_pays(model.net_c.surface_classifier,
                                                         model.config.feature_size ** 2, n)
        query = lambda pts: (model.query_color(pts, calib, fast=fast_c)[0].t() * 0.5 + 0.5)  # noqa: E731
        source = "color-net"
    step = max(1, chunk)
    for start in range(0, n, step):
        progress.check("reconstruction cancelled")
        pts = torch.from_numpy(vertices[start:start + step]).to(dev).t().unsqueeze(0)
        out[start:start + step] = query(pts).float().cpu().numpy()
        progress.report("color", (start + step) / n, vertices=min(n, start + step))
    np.clip(out, 0.0, 1.0, out=out)
    return out, source, bool(fast_c)
