"""The renderer's command-line options, shared by ``render_scripts/render_dataset.py`` and ``avatex render``.

No bpy: the CLI and the add-on build their parsers from it without starting Blender.
"""

from __future__ import annotations

import argparse

from .lighting import BUILTIN_LEVELS, PAPER_LEVELS

BUILTIN_LEVEL_NAMES = tuple(BUILTIN_LEVELS)
DEFAULT_LEVELS = ",".join(PAPER_LEVELS)

# (flag, attribute, kind) of every option a worker receives; kind: value | list | flag
_PASS_THROUGH = (
    ("--views", "views", "value"), ("--step", "step", "value"), ("--pitch", "pitch", "list"),
    ("--levels", "levels", "value"), ("--light-config", "light_config", "value"),
    ("--resolution", "resolution", "value"), ("--engine", "engine", "value"),
    ("--device", "device", "value"), ("--samples", "samples", "value"),
    ("--albedo-samples", "albedo_samples", "value"), ("--no-denoise", "no_denoise", "flag"),
    ("--seed", "seed", "value"), ("--up", "up", "value"), ("--test-fraction", "test_fraction", "value"),
    ("--shard", "shard", "value"), ("--threads", "threads", "value"), ("--normals", "normals", "flag"),
)


def add_arguments(p: argparse.ArgumentParser, meshes_required: bool = True) -> None:
    """Options that decide what is rendered and where (the CLI adds --workers and --blender)."""
    p.add_argument("--meshes", nargs="+", required=meshes_required, default=[], metavar="PATH",
                   help="subject files (.ply .obj .glb .gltf .fbx .blend) or folders of them")
    p.add_argument("--out", required=True, metavar="DATASET", help="dataset folder (created, or resumed)")
    p.add_argument("--views", type=int, default=45, help="yaw views per pitch (default 45)")
    p.add_argument("--step", type=float, default=8.0, help="yaw step in degrees (default 8)")
    p.add_argument("--pitch", type=float, nargs="+", default=[0.0], metavar="DEG",
                   help="pitch angles in degrees (default: 0)")
    p.add_argument("--levels", default=DEFAULT_LEVELS,
                   help=f"comma-separated lighting levels (default {DEFAULT_LEVELS}; built in: "
                        f"{', '.join(BUILTIN_LEVEL_NAMES)})")
    p.add_argument("--light-config", metavar="FILE", help="TOML or JSON file defining more lighting levels")
    p.add_argument("--resolution", type=int, default=512, help="image size in pixels (default 512)")
    p.add_argument("--engine", choices=("cycles", "eevee"), default="cycles",
                   help="render engine (EEVEE needs a GPU)")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="Cycles device (default auto: GPU when present)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per lit image (default 16)")
    p.add_argument("--albedo-samples", type=int, default=16, help="samples per albedo image (default 16)")
    p.add_argument("--no-denoise", action="store_true", help="do not denoise lit images (OIDN)")
    p.add_argument("--normals", action="store_true",
                   help="also render front/back camera-space normal maps per view (PIFuHD training)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed: lights and render noise (default 0)")
    p.add_argument("--up", choices=("auto", "y", "z"), default="auto",
                   help="up axis of the subjects (default auto: the longer of y and z)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="share of subjects in the test split, by subject id hash (default 0.1)")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="render only shard I of N (machines sharing one dataset folder)")
    p.add_argument("--threads", type=int, default=0, help="render threads per process (0 = automatic)")


def to_argv(args: argparse.Namespace) -> list[str]:
    """The worker arguments (minus --meshes/--out) that reproduce ``args``."""
    out: list[str] = []
    for flag, attr, kind in _PASS_THROUGH:
        value = getattr(args, attr, None)
        if kind == "flag":
            if value:
                out.append(flag)
        elif kind == "list":
            out += [flag, *(str(v) for v in value)]
        elif value is not None:
            out += [flag, str(value)]
    return out
