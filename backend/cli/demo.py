"""Reconstruct a held-out avatar from one relit Blender render, audit its texture, and write the result.

Runs every part of avatex once, on built-in defaults: Blender renders the avatar under bad lighting, a
real backend server reconstructs it with the shipped pretrained checkpoint and computes PATD / PIPATD
per vertex, and Blender writes a .blend with the error heatmap and images of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "end-to-end demo on a held-out avatar (render, reconstruct, audit, .blend)"
PATHS = ("out", "avatar", "checkpoint")


def configure(parser: argparse.ArgumentParser) -> None:
    from backend.demo import DemoConfig

    d = DemoConfig()
    parser.add_argument("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    parser.add_argument("--avatar", type=Path, default=d.avatar,
                        help="a textured or vertex-coloured human mesh (default: a held-out sample avatar)")
    parser.add_argument("--checkpoint", type=Path, default=d.checkpoint,
                        help="avatex checkpoint (default: the shipped small model)")
    parser.add_argument("--level", default=d.level,
                        help=f"lighting level of the input render (default {d.level})")
    parser.add_argument("--render-resolution", type=int, default=d.render_resolution)
    parser.add_argument("--resolution", type=int, default=d.recon_resolution, dest="recon_resolution",
                        help=f"marching-cubes grid resolution (default {d.recon_resolution})")
    parser.add_argument("--k", type=int, default=d.k, help=f"neighbours for PIPATD (default {d.k})")
    parser.add_argument("--no-blend", dest="blend", action="store_false", help="skip the .blend and images")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from backend.demo import DemoConfig, format_summary, run_demo

    cfg = DemoConfig(out=args.out, avatar=args.avatar, checkpoint=args.checkpoint, level=args.level,
                     render_resolution=args.render_resolution, recon_resolution=args.recon_resolution,
                     k=args.k, blend=args.blend)
    summary = run_demo(cfg, log=(lambda *_: None) if args.json else print)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
