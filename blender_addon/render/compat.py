"""Every difference between Blender 4.2 LTS, 4.5 LTS and 5.0 that the renderer meets, in one place.

Facts (measured with the bpy wheels, docs/architecture.md):

* EEVEE's engine id is ``BLENDER_EEVEE_NEXT`` in 4.2–4.5 and ``BLENDER_EEVEE`` in 5.0.
* ``Material/World/Light.use_nodes`` is needed before 5.0 and deprecated in 5.0 (node trees always exist).
* 5.0 adds ``ImageFormatSettings.media_type``; ``file_format`` must be an image format under 'IMAGE'.
* The compositor moved in 5.0 (``scene.node_tree`` removed); the renderer does not use it at all:
  compositing is switched off and images are written with ``Image.save_render``.
* The Viewer node cannot be read headless in any version, so pixels never come back through it.
"""

from __future__ import annotations

import contextlib
import warnings

import bpy

VERSION: tuple[int, int, int] = tuple(bpy.app.version)  # type: ignore[assignment]
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


class EngineUnavailable(RuntimeError):
    """The requested engine or device cannot run here; the message says what is missing."""


def version_string() -> str:
    return bpy.app.version_string


def eevee_engine_id() -> str:
    return "BLENDER_EEVEE" if VERSION >= (5, 0, 0) else "BLENDER_EEVEE_NEXT"


def node_tree(idblock):
    """The node tree of a material, world or light, creating it the way this version wants."""
    if VERSION < (5, 0, 0) or getattr(idblock, "node_tree", None) is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            idblock.use_nodes = True
    return idblock.node_tree


def set_png_output(scene, compression: int = 15) -> None:
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # 5.0+
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_mode = "RGBA"
    settings.color_depth = "8"
    settings.compression = compression


def disable_post_processing(scene) -> None:
    """No compositor, no sequencer: the render result is the image (and 5.0 has no scene.node_tree)."""
    scene.render.use_compositing = False
    scene.render.use_sequencer = False


def set_light_hard_falloff(light) -> None:
    """Turn off 4.0+'s soft falloff near sphere lights so the point light follows the calibration."""
    if hasattr(light, "use_soft_falloff"):
        light.use_soft_falloff = False


def _cycles_prefs():
    addon = bpy.context.preferences.addons.get("cycles")
    return addon.preferences if addon is not None else None


def gpu_devices() -> tuple[str, list[str]]:
    """(backend, device names) of the first GPU backend Cycles finds, or ("", []) without a GPU."""
    prefs = _cycles_prefs()
    if prefs is None:
        return "", []
    for backend in GPU_BACKENDS:
        try:
            devices = prefs.get_devices_for_type(backend)
        except (TypeError, ValueError, AttributeError):
            continue
        names = [d.name for d in devices if d.type == backend]
        if names:
            return backend, names
    return "", []


def configure_cycles_device(scene, device: str) -> str:
    """Pick CPU or GPU for Cycles ('auto' = GPU when present). Returns a label for the records."""
    scene.cycles.device = "CPU"
    if device == "cpu":
        return "CPU"
    backend, names = gpu_devices()
    if not backend:
        if device == "gpu":
            raise EngineUnavailable("--device gpu: Cycles finds no GPU (OptiX, CUDA, HIP, oneAPI or Metal)")
        return "CPU"
    prefs = _cycles_prefs()
    prefs.compute_device_type = backend
    for d in prefs.devices:
        d.use = d.type == backend
    scene.cycles.device = "GPU"
    return f"GPU:{backend}:{'+'.join(names)}"


def require_gpu_for_eevee() -> str:
    backend, names = gpu_devices()
    if not backend:
        raise EngineUnavailable("EEVEE renders need a GPU and none was found (Cycles sees no OptiX, CUDA, "
                                "HIP, oneAPI or Metal device); use --engine cycles")
    return f"GPU:{backend}:{'+'.join(names)}"


def set_sampling_pattern(scene) -> str:
    """Tabulated Sobol: the same seed gives the same image whatever was rendered before.

    The default 'AUTOMATIC' picks blue noise, and blue noise carries state from the previous render:
    after an albedo render with other samples and no denoiser, the next lit render with the same seed
    differed (measured, 4.5.15). Tabulated Sobol has no such state. A version without that enum value
    keeps its default.
    """
    with contextlib.suppress(TypeError):  # an enum without it: keep the version's default
        scene.cycles.sampling_pattern = "TABULATED_SOBOL"
    return scene.cycles.sampling_pattern


def set_denoiser(scene, on: bool, gpu: bool) -> None:
    cycles = scene.cycles
    cycles.use_denoising = on
    if not on:
        return
    cycles.denoiser = "OPENIMAGEDENOISE"
    cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    cycles.denoising_prefilter = "FAST"
    if hasattr(cycles, "denoising_use_gpu"):  # 4.1+
        cycles.denoising_use_gpu = gpu
