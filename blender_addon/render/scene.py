"""The render scene around a normalised subject: engine settings, orthographic camera, light rig.

Only camera and light values change from image to image (persistent data keeps the BVH, textures and
shaders resident), which is where the renderer's speed comes from (blender.md §6).

Blender world = ``canonical.BLENDER_FROM_CANONICAL`` @ canonical, a rotation without scale, so Blender
units are canonical units: the camera's ``ortho_scale`` is ``canonical.ortho_scale(W)`` and lights sit
at canonical distances.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from avatex_core import canonical
from avatex_core.lighting import calibrate_point, environment_strength
from avatex_core.render_settings import CAMERA_DISTANCE, RenderSettings, View

from . import compat
from .materials import MaterialRig

_B = np.asarray(canonical.BLENDER_FROM_CANONICAL, dtype=np.float64)


def blender_from_canonical_points(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ _B[:3, :3].T


def _matrix(m: np.ndarray) -> Matrix:
    return Matrix([list(map(float, row)) for row in m])


def configure_render(scene, settings: RenderSettings) -> dict[str, Any]:
    """Engine, sampling, colour management and output format; returns what the records store."""
    compat.disable_post_processing(scene)
    r = scene.render
    r.resolution_x = r.resolution_y = settings.resolution
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.film_transparent = True
    r.dither_intensity = 0.0  # exact, reproducible 8-bit values
    r.use_persistent_data = True
    if settings.threads > 0:
        r.threads_mode = "FIXED"
        r.threads = settings.threads
    else:
        r.threads_mode = "AUTO"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    compat.set_png_output(scene)
    info: dict[str, Any] = {"blender": compat.version_string(), "engine": settings.engine}
    if settings.engine == "eevee":
        info["device"] = compat.require_gpu_for_eevee()
        r.engine = compat.eevee_engine_id()
        scene.eevee.taa_render_samples = settings.samples
        return info
    r.engine = "CYCLES"
    c = scene.cycles
    info["device"] = compat.configure_cycles_device(scene, settings.device)
    c.samples = settings.samples
    c.use_adaptive_sampling = False
    c.use_light_tree = False
    c.max_bounces = 4
    c.diffuse_bounces = 2
    c.glossy_bounces = 1
    c.transmission_bounces = 2
    c.volume_bounces = 0
    c.transparent_max_bounces = 8
    c.caustics_reflective = c.caustics_refractive = False
    c.sample_clamp_indirect = 10.0
    info["sampling_pattern"] = compat.set_sampling_pattern(scene)
    compat.set_denoiser(scene, settings.denoise, gpu=info["device"] != "CPU")
    info.update(samples=settings.samples, denoise=settings.denoise,
                denoiser="OPENIMAGEDENOISE/FAST" if settings.denoise else "none")
    return info


def make_camera(scene, settings: RenderSettings):
    cam = bpy.data.cameras.new("avatex_camera")
    cam.type = "ORTHO"
    cam.ortho_scale = canonical.ortho_scale(settings.resolution)
    cam.sensor_fit = "AUTO"
    cam.clip_start = 0.01
    cam.clip_end = 2.0 * CAMERA_DISTANCE
    cam.shift_x = cam.shift_y = 0.0
    ob = bpy.data.objects.new("avatex_camera", cam)
    scene.collection.objects.link(ob)
    scene.camera = ob
    return ob


def camera_matrix(view: View) -> np.ndarray:
    """The Blender ``matrix_world`` of a view's camera (from canonical.camera_to_canonical)."""
    return _B @ canonical.camera_to_canonical(view.yaw, view.pitch, distance=CAMERA_DISTANCE)


REGION_MARGIN_PX = 8
"""Pixels around the subject's projected box: the pixel filter (1.5 px) plus context for the denoiser."""


def render_region(canonical_vertices: np.ndarray, view: View, size: int,
                  margin: int = REGION_MARGIN_PX) -> tuple[int, int, int, int]:
    """The subject's projected pixel box in a view, grown by ``margin``: (x0, y0, x1, y1), end exclusive."""
    uv = canonical.project(canonical_vertices, canonical.calib_for_view(view.yaw, view.pitch))[:, :2]
    px = canonical.to_pixels(uv, size)
    lo = np.floor(px.min(axis=0)).astype(int) - margin
    hi = np.ceil(px.max(axis=0)).astype(int) + margin + 1
    x0, y0 = (int(v) for v in np.clip(lo, 0, size))
    x1, y1 = (int(v) for v in np.clip(hi, 0, size))
    if x1 <= x0 or y1 <= y0:  # subject entirely outside the frame: render it all (and see it empty)
        return 0, 0, size, size
    return x0, y0, x1, y1


