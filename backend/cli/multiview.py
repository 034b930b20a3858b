"""``avatex reconstruct`` from several calibrated views: the options and how they become views.

Two ways to name the views (docs/api.md, "Several views"):

* ``avatex reconstruct IMG1 IMG2 ... --calibs C1 C2 ...``: one calib file per image, in the same order;
* ``avatex reconstruct --dataset DS --subject S --views 0,12,24 [--level L]``: views of a rendered
  avatex dataset, each with the calib stored beside it (docs/dataset.md).

A calib file is a 4 x 4 matrix (canonical points -> the image's normalised coordinates,
``avatex_core.canonical``): ``.npy`` (read without pickle), ``.json`` (the matrix, or an object with a
``calib`` entry such as a dataset's ``view.json``) or text (``.txt`` / ``.csv``, four rows of four).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from backend.errors import InputError

PATHS = ("calibs", "dataset")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the multi-view options to ``avatex reconstruct``."""
    group = parser.add_argument_group("several calibrated views (PIFu's multi-view mode)")
    group.add_argument("--calibs", type=Path, nargs="+", default=None, metavar="CALIB",
                       help="one calib file per image (.npy, .json or .txt 4x4), in the images' order")
    group.add_argument("--dataset", type=Path, default=None, help="a rendered avatex dataset")
    group.add_argument("--subject", default=None, help="subject id of --dataset")
    group.add_argument("--views", default=None,
                       help="comma-separated view indices of --dataset, e.g. 0,12,24")
    group.add_argument("--level", default=None, help="lighting level of --dataset (default: its first)")


def views_from_args(args: argparse.Namespace) -> list | None:
    """The calibrated views the arguments name (``backend.recon.View``), or None for the single-image
    mode (one image, no --calibs, no --dataset)."""
    from backend.recon import View

    images = list(args.image or [])
    dataset_opts = [name for name in ("subject", "views", "level") if getattr(args, name) is not None]
    if args.dataset is None:
        if dataset_opts:
            raise InputError(f"--{dataset_opts[0]} needs --dataset")
        if args.calibs is None:
            if not images:
                raise InputError("give an image (or several with --calibs C1 C2 ..., or --dataset DS "
                                 "--subject S --views I,J,...)")
            if len(images) != 1:
                raise InputError(f"{len(images)} images given without calibs: give one image, or one "
                                 "--calibs file per image (or --dataset DS --subject S --views ...)")
            return None
        if len(args.calibs) != len(images):
            raise InputError(f"{len(images)} image(s) but {len(args.calibs)} --calibs file(s): give one "
                             "calib per image, in the same order")
        _single_mask_only(args)
        from backend.images import read_image

        calibs = [read_calib(cal) for cal in args.calibs]   # small files first: a bad one fails fast
        return [View(read_image(img), cal) for img, cal in zip(images, calibs, strict=True)]
    if images or args.calibs is not None:
        raise InputError("give either images (with --calibs) or --dataset, not both")
    if args.subject is None or args.views is None:
        raise InputError("--dataset needs --subject S and --views I,J,... (view indices)")
    _single_mask_only(args)
    return dataset_views(args.dataset, args.subject, parse_views(args.views), args.level)


def _single_mask_only(args: argparse.Namespace) -> None:
    if getattr(args, "mask", None) is not None:
        raise InputError("--mask is for one image; calibrated views take their masks from their alpha")


def parse_views(text: str) -> list[int]:
    """``"0,12,24"`` -> [0, 12, 24]; one line naming the problem otherwise."""
    try:
        views = [int(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"--views must be comma-separated view indices such as 0,12,24, got {text!r}"
                         ) from None
    if len(set(views)) != len(views):
        raise InputError(f"--views names a view twice: {text!r}")
    return views


def dataset_views(root: Path, subject: str, views: list[int], level: str | None = None) -> list:
    """Views ``views`` of ``subject`` in the dataset at ``root``: each lit render (its alpha the mask)
    with the calib recorded beside it."""
    from backend.data.dataset import Dataset, DatasetError
    from backend.recon import View

    data = Dataset(root)
    if subject not in data.subjects():
        raise DatasetError(f"subject {subject!r} is not in {root} (it has {', '.join(data.subjects()[:8])}"
                           f"{', ...' if len(data.subjects()) > 8 else ''})")
    level = level if level is not None else data.levels[0]
    if level not in data.levels:
        raise DatasetError(f"level {level!r} is not in this dataset ({', '.join(data.levels)})")
    finished = set(data.views_of(subject))
    missing = [k for k in views if k not in finished]
    if missing:
        raise DatasetError(f"{subject}: view(s) {', '.join(map(str, missing))} are not rendered "
                           f"(finished: {_ranges(sorted(finished))})")
    return [View(data.image(subject, k, level), data.calib(subject, k)) for k in views]


def read_calib(path: Path) -> np.ndarray:
    """A calib file (module docstring) as a checked float32 (4, 4) array."""
    from backend.recon.pipeline import check_calib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"calib file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            value = np.load(path, allow_pickle=False)
        elif suffix == ".json":
            value = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(value, dict):
                value = value.get("calib")
        else:
            value = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read calib {path.name}: {str(exc).splitlines()[0]}") from None
    return check_calib(value, f"calib {path.name}")


def _ranges(values: list[int]) -> str:
    if not values:
        return "none"
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))
