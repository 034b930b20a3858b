"""Render one subject: import once, then change only camera and light per image, committing view by view.

Per view: the albedo image, the front and back normal maps when the settings ask for them, one image
per level, then ``view.json`` (the commit marker). Every image
is rendered to a temporary name beside its final name and renamed when complete, so a killed run never
leaves a file that a later run trusts; the next run skips views whose record is complete and re-renders
the rest (the per-image seeds make the result the same as an uninterrupted run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from avatex_core import atomic, canonical
from avatex_core import dataset_layout as layout
from avatex_core.lighting import image_seed, keep_clear_of_subject, sample_light
from avatex_core.progress import NULL, Progress
from avatex_core.render_settings import RenderSettings, View

from . import gtmesh, materials
from .scene import SceneRig, bundled_environments, camera_matrix, render_region
from .subjects import Subject, extract_gt, load_subject, reset_scene

Emit = Callable[[dict[str, Any]], None]


def subject_files_complete(sdir: Path) -> bool:
    meta = layout.read_json(sdir / layout.SUBJECT_JSON)
    if meta is None or meta.get("format_version") != layout.FORMAT_VERSION:
        return False
    return all((sdir / name).is_file() for name in meta.get("mesh", {}).get("files", []))


def write_subject_files(sdir: Path, subject: Subject, rig: materials.MaterialRig) -> dict[str, Any]:
    """GT mesh (+ textures) first, then ``subject.json`` as the subject's commit marker."""
    sdir.mkdir(parents=True, exist_ok=True)
    layout.remove_temporaries(sdir)
    gt = extract_gt(subject, rig)
    if gt.vertex_colors is not None:
        files = ["mesh.ply"]
        gtmesh.write_ply(sdir / files[0], gt.vertices, gt.faces, gt.vertex_colors)
        kind = "vertex"
    else:
        files = gtmesh.write_obj(sdir, "mesh", gt)
        kind = "texture"
    can = np.asarray(gt.vertices, dtype=np.float64)
    meta = {
        "format": layout.FORMAT, "format_version": layout.FORMAT_VERSION, "subject": subject.sid,
        "source": str(subject.source), "normalization": subject.normalization.to_dict(),
        "source_from_blender": subject.source_from_blender.tolist(),
        "mesh": {"file": files[0], "files": files, "colors": kind, "vertices": int(len(gt.vertices)),
                 "faces": int(len(gt.faces)), "textures": len(gt.textures)},
        "source_vertices": subject.vertex_count, "source_faces": subject.face_count,
        "bbox_canonical": [can.min(axis=0).round(6).tolist(), can.max(axis=0).round(6).tolist()],
        "objects": sorted(ob.name for ob in subject.meshes),
        "materials": {name: {"kind": s.kind, "approximate": s.approximate,
                             "image": s.image.name if s.image is not None else None,
                             "attribute": s.attribute or None}
                      for name, s in rig.sources.items()},
        "notes": gt.notes,
        "hygiene": subject.hygiene or {"counts": {}, "actions": [], "objects": {}},
    }
    atomic.write_json(sdir / layout.SUBJECT_JSON, meta)
    return meta


def add_instance_anchors(scene, meshes) -> None:
    """Give every unmodified subject mesh a second, invisible user so that Cycles instances it.

    Cycles (4.x) rebuilds the whole flat scene BVH whenever any object moves, and the point light is an
    object in it: every image paid a full BVH build (0.7 s for a 650k-triangle scan). An instanced mesh
    keeps its own BVH and only the small top level is rebuilt. The anchor is a microscopic copy far
    outside the scene (no ray reaches it; pixels unchanged, checked by a test).
    """
    for ob in meshes:
        if ob.modifiers:  # evaluated geometry differs per object: no instancing to gain
            continue
        anchor = bpy.data.objects.new(f"avatex_anchor_{ob.name}", ob.data)
        scene.collection.objects.link(anchor)
        anchor.location = (1.0e4, 1.0e4, -1.0e4)
        anchor.scale = (1.0e-6, 1.0e-6, 1.0e-6)


