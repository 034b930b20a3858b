"""The panels' settings, stored per scene as ``scene.avatex`` (saved with the .blend file).

Only settings live here. What a running job knows (progress, loss history, connection state) is
runtime state in :mod:`.runtime` and :mod:`.tasks`: it must not end up in files, undo steps or another scene.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from avatex_core import heatmap

from . import audit


def _is_mesh(self, obj) -> bool:
    return obj.type == "MESH"


def _heatmap_metric_changed(self, context) -> None:
    obj = self.audit_object or context.active_object
    if obj is not None and obj.type == "MESH" and "patd" in obj.data.attributes:
        try:
            audit.show_heatmap(obj, self.heatmap_metric)
        except ValueError as exc:  # e.g. in Edit Mode: keep the choice, colour it later
            print(f"avatex: {exc}")


class AvatexSettings(bpy.types.PropertyGroup):
    # -- Reconstruct
    image_source: EnumProperty(
        name="Image from", default="FILE",
        items=[("FILE", "File", "An image file on disk"),
               ("DATABLOCK", "Blender image", "An image already loaded in Blender (a render, a photo)"),
               ("CAMERAS", "Cameras", "Several views: each selected orthographic camera's image (its "
                "'avatex_image' property) or render, with its calibration; the 3D cursor marks the "
                "person's centre")])
    image_path: StringProperty(name="Image", subtype="FILE_PATH", description="Image of one person")
    image: PointerProperty(name="Image", type=bpy.types.Image)
    use_mask: BoolProperty(
        name="Separate mask", default=False,
        description="Use a separate mask image; otherwise the image's alpha channel is the mask")
    mask_path: StringProperty(name="Mask", subtype="FILE_PATH",
                              description="Foreground mask: white where the person is")
    mask_image: PointerProperty(name="Mask", type=bpy.types.Image)
    recon_model: EnumProperty(
        name="Model", default="pifu",
        items=[("pifu", "PIFu", "Single-level PIFu (512² input) with its colour net"),
               ("pifu_official", "PIFu (official weights)",
                "The released PIFu net_G / net_C that `avatex weights fetch pifu` installed on the backend's "
                "machine; no checkpoint needed"),
               ("pifuhd", "PIFuHD", "Multi-level PIFuHD (1024² input); checkpoint: a pifuhd.pt, empty: the "
                                    "fetched weights; colours from the image or the colour checkpoint")],
        description="Which reconstruction model the backend runs")
    color_checkpoint: StringProperty(
        name="Colour checkpoint", subtype="FILE_PATH",
        description="PIFuHD: an avatex PIFu checkpoint whose colour net colours the mesh; empty: colours "
                    "from the image")
    checkpoint: StringProperty(
        name="Checkpoint", subtype="FILE_PATH",
        description="avatex checkpoint (.safetensors/.pt) - a path the backend can read (under its data "
                    "folders); empty: the backend's default")
    resolution: IntProperty(name="Resolution", default=256, min=16, max=1024,
                            description="Marching-cubes grid resolution (higher: finer mesh, slower)")
    texture: EnumProperty(
        name="Texture", default="NONE",
        items=[("NONE", "Vertex colours", "The full marching-cubes mesh with one colour per vertex"),
               ("1024", "1024²", "A decimated mesh with a 1024² texture baked from the colour field"),
               ("2048", "2048²", "A decimated mesh with a 2048² texture baked from the colour field"),
               ("4096", "4096²", "A decimated mesh with a 4096² texture baked from the colour field"),
               ("512", "512²", "A decimated mesh with a 512² texture baked from the colour field")],
        description="Vertex colours, or a game-ready textured mesh")
    texture_faces: IntProperty(name="Faces", default=20_000, min=100, max=1_000_000,
                               description="Face budget of the textured mesh")
    texture_detail: EnumProperty(
        name="Detail", default="net",
        items=[("net", "Colour net", "Texture from the colour field only (lighting-corrected, smooth)"),
               ("blend", "Net + image detail", "The colour net plus the input image's fine detail on the "
                                              "side the camera sees"),
               ("image", "Image", "The input image on the side the camera sees, the net elsewhere")],
        description="Where the texture's colours come from")
    texture_smooth: EnumProperty(
        name="Smoothing", default="DEFAULT",
        items=[("DEFAULT", "Validated", "The backend's low-pass of the colour field, chosen on validation "
                                        "avatars (lowest texture error)"),
               ("NONE", "None", "The colour field exactly as queried: a little sharper, a little noisier")],
        description="Low-pass of the colour field along the surface before it is baked")

    # -- Audit
    audit_object: PointerProperty(name="Reconstruction", type=bpy.types.Object, poll=_is_mesh,
                                  description="The reconstructed mesh to audit (gets the attributes)")
    gt_object: PointerProperty(name="Ground truth", type=bpy.types.Object, poll=_is_mesh,
                               description="The ground-truth mesh, with vertex colours or a texture")
    gt_source: EnumProperty(
        name="GT colours", default="AUTO",
        items=[("AUTO", "Auto", "The GT's file when it came from one the backend can read, else the object"),
               ("OBJECT", "Object", "Send the GT object's vertices and colours (colour attribute or "
                                    "texture sampled at the vertices)"),
               ("FILE", "File", "Let the backend load the GT mesh file (textures at full detail)")])
    gt_path: StringProperty(name="GT file", subtype="FILE_PATH",
                            description="The GT mesh file, as the backend sees it (under its data folders)")
    k: IntProperty(name="k (PIPATD)", default=8, min=1, max=64,
                   description="PIPATD takes the smallest ΔE00 among the k nearest GT points")
    space: EnumProperty(
        name="Space", default="LOCAL",
        items=[("LOCAL", "Object", "Compare mesh coordinates as stored (avatex meshes are all in canonical "
                                   "space, wherever the objects stand)"),
               ("WORLD", "World", "Compare where the objects stand in the scene")])
    heatmap_metric: EnumProperty(
        name="Heatmap", default="patd", update=_heatmap_metric_changed,
        items=[("patd", "PATD", "ΔE00 to the nearest GT point"),
               ("pipatd", "PIPATD", "Smallest ΔE00 among the k nearest GT points")])

    # -- Train
    dataset: StringProperty(name="Dataset", subtype="DIR_PATH",
                            description="Dataset folder (as the backend sees it)")
    run_dir: StringProperty(name="Run folder", subtype="DIR_PATH",
                            description="Where the run writes checkpoints and logs (as the backend sees it)")
    loss: EnumProperty(
        name="Loss", default="ssim",
        items=[("ssim", "Patch SSIM", "3D patch-wise SSIM on the surface"),
               ("l1", "L1", "Per-point L1 on colours"),
               ("l1+ssim", "L1 + patch SSIM", "Both, weighted")])
    steps: IntProperty(name="Steps", default=2000, min=1, max=10_000_000)
    model: EnumProperty(
        name="Model", default="small",
        items=[("small", "Small", "A CPU-friendly configuration"),
               ("official", "Official", "PIFu's published architecture")])
    init_checkpoint: StringProperty(name="Start from", subtype="FILE_PATH",
                                    description="Checkpoint to fine-tune (optional)")


def _legend_getter(index: int):
    color = heatmap.legend()[index][1]
    return lambda self: color


def _ignore(self, value) -> None:
    """Legend swatches show fixed colours; editing one changes nothing."""


def register() -> None:
    bpy.utils.register_class(AvatexSettings)
    bpy.types.Scene.avatex = PointerProperty(type=AvatexSettings)
    # The Audit panel's legend: colour swatches of the fixed ΔE00 scale (COLOR_GAMMA = sRGB, as shown).
    for i, (label, _) in enumerate(heatmap.legend()):
        setattr(bpy.types.WindowManager, f"avatex_legend_{i}",
                FloatVectorProperty(name=f"ΔE00 {label}", subtype="COLOR_GAMMA", size=3, min=0.0, max=1.0,
                                    get=_legend_getter(i), set=_ignore))


def unregister() -> None:
    for i in range(len(heatmap.legend())):
        delattr(bpy.types.WindowManager, f"avatex_legend_{i}")
    del bpy.types.Scene.avatex
    bpy.utils.unregister_class(AvatexSettings)
