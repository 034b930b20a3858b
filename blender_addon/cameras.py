"""Several calibrated views from the scene's cameras: PIFu's multi-view mode in the Reconstruct panel.

Each selected orthographic camera gives one view: the image named by its ``avatex_image`` custom
property (a photo taken from that camera), or else a render of the scene from it with a transparent
film (alpha = the person's mask). Its calib comes from ``avatex_core.canonical.calib_for_camera``,
with the canonical space centred on the 3D cursor (which marks the person's centre) and one canonical
unit = the first camera's half image (docs/addon.md), so the backend sees every view in one space.
"""

from __future__ import annotations

import os
import tempfile

import bpy
import numpy as np

from avatex_core import canonical

from . import images

IMAGE_PROPERTY = "avatex_image"
"""Camera custom property naming the image datablock seen from that camera (else it is rendered)."""


class CameraError(ValueError):
    """The cameras cannot be used; the message says why and what to do."""


def selected_cameras(context) -> list[bpy.types.Object]:
    """The selected camera objects, by name (a stable view order)."""
    cams = sorted((o for o in context.selected_objects if o.type == "CAMERA"), key=lambda o: o.name)
    if not cams:
        raise CameraError("select one or more orthographic cameras that see the person")
    for cam in cams:
        if cam.data.type != "ORTHO":
            raise CameraError(f"camera {cam.name!r} is {cam.data.type.lower()}: PIFu's calibrations are "
                              "orthographic; set its Type to Orthographic")
        if cam.data.shift_x or cam.data.shift_y:
            raise CameraError(f"camera {cam.name!r} has a lens shift; set Shift X and Y to 0")
    return cams


def camera_views(context) -> tuple[np.ndarray, np.ndarray, float]:
    """(views uint8 (V, H, W, 4), calibs float32 (V, 4, 4), world units per canonical unit)."""
    scene = context.scene
    cams = selected_cameras(context)
    pixels = [_view_image(scene, cam) for cam in cams]
    shapes = {p.shape for p in pixels}
    if len(shapes) != 1:
        sizes = ", ".join(f"{c.name} {p.shape[1]}×{p.shape[0]}" for c, p in zip(cams, pixels, strict=True))
        raise CameraError(f"the cameras' images differ in size: {sizes}")
    height, width = pixels[0].shape[:2]
    for cam, px in zip(cams, pixels, strict=True):
        if px[..., 3].min() == 255:
            raise CameraError(f"the image of camera {cam.name!r} has no alpha to use as the person's mask")
    unit = canonical.camera_unit(cams[0].data.ortho_scale, width, height)
    origin = np.asarray(scene.cursor.location, dtype=np.float64)
    calibs = [canonical.calib_for_camera(np.asarray(cam.matrix_world, dtype=np.float64), cam.data.ortho_scale,
                                         width, height, origin, unit) for cam in cams]
    return np.stack(pixels), np.stack(calibs).astype(np.float32), unit


def _view_image(scene, cam: bpy.types.Object) -> np.ndarray:
    name = cam.get(IMAGE_PROPERTY)
    if name:
        img = bpy.data.images.get(str(name))
        if img is None:
            raise CameraError(f"camera {cam.name!r} names image {name!r}, which is not in this file")
        return images.image_rgba(img)
    return _render(scene, cam)


def _render(scene, cam: bpy.types.Object) -> np.ndarray:
    """The scene rendered from ``cam`` with a transparent film; the scene's settings are restored."""
    render = scene.render
    saved = (scene.camera, render.film_transparent, render.filepath, render.image_settings.file_format,
             render.image_settings.color_mode)
    path = os.path.join(tempfile.mkdtemp(prefix="avatex_view_"), "view.png")
    try:
        scene.camera = cam
        render.film_transparent = True
        render.filepath = path
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        bpy.ops.render.render(write_still=True, scene=scene.name)
        return images.read_file(path)[0]
    finally:
        (scene.camera, render.film_transparent, render.filepath, render.image_settings.file_format,
         render.image_settings.color_mode) = saved
        if os.path.exists(path):
            os.remove(path)
        os.rmdir(os.path.dirname(path))