class SubjectRenderer:
    """A subject loaded into a scene, ready to render any view and light of the dataset's settings."""

    def __init__(self, sid: str, source: Path, settings: RenderSettings) -> None:
        self.sid = sid
        self.settings = settings
        scene = reset_scene()
        self.subject = load_subject(sid, source, settings.up)
        self.materials = materials.prepare(self.subject.meshes)
        self.rig = SceneRig(scene, settings, self.materials)
        self.environments = bundled_environments(self.rig.hdri_dir)
        if settings.engine == "cycles":
            add_instance_anchors(scene, self.subject.meshes)
        self._cached_view: View | None = None
        self._camera_vertices = np.zeros((0, 3), dtype=np.float32)
        self._region: tuple[int, int, int, int] | None = None

    def camera_vertices(self, view: View) -> np.ndarray:
        """The subject's vertices in the view's camera frame (x right, y up, z toward the camera)."""
        if self._cached_view != view:  # one view at a time: every image of a view reuses it
            rotation = canonical.view_rotation(view.yaw, view.pitch)
            self._camera_vertices = self.subject.canonical_vertices @ rotation.T.astype(np.float32)
            self._region = render_region(self.subject.canonical_vertices, view, self.settings.resolution)
            self._cached_view = view
        return self._camera_vertices

    def region(self, view: View) -> tuple[int, int, int, int] | None:
        """Pixel box that is path traced for this view (None: the whole frame)."""
        self.camera_vertices(view)
        return self._region

    def render_albedo(self, view: View, path: Path, seed: int) -> float:
        self.rig.set_view(view, self.region(view))
        self.materials.set_albedo(True)
        self.rig.set_samples(albedo=True)
        with atomic.atomic_path(path) as tmp:
            return self.rig.render(tmp, seed)

    def render_normals(self, view: View, front: Path, back: Path, seed: int) -> float:
        """Camera-space normal maps: the view's, and the one seen from behind (yaw + 180°, pitch
        mirrored), written as rendered; docs/dataset.md gives the mapping into the front frame."""
        behind = View(view.index, (view.yaw + 180.0) % 360.0, -view.pitch)
        self.materials.set_albedo(True)
        self.materials.set_normals(True)
        self.rig.set_samples(albedo=True)
        seconds = 0.0
        try:
            for v, path in ((view, front), (behind, back)):
                self.rig.set_view(v, self.region(v))
                with atomic.atomic_path(path) as tmp:
                    seconds += self.rig.render(tmp, seed)
        finally:
            self.materials.set_normals(False)
        return seconds

    def render_lit(self, view: View, light: dict[str, Any], path: Path, seed: int) -> tuple[float, dict]:
        self.rig.set_view(view, self.region(view))
        self.materials.set_albedo(False)
        self.rig.set_samples(albedo=False)
        derived = self.rig.lights.apply(light, view)
        with atomic.atomic_path(path) as tmp:
            return self.rig.render(tmp, seed), derived

    def render_view(self, root: Path, view: View, emit: Emit, identity_hash: str) -> dict[str, Any]:
        """Render and commit one view (albedo + every level + record)."""
        s = self.settings
        vdir = layout.view_dir(root, self.sid, view.name)
        vdir.mkdir(parents=True, exist_ok=True)
        layout.remove_temporaries(vdir)
        t0 = time.perf_counter()
        seconds = {}
        albedo_seed = image_seed(s.seed, self.sid, view.index, layout.ALBEDO)
        albedo_file = layout.image_name(layout.ALBEDO)
        seconds[layout.ALBEDO] = self.render_albedo(view, vdir / albedo_file, albedo_seed)
        emit({"event": "image", "subject": self.sid, "view": view.index, "level": layout.ALBEDO,
              "seconds": round(seconds[layout.ALBEDO], 4)})
        normals = None
        if s.normals:
            normals = {"front": layout.image_name(layout.NORMALS_FRONT),
                       "back": layout.image_name(layout.NORMALS_BACK)}
            seconds["normals"] = self.render_normals(view, vdir / normals["front"], vdir / normals["back"],
                                                     albedo_seed)
            emit({"event": "image", "subject": self.sid, "view": view.index, "level": "normals",
                  "seconds": round(seconds["normals"], 4)})
        images = {}
        for level in s.levels:
            seed = image_seed(s.seed, self.sid, view.index, level)
            light = keep_clear_of_subject(sample_light(s.level_defs[level], seed, self.environments),
                                          self.camera_vertices(view))
            name = layout.image_name(level)
            seconds[level], derived = self.render_lit(view, light, vdir / name, seed)
            images[level] = {"file": name, "seed": seed, "light": light, "blender": derived}
            emit({"event": "image", "subject": self.sid, "view": view.index, "level": level,
                  "seconds": round(seconds[level], 4)})
        record = {
            "format": layout.FORMAT, "format_version": layout.FORMAT_VERSION, "settings_hash": identity_hash,
            "subject": self.sid, "view": view.index, "name": view.name, "yaw": view.yaw, "pitch": view.pitch,
            "resolution": s.resolution,
            "calib": canonical.calib_for_view(view.yaw, view.pitch).tolist(),
            "camera": {"ortho_scale": canonical.ortho_scale(s.resolution),
                       "blender_matrix_world": camera_matrix(view).round(9).tolist(),
                       "render_region": list(region) if (region := self.region(view)) else None},
            "albedo": {"file": albedo_file, "seed": albedo_seed},
            **({"normals": normals} if normals else {}),
            "images": images,
            "render": {**self.rig.info, "render_seconds": {k: round(v, 4) for k, v in seconds.items()},
                       "wall_seconds": round(time.perf_counter() - t0, 4)},
        }
        atomic.write_json(vdir / layout.VIEW_JSON, record)
        return record


