"""Make the person mask of a photo: white = person, black = background (PNG, same size as the image).

The pose model inside the optional ``avatex[masks]`` extra (mediapipe 0.10.21) is used when installed,
else OpenCV GrabCut (``--method`` chooses). ``avatex reconstruct`` does the same on its own when the image
has no alpha channel; this command lets you look at the mask first and fix it by hand
(docs/api.md, "Person masks").
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "make the person mask of a photo (offline segmentation)"
PATHS = ("image", "out")


def configure(parser: argparse.ArgumentParser) -> None:
    from backend.masks import METHODS

    parser.add_argument("image", type=Path, help="photo (PNG/JPG); an alpha channel is ignored")
    parser.add_argument("--out", type=Path, required=True, help="mask PNG to write")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="pose (mediapipe), grabcut, or auto: pose when installed, else GrabCut "
                             "(default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from backend.errors import InputError

    if args.out.suffix.lower() != ".png":
        raise InputError(f"--out must end in .png, got {args.out.name!r}")
    from backend.images import read_image
    from backend.masks import person_mask
    from backend.server.paths import check_output, write_output

    check_output(args.out, args.overwrite, "--out")
    result = person_mask(read_image(args.image), args.method)
    write_output(args.out, lambda p: save_mask(p, result.mask), args.overwrite, "--out")
    share = float((result.mask > 127).mean())
    note = f" ({result.note})" if result.note else ""
    print(f"wrote {args.out}: {result.method} mask, {share:.1%} of the image is the person{note}")
    return 0


def save_mask(path: Path, mask) -> None:
    """Write a uint8 (H, W) mask as a greyscale PNG, atomically."""
    from PIL import Image

    from avatex_core.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(mask, "L").save(tmp, format="PNG")
