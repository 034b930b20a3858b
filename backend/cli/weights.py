"""Fetch and list the released weights: `avatex weights fetch pifu [--dir DIR]`, `avatex weights list`.

`fetch` downloads from the links of the official repositories (resuming a partial download), verifies
the files by loading them strictly, and records their size and sha256 in DIR/registry.json. Files
placed in DIR/<release>/ by hand are verified and recorded without a download. DIR defaults to
$AVATEX_WEIGHTS, else ~/.cache/avatex/weights (docs/api.md, "Official weights").
`avatex reconstruct --weights pifu` then uses them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "fetch (download, verify, record) or list the released PIFu / PIFuHD weights"
PATHS = ("dir",)
RELEASE_NAMES = ("pifu", "pifuhd")


def configure(parser: argparse.ArgumentParser) -> None:
    dir_help = "weights folder (default $AVATEX_WEIGHTS, else ~/.cache/avatex/weights)"
    parser.add_argument("--dir", type=Path, default=None, help=dir_help)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fetch = sub.add_parser("fetch", help="download, verify and record a release")
    fetch.add_argument("release", choices=RELEASE_NAMES, help="which weights")
    fetch.add_argument("--no-progress", action="store_true", help="no progress line")
    listing = sub.add_parser("list", help="the releases, where they are and what the registry records")
    for p in (fetch, listing):   # also after the action; SUPPRESS keeps a --dir given before it
        p.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=dir_help)


def run(args: argparse.Namespace) -> int:
    from backend import weights

    if args.action == "fetch":
        def progress(file_name: str, done: int, total: int | None) -> None:
            if not args.no_progress:
                of = f" of {total / 1e6:.1f}" if total else ""
                print(f"\r{file_name}: {done / 1e6:.1f}{of} MB", end="", file=sys.stderr, flush=True)

        entry = weights.fetch(args.release, args.dir, progress=progress)
        if not args.no_progress:
            print(file=sys.stderr)
        files = ", ".join(f"{n} ({f['size']:,} bytes, sha256 {f['sha256'][:12]})"
                          for n, f in entry["files"].items())
        print(f"{args.release}: {files} in {entry['folder']}; {entry['verified']}")
        return 0
    folder = weights.weights_dir(args.dir)
    registry = weights.read_registry(args.dir)
    print(f"weights folder: {folder}")
    for name, rel in weights.RELEASES.items():
        entry = registry.get(name)
        if entry is None:
            print(f"  {name:<7} not fetched  ({rel.what}; `avatex weights fetch {name}`)")
            continue
        size = sum(f["size"] for f in entry["files"].values())
        print(f"  {name:<7} {size / 1e6:.1f} MB  {', '.join(entry['files'])}  {entry['verified']}  "
              f"(recorded {entry['recorded']})")
    return 0