def _mean_radiance(image) -> float:
    """Solid-angle-weighted mean luminance of an equirectangular environment image (linear)."""
    w, h = image.size
    px = np.empty(w * h * image.channels, dtype=np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)[..., :3].astype(np.float64)
    lum = px @ np.array([0.2126, 0.7152, 0.0722])
    theta = (np.arange(h) + 0.5) / h * math.pi  # rows bottom-to-top in Blender; symmetric weights
    weights = np.sin(theta)[:, None]
    return float((lum * weights).sum() / (weights.sum() * w))


@dataclass
class Environment:
    image: object
    mean_radiance: float


class LightRig:
    """World (uniform ambient colour or an HDRI) plus one point light, set per image from a record."""

    def __init__(self, scene, engine: str, hdri_dir: Path | None = None) -> None:
        self.scene = scene
        self.engine = engine
        self.hdri_dir = hdri_dir
        self._envs: dict[str, Environment] = {}
        world = bpy.data.worlds.new("avatex_world")
        scene.world = world
        nt = compat.node_tree(world)
        nt.nodes.clear()
        self.background = nt.nodes.new("ShaderNodeBackground")
        self.env_tex = nt.nodes.new("ShaderNodeTexEnvironment")
        self.mapping = nt.nodes.new("ShaderNodeMapping")
        coords = nt.nodes.new("ShaderNodeTexCoord")
        nt.links.new(coords.outputs["Generated"], self.mapping.inputs["Vector"])
        nt.links.new(self.mapping.outputs["Vector"], self.env_tex.inputs["Vector"])
        out = nt.nodes.new("ShaderNodeOutputWorld")
        nt.links.new(self.background.outputs[0], out.inputs["Surface"])
        self.world_tree = nt
        self._env_linked = False
        if hasattr(world, "cycles"):
            # Fixed before the first render: with persistent data Cycles ignores later changes of these
            # (measured, 4.5), and the automatic map (2x the HDRI's size) costs seconds per image.
            world.cycles.sampling_method = "MANUAL"
            world.cycles.sample_map_resolution = 256
        light = bpy.data.lights.new("avatex_light", "POINT")
        compat.set_light_hard_falloff(light)
        light.shadow_soft_size = 0.0
        self.light = light
        self.light_object = bpy.data.objects.new("avatex_light", light)
        scene.collection.objects.link(self.light_object)
        self.constant_falloff = engine == "cycles"
        if self.constant_falloff:
            lt = compat.node_tree(light)
            emission = next(n for n in lt.nodes if n.bl_idname == "ShaderNodeEmission")
            falloff = lt.nodes.new("ShaderNodeLightFalloff")
            falloff.inputs["Strength"].default_value = 1.0
            self._falloff = falloff
            self._emission = emission
            self._falloff_kind: str | None = None
        self._set_falloff("constant")

    def _set_falloff(self, kind: str) -> None:
        if not self.constant_falloff or kind == self._falloff_kind:
            return
        lt = self.light.node_tree
        for link in list(self._emission.inputs["Strength"].links):
            lt.links.remove(link)
        if kind == "constant":
            lt.links.new(self._falloff.outputs["Constant"], self._emission.inputs["Strength"])
        else:
            self._emission.inputs["Strength"].default_value = 1.0
        self._falloff_kind = kind

    def _link_env(self, on: bool) -> None:
        if on == self._env_linked:
            return
        color = self.background.inputs["Color"]
        if on:
            self.world_tree.links.new(self.env_tex.outputs["Color"], color)
        else:
            for link in list(color.links):
                self.world_tree.links.remove(link)
        self._env_linked = on

    def environment(self, name: str) -> Environment:
        """Load a bundled studio-light world by name (``studio``) or an image file by path."""
        env = self._envs.get(name)
        if env is not None:
            return env
        path = Path(name)
        if not path.suffix and self.hdri_dir is not None:
            path = self.hdri_dir / f"{name}.exr"
        if not path.is_file():
            known = ", ".join(sorted(bundled_environments(self.hdri_dir))) if self.hdri_dir else "none"
            raise FileNotFoundError(f"HDRI environment {name!r} not found (bundled: {known})")
        image = bpy.data.images.load(str(path), check_existing=True)
        env = Environment(image, _mean_radiance(image))
        self._envs[name] = env
        return env

    def apply(self, light: dict[str, Any], view: View) -> dict[str, Any]:
        """Set world and light from a record's ``light`` dict; returns the derived Blender values."""
        if light["kind"] == "hdri":
            env = self.environment(light["environment"])
            self.env_tex.image = env.image
            self._link_env(True)
            rotation = math.radians(light["rotation_deg"] - view.yaw)
            self.mapping.inputs["Rotation"].default_value = (0.0, 0.0, rotation)
            strength = environment_strength(light["brightness"], env.mean_radiance)
            self.background.inputs["Strength"].default_value = strength
            self.light.energy = 0.0
            return {"world_strength": strength, "world_rotation_z_rad": rotation,
                    "environment_mean_radiance": env.mean_radiance}
        self._link_env(False)
        position_can = canonical.camera_frame_to_canonical(
            np.asarray(light["position_camera"], dtype=np.float64), view.yaw, view.pitch)
        falloff = light.get("falloff", "constant") if self.constant_falloff else "quadratic"
        cal = calibrate_point(light["ambient"], light["diffuse"], light.get("color", (1.0, 1.0, 1.0)),
                              falloff=falloff, distance=float(np.linalg.norm(position_can)))
        self.background.inputs["Color"].default_value = (*cal.world_color, 1.0)
        self.background.inputs["Strength"].default_value = 1.0
        self._set_falloff(falloff)
        self.light.energy = cal.energy
        self.light.color = cal.light_color
        self.light.shadow_soft_size = float(light.get("radius", 0.0))
        location = blender_from_canonical_points(position_can[None])[0]
        self.light_object.location = tuple(map(float, location))
        return {"position_canonical": [round(float(x), 6) for x in position_can],
                "world_color_linear": [round(c, 6) for c in cal.world_color],
                "light_energy_w": round(cal.energy, 6), "light_color": [round(c, 6) for c in cal.light_color],
                "falloff": falloff}


