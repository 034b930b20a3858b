"""Validation during training: PATD / PIPATD of the colour net on held-out (test-split) subjects.

Two modes (``val_mode``):

* ``gt-vertices`` (default): encode a test view and query the colour net at the GT mesh's vertices
  (canonical space, the view's calib), then score those colours with
  :func:`backend.metrics.texture_distance` against the GT. This is PATD with the reconstructed geometry
  replaced by the true one: it isolates what colour training changes, costs one encode plus one query
  (no marching cubes), and stays meaningful while the geometry net is still poor (a small model
  trained from scratch) -- a reconstruction-based PATD would then mostly measure geometry error.
* ``recon``: full single-image reconstruction at ``val_resolution`` (:func:`backend.recon.reconstruct`),
  scored the same way against the GT mesh brought into the view's frame; what the paper's table
  measures, and what to use when fine-tuning an official model whose geometry is good.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avatex_core.canonical import view_rotation
from backend.meshio import ColoredMesh
from backend.models import PIFu
from backend.train.config import TrainConfig
from backend.train.data import Item, image_tensors
from backend.train.source import DataSource

QUERY_CHUNK = 20_000


def validation_items(source: DataSource, cfg: TrainConfig) -> list[Item]:
    """(subject, view, level) of the test split used for validation; empty when there is no test split."""
    subjects = sorted(source.subjects("test"))
    if cfg.val_subjects is not None:
        subjects = subjects[:cfg.val_subjects]
    levels = cfg.val_levels or cfg.levels or source.levels()
    items = []
    for sid in subjects:
        views = source.views(sid)
        for vi in cfg.val_views:
            if 0 <= vi < len(views):
                items.extend((sid, views[vi], lv) for lv in levels)
    return items


@dataclass
class _Subject:
    """A validation subject's GT, prepared once per run: the mesh, the vertices queried and the GT point
    set PATD is measured against (the same for every level and every pass)."""

    mesh: ColoredMesh
    vertices: np.ndarray
    gt_samples: int | None
    gt_points: tuple[np.ndarray, np.ndarray, str, int]

    @classmethod
    def load(cls, source: DataSource, sid: str, cfg: TrainConfig) -> _Subject:
        from backend.metrics.patd import gt_point_set

        mesh = source.mesh(sid)
        verts = np.asarray(mesh.vertices, dtype=np.float64)
        if len(verts) > cfg.val_max_vertices:
            rng = np.random.default_rng([cfg.seed, 0xA1])
            verts = verts[np.sort(rng.choice(len(verts), cfg.val_max_vertices, replace=False))]
        gt_samples = None if (mesh.vertex_colors is not None and not mesh.has_texture) else cfg.val_gt_samples
        return cls(mesh=mesh, vertices=verts, gt_samples=gt_samples,
                   gt_points=gt_point_set(mesh, gt_samples, None))


@torch.no_grad()
def query_colors(model: PIFu, image: torch.Tensor, calib: torch.Tensor, points: np.ndarray) -> np.ndarray:
    """sRGB colours (N, 3) in [0, 1] predicted at canonical ``points`` for one encoded view."""
    dev = model.device
    model.net_g.filter(image[None].to(dev))
    model.net_c.filter(image[None].to(dev))
    model.net_c.attach(model.net_g.get_im_feat())
    calib = calib[None].to(dev)
    out = []
    for s in range(0, len(points), QUERY_CHUNK):
        p = torch.as_tensor(points[s:s + QUERY_CHUNK].T, dtype=torch.float32, device=dev)[None]
        out.append(model.net_c.query(p, calib)[0].T.float().cpu())
    rgb = torch.cat(out).numpy() * 0.5 + 0.5
    return np.clip(rgb, 0.0, 1.0)


def validate(model: PIFu, source: DataSource, items: list[Item], cfg: TrainConfig,
             subjects: dict[str, _Subject] | None = None) -> dict:
    """Mean PATD / PIPATD over ``items`` (and per level). The model is left in eval mode; the caller
    restores train mode. ``subjects``: a dict the caller keeps between passes, so each subject's GT is
    loaded and sampled once per run, not once per pass and level."""
    from backend.metrics import texture_distance

    model.eval()
    subjects = {} if subjects is None else subjects
    rows: list[tuple[str, float, float]] = []
    for sid, view, level in items:
        if sid not in subjects:
            subjects[sid] = _Subject.load(source, sid, cfg)
        subj = subjects[sid]
        rgba = source.rgba(sid, view, level)
        calib = np.asarray(source.calib(sid, view), dtype=np.float64)
        gt_samples = subj.gt_samples
        if cfg.val_mode == "recon":
            recon = reconstruct_in_view(model, rgba, cfg.val_resolution)
            model.eval()
            if recon is None:
                continue
            verts, colors = recon
            # The GT rotated into the view's frame (y up: the calib without its y flip).
            rot = _view_frame(calib)
            gt = ColoredMesh(vertices=subj.mesh.vertices @ rot.T, faces=subj.mesh.faces,
                             vertex_colors=subj.mesh.vertex_colors, uv=subj.mesh.uv,
                             textures=subj.mesh.textures, face_material=subj.mesh.face_material)
            td = texture_distance(verts, colors, gt, gt_samples=gt_samples, engine="numpy")  # rotated GT
        else:
            image, _ = image_tensors(rgba, model.config.load_size)
            colors = query_colors(model, image, torch.as_tensor(calib, dtype=torch.float32), subj.vertices)
            td = texture_distance(subj.vertices, colors, subj.mesh, gt_samples=gt_samples, engine="numpy",
                                  gt_points=subj.gt_points)
        s = td.summary()
        rows.append((level, float(s["patd"]["mean"]), float(s["pipatd"]["mean"])))
    if not rows:
        return {}
    out: dict = {"patd": float(np.mean([r[1] for r in rows])), "pipatd": float(np.mean([r[2] for r in rows])),
                 "items": len(rows)}
    for level in sorted({r[0] for r in rows}):
        sel = [r for r in rows if r[0] == level]
        out[f"patd/{level}"] = float(np.mean([r[1] for r in sel]))
        out[f"pipatd/{level}"] = float(np.mean([r[2] for r in sel]))
    return out


def reconstruct_in_view(model: PIFu, rgba: np.ndarray, resolution: int
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """Reconstruct a view's image; (vertices in the view's frame, colours), or None for an empty mesh."""
    from backend.recon import reconstruct

    rec = reconstruct(model, rgba[..., :3], rgba[..., 3], resolution=resolution, device=model.device)
    if len(rec.vertices) == 0:
        return None
    crop = rec.stats["crop"]
    return (recon_to_view(rec.vertices, (crop["top"], crop["left"], crop["side"]), rgba.shape[:2],
                          model.config.load_size), rec.colors)


def recon_to_view(vertices: np.ndarray, crop: tuple[int, int, int], image_hw: tuple[int, int],
                  size: int) -> np.ndarray:
    """Map reconstruction vertices from the framed image's normalised space back to the source view's.

    ``reconstruct`` re-frames its input (``backend.recon.framing``: a square ``crop = (top, left, side)``
    of the source resized to ``size``). Normalised coordinates put u = +-1 on pixel centres; PIL's
    resize maps output pixel p to source pixel (p + 0.5) * side / size - 0.5; z scales like x.
    """
    top, left, side = crop
    h, w = image_hw
    k = side / size
    v = np.asarray(vertices, dtype=np.float64)

    def to_source(u: np.ndarray, start: float) -> np.ndarray:
        return start + ((u + 1.0) * 0.5 * (size - 1) + 0.5) * k - 0.5

    col = to_source(v[:, 0], left)
    row = to_source(-v[:, 1], top)
    out = np.empty_like(v)
    out[:, 0] = col / (w - 1) * 2.0 - 1.0
    out[:, 1] = -(row / (h - 1) * 2.0 - 1.0)
    out[:, 2] = v[:, 2] * k * (size - 1) / (w - 1)
    return out


def _view_frame(calib: np.ndarray) -> np.ndarray:
    """Rotation from canonical space to the view's y-up frame (the calib without its y flip)."""
    rot = np.diag([1.0, -1.0, 1.0]) @ np.asarray(calib, dtype=np.float64)[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
        rot = view_rotation(0.0)
    return rot
