"""The work of an evaluation (:func:`execute`): load the models, resume what ``out_dir`` holds,
reconstruct each input once per geometry group, score, render and compare (:mod:`.run` has the protocol).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avatex_core import canonical
from avatex_core.progress import NULL, Progress
from backend.data.dataset import Dataset
from backend.errors import InputError
from backend.evaluation.framing import canonical_to_reconstruction, reconstruction_to_canonical
from backend.evaluation.models import LoadedModel, group_by_geometry, load_model, unique_slugs
from backend.evaluation.plan import TEXTURE_GT_SAMPLES, EvalConfig, EvalPlan
from backend.evaluation.render import run_render_job, write_render_mesh
from backend.evaluation.result import Evaluation, load_evaluation
from backend.evaluation.views import compare_renders, novel_views
from backend.meshio import ColoredMesh, save_mesh
from backend.models import PIFu


@torch.inference_mode()
def color_vertices(model: PIFu, framed, vertices: np.ndarray, *, geometry_feature: torch.Tensor | None = None,
                   chunk: int | None = None) -> np.ndarray:
    """sRGB colours (N, 3) of ``model``'s colour net at mesh vertices given in the framed image's space.

    ``framed`` is the :class:`backend.recon.framing.FramedImage` the mesh was reconstructed from. With
    ``geometry_feature`` (the last-stack feature of an identical geometry net, already computed for this
    image) only the colour net's filter runs; otherwise both nets encode the image. The query is the one
    ``reconstruct`` makes (calib ``diag(1, -1, 1, 1)``, pre-projected MLP where it pays).
    """
    from backend.recon.pipeline import default_chunk, fast_pays

    dev = model.device
    model.eval()
    images = torch.from_numpy(framed.network_input()).to(dev)
    if geometry_feature is None:
        model.encode(images)
    else:
        model.net_c.filter(images)
        model.net_c.attach(geometry_feature.to(dev))
    calib = torch.from_numpy(canonical.calib_for_view(0.0)).float().unsqueeze(0).to(dev)
    n = len(vertices)
    fast = fast_pays(model.net_c.surface_classifier, model.config.feature_size ** 2, n)
    step = chunk or default_chunk(dev)
    out = np.empty((n, 3), dtype=np.float32)
    for start in range(0, n, step):
        pts = torch.from_numpy(np.ascontiguousarray(vertices[start:start + step], dtype=np.float32))
        rgb = model.query_color(pts.to(dev).t().unsqueeze(0), calib, fast=fast)[0].t() * 0.5 + 0.5
        out[start:start + step] = rgb.float().cpu().numpy()
    np.clip(out, 0.0, 1.0, out=out)
    return out


COLOR_ONLY_SAMPLES = 20_000
"""GT surface points at which the colour-only PATD queries each colour net (every k-th dense sample)."""


def color_only_patd(model: PIFu, framed, subj_dense: ColoredMesh, stats: dict, calib: np.ndarray, *,
                    geometry_feature: torch.Tensor | None = None, samples: int = COLOR_ONLY_SAMPLES) -> float:
    """Mean CIEDE2000 between the colour net queried *at the GT surface* and the GT colour there.

    A diagnostic beside PATD: the reconstructed surface's errors (a limb in the wrong place takes the
    colour of whatever GT point is nearest) drop out, so what remains is the colour net's own error.
    ``subj_dense`` is the dense GT point set (canonical); ``stats`` the reconstruction's framing.
    """
    from backend.metrics.color import ciede2000, srgb_to_lab

    step = max(1, len(subj_dense.vertices) // samples)
    points = subj_dense.vertices[::step][:samples]
    gt_rgb = subj_dense.per_vertex_colors()[::step][:samples]
    framed_points = canonical_to_reconstruction(points, stats, calib)
    colors = color_vertices(model, framed, framed_points, geometry_feature=geometry_feature)
    return float(np.mean(ciede2000(srgb_to_lab(colors), srgb_to_lab(gt_rgb))))


def cm_per_unit_for(normalization: canonical.Normalization) -> tuple[float | None, str | None]:
    """cm per canonical unit from a subject's normalisation, when its source unit can be told from its
    height (a standing person: 0.5-2.6 in metres, 50-260 in cm, 500-2600 in mm); else (None, None)."""
    from backend.metrics import cm_per_unit_from_normalization

    h = float(normalization.source_height)
    ranges = ((0.5, 2.6, 1.0, "m"), (50.0, 260.0, 0.01, "cm"), (500.0, 2600.0, 0.001, "mm"))
    for lo, hi, unit_m, name in ranges:
        if lo <= h <= hi:
            return cm_per_unit_from_normalization(normalization, unit_m), name
    return None, None


@dataclass
class _Subject:
    """A test subject's GT, prepared once: the mesh, the PATD point set, the cm scale, the views."""

    mesh: ColoredMesh
    points: ColoredMesh  # the GT's vertices with their colours, as a point set (the paper's PATD)
    dense: ColoredMesh  # GT surface samples with interpolated colours, as a point set (dense PATD)
    cm_per_unit: float | None
    source_unit: str | None