def bundled_environments(hdri_dir: Path | None) -> list[str]:
    if hdri_dir is None or not hdri_dir.is_dir():
        return []
    return sorted(p.stem for p in hdri_dir.glob("*.exr"))


def bundled_hdri_dir() -> Path | None:
    """``datafiles/studiolights/world`` of this Blender (the bpy wheel ships it too)."""
    path = bpy.utils.system_resource("DATAFILES", path="studiolights/world")
    return Path(path) if path and Path(path).is_dir() else None


class SceneRig:
    """Camera + lights + materials of one subject, and the render call."""

    def __init__(self, scene, settings: RenderSettings, materials: MaterialRig) -> None:
        self.scene = scene
        self.settings = settings
        self.materials = materials
        self.info = configure_render(scene, settings)
        self.camera = make_camera(scene, settings)
        self.hdri_dir = bundled_hdri_dir()
        self.lights = LightRig(scene, settings.engine, self.hdri_dir)
        self.render_seconds = 0.0

    def set_view(self, view: View, region: tuple[int, int, int, int] | None = None) -> None:
        """Point the camera; ``region`` (x0, y0, x1, y1 in pixels, top-left origin, exclusive end)
        limits rendering to the subject's box: outside it the image is transparent anyway, and path
        tracing and denoising then cost in proportion to the subject's area, not the frame's."""
        self.camera.matrix_world = _matrix(camera_matrix(view))
        r = self.scene.render
        if region is None:
            r.use_border = False
            return
        w = h = self.settings.resolution
        x0, y0, x1, y1 = region
        r.use_border = True
        r.use_crop_to_border = False
        r.border_min_x, r.border_max_x = x0 / w, x1 / w
        r.border_min_y, r.border_max_y = (h - y1) / h, (h - y0) / h

    def set_samples(self, albedo: bool) -> None:
        if self.settings.engine == "cycles":
            c = self.scene.cycles
            want = self.settings.albedo_samples if albedo else self.settings.samples
            if c.samples != want:
                c.samples = want
            denoise = self.settings.denoise and not albedo
            if c.use_denoising != denoise:
                c.use_denoising = denoise
        else:
            want = self.settings.albedo_samples if albedo else self.settings.samples
            if self.scene.eevee.taa_render_samples != want:
                self.scene.eevee.taa_render_samples = want

    def render(self, path: Path, seed: int) -> float:
        """Render the current state to ``path`` (PNG); returns seconds spent inside the renderer."""
        if self.settings.engine == "cycles":
            self.scene.cycles.seed = seed
        t0 = time.perf_counter()
        bpy.ops.render.render(write_still=False)
        dt = time.perf_counter() - t0
        self.render_seconds += dt
        bpy.data.images["Render Result"].save_render(filepath=str(path), scene=self.scene)
        return dt


def tmpfs_dir() -> Path:
    """A RAM-backed folder for pixel round trips (``/dev/shm`` on Linux), else the temp folder."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def render_result_pixels(scene) -> np.ndarray:
    """The last render as (H, W, 4) uint8 RGBA, row 0 at the top, exactly as the PNG would hold it.

    Headless Blender keeps no pixels in 'Render Result' and the compositor's Viewer node cannot be read
    in background mode (blender.md §6), so the result goes through a PNG on tmpfs and back.
    """
    fd, name = tempfile.mkstemp(suffix=".png", dir=tmpfs_dir())
    os.close(fd)
    try:
        bpy.data.images["Render Result"].save_render(filepath=name, scene=scene)
        image = bpy.data.images.load(name)
        try:
            w, h = image.size
            px = np.empty(w * h * image.channels, dtype=np.float32)
            image.pixels.foreach_get(px)
        finally:
            bpy.data.images.remove(image)
        px = px.reshape(h, w, -1)[::-1]
        return np.rint(px * 255.0).astype(np.uint8)
    finally:
        os.unlink(name)
