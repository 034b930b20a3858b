"""The server's operations: one table (:data:`OPERATIONS`) of plain handler functions.

A handler is ``handler(args, arrays, ctx) -> (result, arrays)``: ``args`` already validated against the
operation's :class:`~backend.server.schema.Arg` schema (defaults filled in), ``arrays`` read-only numpy
views of the received frames, ``ctx`` a :class:`~backend.server.jobs.Context` with ``progress``,
``should_stop``, ``job_progress``, ``device`` and ``resolve_path``. ``job=True`` operations run on a
worker thread and stream progress; the others are answered on the socket loop and must be quick.

Science handlers import the models, reconstruction, metrics and training code inside the function, so
the server starts (and answers ``hello``) without importing torch, and a part that is missing answers
``not_available`` instead of breaking the server.

This module holds the table and the reconstruct and evaluate operations; the administrative operations
are in :mod:`.ops_admin`, training in :mod:`.ops_train`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avatex_core.canonical import calib_problem
from backend.errors import AvatexError, InputError
from backend.images import MAX_PIXELS, read_image
from backend.server.jobs import Context, Job
from backend.server.ops_admin import (  # noqa: F401 - DEFER and NotReady are re-exported
    DEFER,
    NotReady,
    op_cancel,
    op_checkpoints_list,
    op_echo,
    op_hello,
    op_job_list,
    op_job_result,
    op_job_status,
    op_ping,
    op_shutdown,
    op_train_cancel,
    op_train_status,
)
from backend.server.ops_train import op_train, prepare_train
from backend.server.paths import check_output, write_output
from backend.server.schema import TRAIN_CONFIG, Arg, ArraySpec

log = logging.getLogger("avatex.server")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr")
MESH_OUT_SUFFIXES = (".ply", ".obj")
_TIMEOUT = Arg("float", minimum=1.0, maximum=30 * 86400.0,
               doc="stop the job (error 'timeout') after this many seconds")


class Forbidden(AvatexError):
    code = "forbidden"


@dataclass(frozen=True)
class Operation:
    """One row of the table.

    ``arrays=None`` accepts any arrays (protocol-level checks still apply). ``prepare`` runs on the
    socket loop before a job is queued — cheap checks (paths exist, arguments agree) so mistakes are
    answered at once — and returns the job's arguments, or an existing :class:`Job` it re-queued.
    ``requires`` lists modules whose absence makes the operation ``not_available``.
    """

    name: str
    handler: Callable[..., Any]
    doc: str
    args: dict[str, Arg] = field(default_factory=dict)
    arrays: dict[str, ArraySpec] | None = field(default_factory=dict)
    result: str = ""
    job: bool = False
    device: bool = False
    resumable: bool = False
    local_only: bool = False
    prepare: Callable[[dict, dict, Context], dict | Job] | None = None
    requires: tuple[str, ...] = ()

    def missing(self) -> str | None:
        """The first required module that is not installed, or None."""
        for module in self.requires:
            try:
                if importlib.util.find_spec(module) is None:
                    return module
            except (ImportError, ValueError):
                return module
        return None

    def describe(self) -> dict[str, Any]:
        missing = self.missing()
        return {"kind": "job" if self.job else "inline", "doc": self.doc, "result": self.result,
                "args": {k: a.to_dict() for k, a in self.args.items()},
                "arrays": None if self.arrays is None else {k: s.to_dict() for k, s in self.arrays.items()},
                "local_only": self.local_only, "available": missing is None,
                **({"missing": missing} if missing else {})}


# --------------------------------------------------------------------------------------------------
# reconstruct


class ModelCache:
    """Loaded models keyed by checkpoint files (real path, mtime, size) and device; LRU, thread-safe."""

    def __init__(self, capacity: int = 2):
        self.capacity = capacity
        self._models: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load()
            self._models[key] = model
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model


MODELS = ModelCache()


def _file_key(path: Path | None) -> tuple | None:
    if path is None:
        return None
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


MAX_VIEWS = 16
"""Calibrated views one reconstruct request may send (PIFu was trained with up to 8)."""


def _prepare_views(arrays: dict, args: dict) -> None:
    """The multi-view request: ``views`` (V images of one size) with ``calibs`` (one per view) and
    optionally ``masks``, instead of ``image``; V at most :data:`MAX_VIEWS`, all pixels together within
    :data:`MAX_PIXELS`."""
    if "views" not in arrays:
        raise InputError("reconstruct: 'calibs' and 'masks' go with the 'views' array (V images)")
    if "image" in arrays or args["image"] is not None or args["mask"] is not None or "mask" in arrays:
        raise InputError("reconstruct: give either 'views' (+ 'calibs') or 'image' (+ 'mask'), not both")
    if args.get("texture") is not None:
        raise InputError("reconstruct: 'texture' bakes from one image; send 'image' or drop 'texture'")
    v, height, width = arrays["views"].shape[:3]
    if not 1 <= v <= MAX_VIEWS:
        raise InputError(f"reconstruct: {v} views; send between 1 and {MAX_VIEWS}")
    if height < 1 or width < 1 or v * height * width > MAX_PIXELS:
        raise InputError(f"reconstruct: {v} views of {height} × {width} pixels; together they must have "
                         f"between 1 and {MAX_PIXELS:,} pixels")
    if "calibs" not in arrays or arrays["calibs"].shape[0] != v:
        got = arrays["calibs"].shape[0] if "calibs" in arrays else 0
        raise InputError(f"reconstruct: {v} views need {v} calibs (a 'calibs' array V × 4 × 4), got {got}")
    if "masks" in arrays and arrays["masks"].shape != (v, height, width):
        raise InputError(f"reconstruct: masks {list(arrays['masks'].shape)} and views "
                         f"{list(arrays['views'].shape[:3])} differ in size")
    for k, calib in enumerate(arrays["calibs"]):
        problem = calib_problem(calib)
        if problem is not None:
            raise InputError(f"reconstruct: view {k}: {problem}")


def prepare_reconstruct(args: dict, arrays: dict, ctx: Context) -> dict:
    if {"views", "calibs", "masks"} & set(arrays):
        _prepare_views(arrays, args)
    elif (args["image"] is None) == ("image" not in arrays):
        raise InputError("reconstruct: give the image either as the 'image' array (uint8 H×W×3/4) or as "
                         "the 'image' argument (a path under the server's roots), not both or neither")
    if args["mask"] is not None and "mask" in arrays:
        raise InputError("reconstruct: give the mask as an array or as a path, not both")
    if args["checkpoint"] is not None and (args["net_g"] or args["net_c"]):
        raise InputError("reconstruct: give either 'checkpoint' or 'net_g'/'net_c', not both")
    if args["model"] == "pifuhd":
        if args["net_g"] or args["net_c"] or args.get("texture") is not None:
            raise InputError("reconstruct: model 'pifuhd' takes 'checkpoint' (a pifuhd.pt) and optionally "
                             "'color_checkpoint', not 'net_g'/'net_c' or 'texture'")
        if args["checkpoint"] is None:   # the fetched weights (outside the roots by design); fail early
            from backend.weights import pifuhd_checkpoint

            pifuhd_checkpoint()
    elif args["color_checkpoint"] is not None:
        raise InputError("reconstruct: 'color_checkpoint' is for model 'pifuhd'")
    if args["net_c"] is not None and args["net_g"] is None:
        raise InputError("reconstruct: 'net_c' needs 'net_g' too")
    if args.get("weights") is not None and (args["checkpoint"] or args["net_g"] or args["net_c"]):
        raise InputError("reconstruct: give either 'weights' or 'checkpoint'/'net_g'/'net_c', not both")
    if args.get("weights") is not None and args["model"] == "pifuhd":
        raise InputError("reconstruct: 'weights': 'pifu' is for model 'pifu'; model 'pifuhd' without "
                         "'checkpoint' uses the fetched PIFuHD weights")
    if (args["checkpoint"] is None and args["net_g"] is None and args.get("weights") is None
            and args["model"] != "pifuhd"):
        raise InputError("reconstruct: no model given: pass 'checkpoint' (an avatex checkpoint), "
                         "'net_g' (+ 'net_c', the official PIFu files) or 'weights': 'pifu'")
    if args["model"] == "pifuhd" and {"views", "calibs", "masks"} & set(arrays):
        raise InputError("reconstruct: 'views' are PIFu's multi-view mode; model 'pifuhd' takes one image")
    for key in ("image", "mask", "checkpoint", "net_g", "net_c", "color_checkpoint"):
        if args[key] is not None:
            ctx.resolve_path(args[key], kind="file")
    if args["out"] is not None:
        suffixes = MESH_OUT_SUFFIXES if args.get("texture") is None else (".glb", ".obj")
        if os.path.splitext(args["out"])[1].lower() not in suffixes:
            raise InputError(f"reconstruct: 'out' must end in {' or '.join(suffixes)}"
                             + ("" if args.get("texture") is None else " with 'texture'"))
        check_output(ctx.resolve_path(args["out"], must_exist=False), args["overwrite"])
    for name in ("image", "mask"):
        if name in arrays:
            height, width = arrays[name].shape[:2]
            if height < 1 or width < 1 or height * width > MAX_PIXELS:
                raise InputError(f"reconstruct: the {name} array is {height} × {width} pixels; it must "
                                 f"have between 1 and {MAX_PIXELS:,} pixels")
    if "image" in arrays and "mask" in arrays and arrays["mask"].shape[:2] != arrays["image"].shape[:2]:
        raise InputError(f"reconstruct: mask {list(arrays['mask'].shape)} and image "
                         f"{list(arrays['image'].shape)} differ in size")
    return args


def op_reconstruct(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    from backend.models.checkpoint import load_models
    from backend.recon import reconstruct

    ctx.progress("loading", 0.0)
    # Handlers may write to their inputs; received frames are read-only, hence the copy.
    image = arrays.get("image")
    if image is None and "views" not in arrays:
        image = read_image(ctx.resolve_path(args["image"], kind="file"))
    elif image is not None:
        image = np.array(image)
    mask = arrays.get("mask")
    if mask is not None:
        mask = np.array(mask)
    elif args["mask"] is not None:
        mask = read_image(ctx.resolve_path(args["mask"], kind="file"), "mask")
    mask_info: dict = {"method": "given" if "masks" in arrays else "alpha"}
    mask_arrays: dict[str, np.ndarray] = {}
    if "views" not in arrays:
        mask, mask_info, mask_arrays = _auto_mask(image, mask, args)
    paths = {k: ctx.resolve_path(args[k], kind="file") if args[k] else None
             for k in ("checkpoint", "net_g", "net_c", "color_checkpoint")}
    if args.get("weights") is not None:   # the server's own weights folder (`avatex weights fetch`)
        from backend.weights import installed

        files = installed(args["weights"])
        paths["net_g"], paths["net_c"] = files["net_G"], files["net_C"]
    key = (args["model"], tuple(_file_key(p) for p in paths.values()), str(ctx.device))
    if args["model"] == "pifuhd":
        from backend.recon.pifuhd import load_pifuhd_recon

        model = MODELS.get(key, lambda: load_pifuhd_recon(paths["checkpoint"], paths["color_checkpoint"],
                                                          device=ctx.device))
    else:
        model = MODELS.get(key, lambda: load_models(checkpoint=paths["checkpoint"], net_g=paths["net_g"],
                                                    net_c=paths["net_c"], device=ctx.device))
    ctx.check_stop()
    if args.get("texture") is not None:
        result, arrays = _reconstruct_textured(model, image, mask, args, ctx)
        return {**result, "mask": mask_info}, {**arrays, **mask_arrays}
    if "views" in arrays:
        from backend.recon import View, reconstruct_views

        masks = arrays.get("masks")
        views = [View(np.array(img), np.array(arrays["calibs"][k]),
                      None if masks is None else np.array(masks[k])) for k, img in enumerate(arrays["views"])]
        rec = reconstruct_views(model, views, resolution=args["resolution"], device=ctx.device,
                                progress=ctx.job_progress)
    else:
        rec = reconstruct(model, image, mask, resolution=args["resolution"], device=ctx.device,
                          progress=ctx.job_progress)
    vertices = np.ascontiguousarray(rec.vertices, dtype=np.float32)
    faces = np.ascontiguousarray(rec.faces, dtype=np.int32)
    colors = np.ascontiguousarray(rec.colors, dtype=np.float32)
    result: dict[str, Any] = {"vertices": len(vertices), "faces": len(faces), "stats": dict(rec.stats or {}),
                              "mask": mask_info}
    if args["out"] is not None:
        from backend.meshio import save_mesh

        out = ctx.resolve_path(args["out"], must_exist=False)
        write_output(out, lambda p: save_mesh(p, vertices, faces, colors), args["overwrite"])
        result["saved"] = str(out)
    return result, {"vertices": vertices, "faces": faces, "colors": colors, **mask_arrays}


def _auto_mask(image: np.ndarray, mask: np.ndarray | None, args: dict
               ) -> tuple[np.ndarray | None, dict, dict[str, np.ndarray]]:
    """(mask to use, the result's ``mask`` record, extra result arrays): a photo without alpha or mask
    gets the automatic person mask, returned as the ``mask`` array so the client can show and fix it."""
    from backend.masks import has_cutout, person_mask

    if mask is not None:
        return mask, {"method": "given"}, {}
    if has_cutout(image) or not args.get("auto_mask", True):
        return None, {"method": "alpha"}, {}
    auto = person_mask(image, args.get("mask_method") or "auto")
    info = {"method": auto.method, **({"note": auto.note} if auto.note else {})}
    return auto.mask, info, {"mask": np.ascontiguousarray(auto.mask, dtype=np.uint8)}


def _reconstruct_textured(model, image: np.ndarray, mask: np.ndarray | None, args: dict, ctx: Context
                          ) -> tuple[dict, dict]:
    """The textured variant: the decimated mesh, its UVs and texture, and per-vertex colours read from
    the texture (so a client that only knows vertex colours still shows the mesh sensibly)."""
    from backend.meshio import sample_texture
    from backend.recon.texture import reconstruct_textured, save_textured

    rec, tm = reconstruct_textured(model, image, mask, texture_size=args["texture"],
                                   target_faces=args["faces"], resolution=args["resolution"],
                                   detail=args["texture_detail"],
                                   **({} if args["texture_smooth"] is None
                                      else {"smooth": args["texture_smooth"]}),
                                   device=ctx.device, progress=ctx.job_progress)
    stats = {**dict(rec.stats or {}), "texture": tm.stats}
    result: dict[str, Any] = {"vertices": len(tm.vertices), "faces": len(tm.faces), "stats": stats}
    if args["out"] is not None:
        out = ctx.resolve_path(args["out"], must_exist=False)
        result["saved"] = [str(p) for p in save_textured(out, tm, overwrite=args["overwrite"])]
    arrays = {"vertices": np.ascontiguousarray(tm.vertices, dtype=np.float32),
              "faces": np.ascontiguousarray(tm.faces, dtype=np.int32),
              "colors": sample_texture(tm.texture, tm.uv),
              "uv": np.ascontiguousarray(tm.uv, dtype=np.float32),
              "texture": np.ascontiguousarray(tm.texture, dtype=np.uint8)}
    return result, arrays


# --------------------------------------------------------------------------------------------------
# evaluate


def prepare_evaluate(args: dict, arrays: dict, ctx: Context) -> dict:
    n = arrays["vertices"].shape[0]
    if arrays["colors"].shape[0] != n:
        raise InputError(f"evaluate: {n} vertices but {arrays['colors'].shape[0]} colours")
    has_gt_arrays = "gt_vertices" in arrays
    if (args["gt"] is None) == (not has_gt_arrays):
        raise InputError("evaluate: give the ground truth either as 'gt' (a mesh path under the server's "
                         "roots) or as the arrays gt_vertices + gt_colors (+ gt_faces), not both or neither")
    if has_gt_arrays:
        if "gt_colors" not in arrays:
            raise InputError("evaluate: gt_vertices needs gt_colors (sRGB per GT vertex)")
        if arrays["gt_colors"].shape[0] != arrays["gt_vertices"].shape[0]:
            raise InputError("evaluate: gt_colors and gt_vertices differ in length")
        faces = arrays.get("gt_faces")
        count = len(arrays["gt_vertices"])
        if faces is not None and faces.size and (faces.min() < 0 or faces.max() >= count):
            raise InputError("evaluate: gt_faces index vertices that do not exist")
    elif any(k in arrays for k in ("gt_colors", "gt_faces")):
        raise InputError("evaluate: gt_colors / gt_faces need gt_vertices")
    else:
        ctx.resolve_path(args["gt"], kind="file")
    return args


def op_evaluate(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    from backend.meshio import ColoredMesh, load_mesh
    from backend.metrics import texture_distance

    ctx.progress("loading", 0.0)
    if args["gt"] is not None:
        gt = load_mesh(ctx.resolve_path(args["gt"], kind="file"))
    else:
        faces = arrays.get("gt_faces")
        gt = ColoredMesh(vertices=np.asarray(arrays["gt_vertices"], dtype=np.float64),
                         faces=np.zeros((0, 3), np.int64) if faces is None else faces.astype(np.int64),
                         vertex_colors=_colors01(arrays["gt_colors"]))
    ctx.check_stop()
    td = texture_distance(arrays["vertices"], arrays["colors"], gt, k=args["k"], device=ctx.device,
                          gt_samples=args["gt_samples"], rng=np.random.default_rng(args["seed"]),
                          progress=ctx.job_progress)
    return dict(td.summary()), {"patd": np.asarray(td.patd, np.float32),
                                "pipatd": np.asarray(td.pipatd, np.float32),
                                "nearest": np.asarray(td.nearest, np.int64)}


def _colors01(colors: np.ndarray) -> np.ndarray:
    if colors.dtype == np.uint8:
        return colors.astype(np.float32) / np.float32(255.0)
    return np.asarray(colors, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# the table

_IMAGE = ArraySpec(("uint8",), (None, None, (3, 4)), doc="RGB or RGBA image, sRGB")
_MASK = ArraySpec(("uint8", "bool", "float32"), (None, None), doc="foreground mask (0/255, bool or 0..1)")
_VIEWS = ArraySpec(("uint8",), (None, None, None, (3, 4)),
                   doc="V calibrated views (RGBA: alpha is the mask), one size; with 'calibs'")
_CALIBS = ArraySpec(("float32", "float64"), (None, 4, 4), doc="one calib per view (canonical -> image)")
_MASKS = ArraySpec(("uint8", "bool", "float32"), (None, None, None), doc="one mask per view (else the alpha)")
_V3 = ArraySpec(("float32", "float64"), (None, 3))
_C3 = ArraySpec(("float32", "uint8"), (None, 3), doc="sRGB colours in [0,1] (float32) or 0..255 (uint8)")

_OPERATIONS = (
    Operation("hello", op_hello, "Versions, capabilities, devices, limits and the operation list.",
              args={"client": Arg("str", max_len=200, doc="the client's name and version, for logs")},
              result="protocol, server, devices, curve, roots, limits, dtypes, operations{…}, jobs"),
    Operation("ping", op_ping, "Liveness check (the client's heartbeat).", result="time"),
    Operation("echo", op_echo, "Returns its data and arrays unchanged (diagnostics, benchmarks).",
              args={"data": Arg("any", doc="any JSON value")}, arrays=None, result="data, arrays"),
    Operation("reconstruct", op_reconstruct, "PIFu reconstruction to a coloured mesh from one image, or from "
              "several calibrated views (PIFu's multi-view mode).",
              args={"image": Arg("str", doc="image path under a root (or send the 'image' array)"),
                    "mask": Arg("str", doc="mask path; default: the image's alpha, else an automatic "
                                           "person mask"),
                    "auto_mask": Arg("bool", default=True,
                                     doc="mask a photo without alpha or mask automatically (returned as "
                                         "the 'mask' array; result 'mask' says how it was made)"),
                    "mask_method": Arg("str", choices=("auto", "pose", "grabcut"), default="auto",
                                       doc="automatic mask: pose (mediapipe), grabcut, or auto"),
                    "weights": Arg("str", choices=("pifu",),
                                   doc="the official weights in the server's weights folder"),
                    "model": Arg("str", default="pifu", choices=("pifu", "pifuhd"),
                                 doc="pifu, or pifuhd (checkpoint: a pifuhd.pt; default: fetched)"),
                    "checkpoint": Arg("str", doc="project checkpoint path"),
                    "color_checkpoint": Arg("str", doc="pifuhd: PIFu checkpoint whose colour net colours"),
                    "net_g": Arg("str", doc="official net_G path"),
                    "net_c": Arg("str", doc="official net_C path"),
                    "resolution": Arg("int", default=256, minimum=16, maximum=1024),
                    "out": Arg("str", doc="also save the mesh here (.ply/.obj; with texture .glb/.obj; "
                                          "under a root)"),
                    "texture": Arg("int", choices=(512, 1024, 2048, 4096),
                                   doc="return a decimated mesh with a texture of this size baked from the "
                                       "colour field"),
                    "faces": Arg("int", default=20_000, minimum=100, maximum=1_000_000,
                                 doc="face budget of the textured mesh"),
                    "texture_detail": Arg("str", default="net", choices=("net", "image", "blend"),
                                          doc="with texture: colour field only, the input image on the "
                                              "visible side, or the net plus the image's fine detail"),
                    "texture_smooth": Arg("float", minimum=0.0, maximum=0.1,
                                          doc="with texture: Gaussian low-pass of the colour field along "
                                              "the surface, sigma in canonical units (0: none; default: "
                                              "the backend's, chosen on validation avatars)"),
                    "overwrite": Arg("bool", default=False, doc="replace an existing 'out' file"),
                    "timeout_s": _TIMEOUT},
              arrays={"image": _IMAGE, "mask": _MASK, "views": _VIEWS, "calibs": _CALIBS, "masks": _MASKS},
              result="vertices, faces, stats, saved, mask{method, note}; arrays vertices f32 (N,3), "
                     "faces i32 (F,3), colors f32 (N,3); with texture also uv f32 (N,2) and texture u8 "
                     "(S,S,3); with an automatic mask also mask u8 (H,W)",
              job=True, device=True, prepare=prepare_reconstruct,
              requires=("backend.models", "backend.recon")),
    Operation("evaluate", op_evaluate, "PATD / PIPATD of a coloured mesh against its ground truth.",
              args={"gt": Arg("str", doc="GT mesh path under a root (or send gt_* arrays)"),
                    "k": Arg("int", default=8, minimum=1, maximum=64),
                    "gt_samples": Arg("int", minimum=1, maximum=50_000_000,
                                      doc="surface samples for a textured GT"),
                    "seed": Arg("int", default=0, minimum=0, maximum=2**63 - 1),
                    "timeout_s": _TIMEOUT},
              arrays={"vertices": ArraySpec(("float32", "float64"), (None, 3), required=True),
                      "colors": ArraySpec(_C3.dtypes, _C3.shape, required=True, doc=_C3.doc),
                      "gt_vertices": _V3,
                      "gt_faces": ArraySpec(("int32", "int64"), (None, 3)),
                      "gt_colors": _C3},
              result="summary (patd/pipatd mean, median, p90, k, gt_points, gt_kind); arrays patd f32 "
                     "(N,), pipatd f32 (N,), nearest i64 (N,)",
              job=True, device=True, prepare=prepare_evaluate, requires=("backend.metrics",)),
    Operation("train.start", op_train, "Start (or resume) a training run; streams progress.",
              args={"config": Arg("dict", fields=TRAIN_CONFIG,
                                  doc="training config: data, out, loss, steps, … (paths under the roots)"),
                    "resume": Arg("str", max_len=64, doc="job id of an interrupted/cancelled run"),
                    "timeout_s": _TIMEOUT},
              result="what run_training returns", job=True, device=True, resumable=True,
              prepare=prepare_train, requires=("backend.train",)),
    Operation("train.status", op_train_status, "Status of one training job, or all of them.",
              args={"job": Arg("str", max_len=64)}, result="job status, or jobs[]"),
    Operation("train.cancel", op_train_cancel, "Cancel a training job (it stops at its next check).",
              args={"job": Arg("str", required=True, max_len=64)}, result="job, state"),
    Operation("job.status", op_job_status, "State, stage, progress and timing of any job.",
              args={"job": Arg("str", required=True, max_len=64)}, result="job status"),
    Operation("job.result", op_job_result, "The result of a job; with wait=true, follow it to the end.",
              args={"job": Arg("str", required=True, max_len=64), "wait": Arg("bool", default=False)},
              result="the job's own ok/error/cancelled reply"),
    Operation("job.list", op_job_list, "Every job the server remembers.",
              args={"op": Arg("str", max_len=64)}, result="jobs[]"),
    Operation("cancel", op_cancel, "Cancel any job, by job id or by the id of your request.",
              args={"job": Arg("str", max_len=64), "request": Arg("str", max_len=128)}, result="job, state"),
    Operation("checkpoints.list", op_checkpoints_list, "Checkpoints under the roots (or one folder).",
              args={"dir": Arg("str"), "limit": Arg("int", default=500, minimum=1, maximum=10_000)},
              result="checkpoints[{path, relative, size, modified, kind}], truncated"),
    Operation("shutdown", op_shutdown, "Stop the server (local clients only).", local_only=True,
              result="stopping, running_jobs"),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _OPERATIONS}