def _prepare_subject(ds: Dataset, sid: str, gt_samples: int | None) -> _Subject:
    from backend.metrics.patd import gt_point_set

    mesh = ds.gt_mesh(sid)
    sets = []
    for count in (None, gt_samples or TEXTURE_GT_SAMPLES):
        xyz, rgb, _, _ = gt_point_set(mesh, count, np.random.default_rng(0))
        sets.append(ColoredMesh(vertices=xyz, faces=np.zeros((0, 3), np.int64),
                                vertex_colors=rgb.astype(np.float32)))
    cm, unit = cm_per_unit_for(ds.normalization(sid))
    return _Subject(mesh=mesh, points=sets[0], dense=sets[1], cm_per_unit=cm, source_unit=unit)


def _model_identity(lm: LoadedModel) -> str:
    """Hash of both nets' weights (resume: an entry belongs to exactly these weights)."""
    h = hashlib.sha256(lm.geometry.encode())
    for key, tensor in lm.model.net_c.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}|{tuple(t.shape)}|".encode())
        h.update(t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def _item_key(model: str, sid: str, view: int, level: str) -> tuple[str, str, int, str]:
    return (model, sid, int(view), level)


def execute(the_plan: EvalPlan, progress: Progress = NULL) -> Evaluation:
    """Load the models, resume what ``out_dir`` holds, and compute what is left of ``the_plan``."""
    return _Execution(the_plan, progress).run()


class _Execution:
    """One :func:`execute` call: the loaded models, the entries so far, the work folder and the stats."""

    def __init__(self, the_plan: EvalPlan, progress: Progress) -> None:
        from backend.models.device import resolve_device

        self.t_start = time.perf_counter()
        self.plan, self.cfg, self.ds, self.progress = the_plan, the_plan.config, the_plan.dataset, progress
        self.device = resolve_device(self.cfg.device)
        self.entries: dict[tuple[str, str, int, str], dict] = {}
        self._subject: dict[str, _Subject] = {}

    # -- setup -------------------------------------------------------------------------------------
    def load(self) -> None:
        self.progress.report("load", 0.0, models=len(self.plan.models))
        self.loaded: list[LoadedModel] = []
        for name, path in self.plan.models.items():
            self.progress.check("evaluation cancelled")
            self.loaded.append(load_model(name, path, self.device))
            self.progress.report("load", 0.0, model=name)
        self.slugs = unique_slugs([m.name for m in self.loaded])
        self.groups = group_by_geometry(self.loaded)
        identities = {m.name: _model_identity(m) for m in self.loaded}
        self.model_info = {
            m.name: {"checkpoint": str(m.checkpoint.resolve()), "identity": identities[m.name],
                     "geometry": m.geometry, "folder": self.slugs[m.name],
                     "shares_geometry_with": [o.name for o in self.loaded
                                              if o.geometry == m.geometry and o.name != m.name],
                     "config": m.model.config.to_dict()} for m in self.loaded}
        self.out = Path(self.cfg.out_dir) if self.cfg.out_dir is not None else None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.entries = _resumable_entries(self.out / "evaluation.json", self.plan.settings, identities)
        self.stats: dict[str, Any] = {
            "reconstructions": 0, "color_queries": 0, "geometry_evaluations": 0, "renders": 0,
            "render_processes": 0, "resumed_items": len(self.entries), "skipped": list(self.plan.skipped),
            "seconds": {"load": round(time.perf_counter() - self.t_start, 3), "reconstruct": 0.0,
                        "color": 0.0, "texture": 0.0, "color_only": 0.0, "geometry": 0.0, "render": 0.0,
                        "image_metrics": 0.0},
            "groups": [[m.name for m in g] for g in self.groups], "device": str(self.device)}
        self.stats["lpips"] = _lpips_stats(self.cfg)

    # -- helpers -----------------------------------------------------------------------------------
    def save(self) -> Evaluation:
        ev = Evaluation(per_item=_ordered(self.entries, self.loaded, self.plan.inputs),
                        models=self.model_info, settings=self.plan.settings, stats=self.stats)
        if self.out is not None:
            ev.to_json(self.out / "evaluation.json")
        return ev

    def complete(self, entry: dict | None) -> bool:
        """Whether an entry needs nothing more (scored, and rendered when image metrics are on)."""
        if entry is None:
            return False
        return entry.get("error") is not None or not self.cfg.image_metrics \
            or entry.get("psnr_input") is not None or entry.get("image_error") is not None

    def subject(self, sid: str) -> _Subject:
        if sid not in self._subject:
            self._subject.clear()  # one subject's GT in memory at a time
            self._subject[sid] = _prepare_subject(self.ds, sid, self.cfg.gt_samples)
        return self._subject[sid]

    def share(self, group_index: int, phase: str, fraction: float) -> float:
        """Overall progress: each geometry group is an equal share; its renders take the last fifth."""
        recon_share = 0.8 if self.cfg.image_metrics else 1.0
        within = recon_share * fraction if phase == "reconstruct" else \
            recon_share + (1.0 - recon_share) * fraction
        return (group_index + within) / len(self.groups)

    # -- the work ----------------------------------------------------------------------------------
    def run(self) -> Evaluation:
        self.load()
        holder = tempfile.TemporaryDirectory(prefix="avatex-eval-") if self.out is None else None
        self.work = Path(holder.name) if holder is not None else self.out / ".work"
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            for g_index, group in enumerate(self.groups):
                self.run_group(g_index, group)
            seconds = self.stats["seconds"]
            seconds["total"] = round(time.perf_counter() - self.t_start, 3)
            for key in seconds:
                seconds[key] = round(seconds[key], 3)
            evaluation = self.save()
            if self.out is not None:  # the work folder only matters to a resumed run
                shutil.rmtree(self.work, ignore_errors=True)
            self.progress.report("done", 1.0, items=len(evaluation.per_item))
            return evaluation
        finally:
            if holder is not None:
                holder.cleanup()

    def run_group(self, g_index: int, group: list[LoadedModel]) -> None:
        """Reconstruct every input once for the group, score its models, then render what is pending."""
        inputs, cfg = self.plan.inputs, self.cfg
        for sid, view, level in inputs:
            for m in group:  # an unrendered entry whose mesh is gone (work folder deleted): redo it
                key = _item_key(m.name, sid, view, level)
                mesh = self.work / self.slugs[m.name] / sid / f"v{int(view):03d}_{level}.npz"
                if key in self.entries and not self.complete(self.entries[key]) and not mesh.is_file():
                    del self.entries[key]
        pending: list[tuple[LoadedModel, tuple[str, int, str]]] = []
        for i_input, (sid, view, level) in enumerate(inputs):
            todo = [m for m in group if _item_key(m.name, sid, view, level) not in self.entries]
            if todo:
                self.progress.check("evaluation cancelled")
                self.progress.report("reconstruct", self.share(g_index, "reconstruct", i_input / len(inputs)),
                                     subject=sid, view=view, level=level, models=[m.name for m in todo],
                                     input=i_input + 1, inputs=len(inputs), group=g_index + 1,
                                     groups=len(self.groups))
                self.entries.update(_evaluate_input(
                    group, todo, self.ds, self.subject(sid), sid, view, level, resolution=cfg.resolution,
                    k=cfg.k, device=self.device, geometry_samples=cfg.geometry_samples, work=self.work,
                    slugs=self.slugs, image_metrics=cfg.image_metrics, out=self.out,
                    keep_meshes=cfg.keep_meshes, stats=self.stats, progress=self.progress))
                self.save()
            pending += [(m, (sid, view, level)) for m in group if cfg.image_metrics
                        and not self.complete(self.entries.get(_item_key(m.name, sid, view, level)))]
        self.progress.report("reconstruct", self.share(g_index, "reconstruct", 1.0), group=g_index + 1)
        if pending:
            _render_and_compare(pending, self.entries, self.ds, work=self.work, slugs=self.slugs,
                                novel=cfg.novel_views, samples=self.plan.settings["render_samples"],
                                blender=cfg.blender, lpips=bool(cfg.lpips), device=self.device,
                                keep=cfg.keep_meshes and self.out is not None, out=self.out, stats=self.stats,
                                progress=self.progress.sub(self.share(g_index, "render", 0.0),
                                                           self.share(g_index, "render", 1.0)))
            self.save()


def _lpips_stats(cfg: EvalConfig) -> dict[str, Any]:
    if not cfg.image_metrics:
        return {"available": False, "reason": "image metrics off"}
    from backend.metrics.image import lpips_status

    status = lpips_status()
    return {"available": bool(status.available and cfg.lpips),
            "reason": status.reason if cfg.lpips else "not requested"}


def _ordered(entries: dict, loaded: list[LoadedModel], inputs: list[tuple[str, int, str]]) -> list[dict]:
    """Entries in a stable order: model, then subject / view / level as listed."""
    out = []
    for m in loaded:
        for sid, view, level in inputs:
            e = entries.get(_item_key(m.name, sid, view, level))
            if e is not None:
                out.append(e)
    return out


def _resumable_entries(path: Path, settings: dict, identities: dict[str, str]) -> dict:
    """Entries of an earlier run into the same folder that this run can keep."""
    if not path.is_file():
        return {}
    previous = load_evaluation(path)
    for key, value in settings.items():
        old = previous.settings.get(key)
        if old != value:
            raise InputError(f"{path} was made with {key} = {old!r}, this run asks for {value!r}; "
                             "use another output folder or delete that file to start over")
    kept = {}
    for e in previous.per_item:
        name = e.get("model")
        if name in identities and previous.models.get(name, {}).get("identity") == identities[name]:
            kept[_item_key(name, e["subject"], e["view"], e["level"])] = e
    return kept


def _evaluate_input(group: list[LoadedModel], todo: list[LoadedModel], ds: Dataset, subj: _Subject, sid: str,
                    view: int, level: str, *, resolution: int, k: int, device: torch.device,
                    geometry_samples: int, work: Path, slugs: dict[str, str], image_metrics: bool,
                    out: Path | None, keep_meshes: bool, stats: dict, progress: Progress
                    ) -> dict:
    """Reconstruct one input image once for a geometry group and score every model of ``todo``."""
    from backend.metrics import geometry_metrics, texture_distance
    from backend.recon import reconstruct
    from backend.recon.framing import frame_subject

    seconds = stats["seconds"]
    rgba = ds.image(sid, view, level)
    calib = ds.calib(sid, view)
    leader = todo[0]
    base = {"subject": sid, "view": int(view), "view_name": f"v{int(view):03d}", "level": level,
            "yaw": float(ds.record(sid, view)["yaw"]), "pitch": float(ds.record(sid, view)["pitch"]),
            "geometry_group": leader.geometry, "reconstructed_by": leader.name}
    t = time.perf_counter()
    try:
        rec = reconstruct(leader.model, rgba[..., :3], rgba[..., 3], resolution=resolution, device=device,
                          progress=progress.muted())
    except InputError as exc:  # e.g. a field that never crosses 0.5: no surface
        seconds["reconstruct"] += time.perf_counter() - t
        return {_item_key(m.name, sid, view, level): {"model": m.name, **base, "error": str(exc)}
                for m in todo}
    seconds["reconstruct"] += time.perf_counter() - t
    stats["reconstructions"] += 1
    size = leader.model.config.load_size
    vertices = reconstruction_to_canonical(rec.vertices, rec.stats, calib)
    faces = np.ascontiguousarray(rec.faces, dtype=np.int32)

    t = time.perf_counter()
    geo = geometry_metrics(vertices, faces, subj.mesh.vertices, subj.mesh.faces, samples=geometry_samples,
                           rng=np.random.default_rng(0), cm_per_unit=subj.cm_per_unit)
    seconds["geometry"] += time.perf_counter() - t
    stats["geometry_evaluations"] += 1
    geometry = {"chamfer": geo.chamfer, "pred_to_gt": geo.pred_to_gt, "gt_to_pred": geo.gt_to_pred,
                "normal_consistency": geo.normal_consistency, "geometry_samples": geo.samples,
                "cm_per_unit": geo.cm_per_unit, "source_unit": subj.source_unit,
                "chamfer_cm": geo.chamfer_cm, "pred_to_gt_cm": geo.pred_to_gt_cm,
                "gt_to_pred_cm": geo.gt_to_pred_cm}

    framed = frame_subject(rgba[..., :3], rgba[..., 3], size=size)
    results = {}
    for m in todo:
        if m is leader:
            colors = rec.colors
        else:
            progress.check("evaluation cancelled")
            t = time.perf_counter()
            colors = color_vertices(m.model, framed, rec.vertices,
                                    geometry_feature=leader.model.net_g.get_im_feat())
            seconds["color"] += time.perf_counter() - t
            stats["color_queries"] += 1
        t = time.perf_counter()
        td = texture_distance(vertices, colors, subj.points, k=k, device=device,
                              progress=progress.muted())
        dense = texture_distance(vertices, colors, subj.dense, k=k, device=device,
                                 progress=progress.muted())
        seconds["texture"] += time.perf_counter() - t
        t = time.perf_counter()
        color_only = color_only_patd(m.model, framed, subj.dense, rec.stats, calib,
                                     geometry_feature=leader.model.net_g.get_im_feat())
        seconds["color_only"] += time.perf_counter() - t
        # The dense point set stood in for the GT's surface.
        td = replace(td, dense=replace(dense, gt_kind="surface-samples"))
        s, sd = td.summary(), dense.summary()
        entry = {"model": m.name, **base,
                 "patd": s["patd"]["mean"], "pipatd": s["pipatd"]["mean"],
                 "patd_median": s["patd"]["median"], "patd_p90": s["patd"]["p90"],
                 "pipatd_median": s["pipatd"]["median"], "pipatd_p90": s["pipatd"]["p90"],
                 "patd_dense": sd["patd"]["mean"], "pipatd_dense": sd["pipatd"]["mean"],
                 "patd_dense_median": sd["patd"]["median"], "patd_dense_p90": sd["patd"]["p90"],
                 "pipatd_dense_median": sd["pipatd"]["median"], "pipatd_dense_p90": sd["pipatd"]["p90"],
                 "dense_samples": sd["gt_points"], "patd_color_only": color_only,
                 "k": s["k"], "gt_points": s["gt_points"], "gt_kind": s["gt_kind"],
                 "vertices": int(len(vertices)), "faces": int(len(faces)), **geometry,
                 "reconstruction_seconds": rec.stats["seconds"].get("total")}
        stem = f"{base['view_name']}_{level}"
        if image_metrics:
            write_render_mesh(work / slugs[m.name] / sid / f"{stem}.npz", vertices, faces, colors)
        if keep_meshes and out is not None:
            from backend.metrics.evaluate import write_per_vertex

            folder = out / slugs[m.name] / sid
            folder.mkdir(parents=True, exist_ok=True)
            save_mesh(folder / f"{stem}.ply", vertices, faces, colors)
            write_per_vertex(folder / f"{stem}.npz", td)
            entry["mesh"] = str(Path(slugs[m.name]) / sid / f"{stem}.ply")
            entry["errors"] = str(Path(slugs[m.name]) / sid / f"{stem}.npz")
        results[_item_key(m.name, sid, view, level)] = entry
    return results


def _render_and_compare(pending: list[tuple[LoadedModel, tuple[str, int, str]]], entries: dict, ds: Dataset,
                        *, work: Path, slugs: dict[str, str], novel: int,
                        samples: int, blender: str | None, lpips: bool, device: torch.device, keep: bool,
                        out: Path | None, stats: dict, progress: Progress) -> None:
    """Render every pending reconstruction of a group in one Blender process, then score the images."""
    from PIL import Image

    jobs, plans = [], []
    for m, (sid, view, level) in pending:
        stem = f"v{int(view):03d}_{level}"
        mesh_path = work / slugs[m.name] / sid / f"{stem}.npz"
        views_available = [(i, float(ds.record(sid, i)["yaw"]), float(ds.record(sid, i)["pitch"]))
                           for i in ds.views_of(sid)]
        chosen = [int(view)] + novel_views(views_available, int(view), novel)
        render_dir = (out if keep and out is not None else work) / slugs[m.name] / sid
        specs = []
        for i in chosen:
            rec = ds.record(sid, i)
            specs.append({"index": i, "yaw": float(rec["yaw"]), "pitch": float(rec["pitch"]),
                          "seed": int(rec["albedo"]["seed"]),
                          "out": str(render_dir / f"{stem}_render_v{i:03d}.png")})
        jobs.append({"mesh": str(mesh_path), "views": specs})
        plans.append((m, (sid, view, level), specs, mesh_path))
    if not jobs:
        return
    job = {"resolution": ds.resolution, "samples": int(samples),
           "device": "cpu" if device.type == "cpu" else "auto", "meshes": jobs}
    t = time.perf_counter()
    progress.report("render", 0.0, images=sum(len(j["views"]) for j in jobs))
    job_path = work / f"render-{len(list(work.glob('render-*.json')))}.json"
    final = run_render_job(job, job_path, blender=blender, log=work / "render.log",
                           progress=progress)
    stats["seconds"]["render"] += time.perf_counter() - t
    stats["render_processes"] += 1
    stats["renders"] += int(final.get("images", 0))
    t = time.perf_counter()
    for m, (sid, view, level), specs, mesh_path in plans:
        entry = entries[_item_key(m.name, sid, view, level)]
        pairs = []
        for spec in specs:
            with Image.open(spec["out"]) as im:
                pred = np.asarray(im.convert("RGBA"), dtype=np.uint8)
            pairs.append((pred, ds.albedo(sid, spec["index"])))
        try:
            result = compare_renders(pairs[0], pairs[1:], lpips=lpips, device=device)
        except InputError as exc:
            entry["image_error"] = str(exc)
            continue
        inp, nov = result["input"], result["novel"]
        per_view = inp["per_view"] + nov["per_view"]
        entry.update({
            "psnr_input": inp["psnr"], "ssim_input": inp["ssim"], "lpips_input": inp["lpips"],
            "psnr_novel": nov["psnr"], "ssim_novel": nov["ssim"], "lpips_novel": nov["lpips"],
            "psnr": float(np.mean([r["psnr"] for r in per_view])),
            "ssim": float(np.mean([r["ssim"] for r in per_view])),
            "novel_views": [s["index"] for s in specs[1:]],
            "per_view": [{"view": s["index"], **r} for s, r in zip(specs, per_view, strict=True)],
            "lpips_reason": None if result["lpips"]["available"] else result["lpips"]["reason"],
        })
        if keep:
            entry["renders"] = [str(Path(s["out"]).relative_to(out)) for s in specs]
        else:
            for s in specs:
                Path(s["out"]).unlink(missing_ok=True)
        mesh_path.unlink(missing_ok=True)
    stats["seconds"]["image_metrics"] += time.perf_counter() - t
