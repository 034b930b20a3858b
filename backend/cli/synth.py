"""avatex synth: sample avatars — anny bodies with painted clothes, as textured OBJ and vertex-coloured PLY.

Each avatar i is written as DIR/<prefix><i>.{obj,mtl,png,ply,json}: the OBJ carries anny's UV layout and a
baked texture, the PLY a once-subdivided copy (~55k vertices) with vertex colours, the JSON the seed,
body sliders, outfit and height. Units are metres, z up, facing -y (like a raw scan). The same --seed
gives identical files. The first run builds anny's model cache (~100 s, ~1 GB in $ANNY_CACHE_DIR).
"""

from __future__ import annotations

import argparse

HELP = "generate sample avatars (anny bodies with painted clothes) as textured OBJ + coloured PLY"
PATHS = ("out",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, required=True, help="number of avatars to write")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--start", type=int, default=0,
                        help="index of the first avatar (to add to or shard a set; default 0)")
    parser.add_argument("--prefix", default="avatar_", help="file name prefix (default avatar_)")
    parser.add_argument("--texture-size", type=int, default=1024, metavar="PX",
                        help="side of the square texture in pixels (default 1024)")
    parser.add_argument("--subdivide", type=int, default=1, choices=(0, 1, 2),
                        help="midpoint subdivisions of the PLY copy: 0 = 13,718, 1 = ~55k, "
                             "2 = ~219k vertices (default 1)")
    parser.add_argument("--poses", action="store_true",
                        help="a random pose per avatar from anny's rig, within joint limits "
                             "(default: rest pose)")


def run(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from avatex_core.progress import Progress
    from backend.data.synth import check_options, synthesize

    check_options(args.count, args.out, start=args.start, prefix=args.prefix,
                  texture_size=args.texture_size, subdivisions=args.subdivide)
    bar = tqdm(total=args.count, unit="avatar", desc="synth", file=sys.stderr)
    done = [0]

    def progress(stage: str, fraction: float, info: dict) -> None:
        bar.set_postfix_str(f"{stage} {info.get('avatar', '')}".strip())
        finished = round(fraction * args.count)
        if finished > done[0]:
            bar.update(finished - done[0])
            done[0] = finished

    try:
        paths = synthesize(args.count, args.out, seed=args.seed, prefix=args.prefix, start=args.start,
                           texture_size=args.texture_size, subdivisions=args.subdivide, poses=args.poses,
                           progress=Progress(progress, interval_s=0.1))
    finally:
        bar.close()
    names = paths[0].stem if len(paths) == 1 else f"{paths[0].stem} .. {paths[-1].stem}"
    print(f"wrote {len(paths)} avatar(s) to {args.out}: {names} "
          f"(.obj/.mtl/.png textured, .ply vertex-coloured, .json)")
    return 0