def render_subject(root: Path, sid: str, source: Path, settings: RenderSettings, views: list[View], *,
                   write_subject: bool, emit: Emit, progress: Progress = NULL) -> dict[str, Any]:
    """Render the unfinished ``views`` of one subject; returns counts and timings.

    Cancelling ``progress`` stops between views (:class:`avatex_core.progress.Cancelled`)."""
    root = Path(root)
    ihash = layout.identity_hash(settings.identity())
    sdir = layout.subject_dir(root, sid)
    pending = [v for v in views
               if not layout.view_finished(layout.view_dir(root, sid, v.name), settings.levels, ihash)]
    if write_subject:  # the one owner of the subject's files clears what a killed writer left
        layout.remove_temporaries(sdir)
    need_subject = write_subject and not subject_files_complete(sdir)
    stats = {"subject": sid, "views": len(views), "skipped_views": len(views) - len(pending),
             "rendered_views": 0, "rendered_images": 0, "render_seconds": 0.0, "wall_seconds": 0.0}
    if not pending and not need_subject:
        return stats
    t0 = time.perf_counter()
    renderer = SubjectRenderer(sid, source, settings)
    if need_subject:
        write_subject_files(sdir, renderer.subject, renderer.materials)
    for view in pending:
        progress.check(f"stopped before view {view.name} of {sid}")
        renderer.render_view(root, view, emit, ihash)
        stats["rendered_views"] += 1
        stats["rendered_images"] += 1 + len(settings.levels)
        emit({"event": "view_done", "subject": sid, "view": view.index})
    stats["repairs"] = (renderer.subject.hygiene or {}).get("actions", [])
    stats["render_seconds"] = round(renderer.rig.render_seconds, 4)
    stats["wall_seconds"] = round(time.perf_counter() - t0, 4)
    return stats


def rerender_image(root: Path, sid: str, view_name: str, level: str, out: Path) -> dict[str, Any]:
    """Render one stored image again from its records alone (manifest settings, subject, view record)."""
    root = Path(root)
    manifest = layout.read_json(root / layout.MANIFEST)
    if manifest is None:
        raise FileNotFoundError(f"{root / layout.MANIFEST} is missing or unreadable")
    settings = RenderSettings.from_dict(manifest["settings"])
    meta = layout.read_json(layout.subject_dir(root, sid) / layout.SUBJECT_JSON)
    record = layout.read_json(layout.view_dir(root, sid, view_name) / layout.VIEW_JSON)
    if meta is None or record is None:
        raise FileNotFoundError(f"no finished record for subject {sid!r} view {view_name!r}")
    view = View(int(record["view"]), float(record["yaw"]), float(record["pitch"]))
    renderer = SubjectRenderer(sid, Path(meta["source"]), settings)
    if level == layout.ALBEDO:
        renderer.render_albedo(view, Path(out), int(record["albedo"]["seed"]))
        return record["albedo"]
    entry = record["images"][level]
    renderer.render_lit(view, entry["light"], Path(out), int(entry["seed"]))
    return entry


def blender_version() -> str:
    return bpy.app.version_string
