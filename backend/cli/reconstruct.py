"""Reconstruct a coloured 3D mesh of a person from one image with PIFu.

The subject is framed as PIFu expects (450 of 512 px tall, centred) using the mask: --mask if given, else
the image's alpha channel, else (a photo) an automatic person mask (backend/masks.py; --no-auto-mask
turns that off). Weights: an avatex checkpoint (--checkpoint), the official PIFu files (--net-g,
optionally --net-c; without a colour net the vertex colours come from the image), or --weights pifu for
the ones `avatex weights fetch pifu` installed.
Writes PLY or OBJ (by suffix) with per-vertex colours, in canonical space (y up, facing +z). With
--texture SIZE it writes a decimated mesh with a UV texture baked from the colour field instead: GLB, or
OBJ + MTL + PNG (docs/api.md, "Textured output"). Several calibrated views (IMG1 IMG2 ... --calibs C1 C2
..., or --dataset DS --subject S --views 0,12,24) use PIFu's multi-view mode (docs/api.md, "Several
views"). --model pifuhd reconstructs one image with the multi-level PIFuHD (its release-layout file as
--checkpoint, default the fetched weights), framed at 1024², coloured by the PIFu colour net of
--color-checkpoint or else from the image (docs/models.md, "PIFuHD").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.cli import multiview

HELP = "reconstruct a coloured mesh from one image or several calibrated views (PIFu, PIFuHD)"
PATHS = ("image", "mask", "checkpoint", "net_g", "net_c", "color_checkpoint", "out", *multiview.PATHS)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, nargs="*",
                        help="input image (PNG/JPG; RGBA alpha is the mask), or several with --calibs")
    parser.add_argument("--mask", type=Path, default=None, help="subject mask image (white = subject)")
    parser.add_argument("--no-auto-mask", action="store_true",
                        help="without alpha or --mask, fail instead of masking the person automatically")
    parser.add_argument("--mask-method", choices=("auto", "pose", "grabcut"), default="auto",
                        help="automatic mask: pose (mediapipe), grabcut, or auto (default)")
    parser.add_argument("--model", choices=("pifu", "pifuhd"), default="pifu",
                        help="pifu (default) or pifuhd, the multi-level model")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="avatex checkpoint (with --model pifuhd: a pifuhd.pt in the release layout)")
    parser.add_argument("--color-checkpoint", type=Path, default=None,
                        help="with --model pifuhd: avatex PIFu checkpoint whose colour net colours the mesh")
    parser.add_argument("--weights", choices=("pifu",), default=None,
                        help="the official weights installed by `avatex weights fetch pifu`")
    parser.add_argument("--net-g", type=Path, default=None, help="official PIFu net_G file")
    parser.add_argument("--net-c", type=Path, default=None, help="official PIFu net_C file")
    parser.add_argument("--out", type=Path, required=True,
                        help="output mesh, .ply or .obj (with --texture: .glb or .obj)")
    parser.add_argument("--texture", type=int, choices=(512, 1024, 2048, 4096), default=None, metavar="SIZE",
                        help="write a decimated mesh with a SIZE² texture baked from the colour field "
                             "(512, 1024, 2048 or 4096)")
    parser.add_argument("--faces", type=int, default=20_000,
                        help="face budget of the textured mesh (default 20000)")
    parser.add_argument("--texture-detail", choices=("net", "image", "blend"), default="net",
                        help="with --texture: the colour field only (net, default), or the input image on "
                             "the side the camera sees (image), or the net plus the image's fine detail "
                             "(blend); docs/api.md, 'Visible-side detail'")
    parser.add_argument("--texture-smooth", type=float, default=None, metavar="SIGMA",
                        help="with --texture: Gaussian low-pass of the colour field along the surface, "
                             "sigma in canonical units (the subject is 1.76 tall, so about metres; "
                             "default chosen on validation avatars, docs/api.md; 0 keeps the field as "
                             "queried)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--resolution", type=int, default=256, help="grid cells per axis (default 256)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--upsample", choices=("bicubic", "nearest"), default=None,
                        help="hourglass upsampling for official weights (default bicubic, as committed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    multiview.configure(parser)


def run(args: argparse.Namespace) -> int:
    from backend.errors import InputError

    if args.texture is not None:
        if args.out.suffix.lower() not in (".glb", ".obj"):
            raise InputError(f"with --texture, --out must end in .glb or .obj, got {args.out.name!r}")
        if args.faces < 100:
            raise InputError(f"--faces must be at least 100, got {args.faces}")
        if args.texture_smooth is not None and not 0 <= args.texture_smooth <= 0.1:
            raise InputError(f"--texture-smooth must be in [0, 0.1] canonical units, "
                             f"got {args.texture_smooth}")
    elif args.texture_smooth is not None:
        raise InputError("--texture-smooth needs --texture")
    elif args.out.suffix.lower() not in (".ply", ".obj"):
        raise InputError(f"--out must end in .ply or .obj (.glb needs --texture), got {args.out.name!r}")
    if args.model == "pifuhd":
        if args.net_g is not None or args.net_c is not None or args.weights is not None:
            raise InputError("--net-g/--net-c/--weights are PIFu's files; "
                             "--model pifuhd takes --checkpoint PIFUHD.pt")
        if args.texture is not None:
            raise InputError("--texture is not available with --model pifuhd yet; write a .ply/.obj")
        if args.checkpoint is None:
            from backend.weights import pifuhd_checkpoint

            args.checkpoint = pifuhd_checkpoint()
    else:
        if args.color_checkpoint is not None:
            raise InputError("--color-checkpoint is for --model pifuhd (PIFu has its own colour net)")
        given = [args.checkpoint is not None, args.net_g is not None or args.net_c is not None,
                 args.weights is not None]
        if not any(given):
            raise InputError("give the weights: --checkpoint CKPT, --net-g NET_G [--net-c NET_C], "
                             "or --weights pifu")
        if sum(given) > 1:
            raise InputError("give one of --checkpoint, --net-g/--net-c or --weights, not several")
    if args.net_c is not None and args.net_g is None:
        raise InputError("--net-c needs --net-g")
    from backend.images import read_image
    from backend.server.paths import check_output, write_output

    check_output(args.out, args.overwrite, "--out")   # before the work, not after it
    views = multiview.views_from_args(args)
    if views is not None and args.texture is not None:
        raise InputError("--texture bakes from one image; drop --texture to reconstruct from several views")
    if views is not None and args.model == "pifuhd":
        raise InputError("several views are PIFu's multi-view mode; --model pifuhd takes one image")
    image = read_image(args.image[0]) if views is None else None
    mask = None if args.mask is None else read_image(args.mask, "L")
    mask_note = ""
    if views is None and mask is None and not args.no_auto_mask:
        from backend.masks import has_cutout, person_mask

        if not has_cutout(image):
            auto = person_mask(image, args.mask_method)
            mask = auto.mask
            mask_note = f"; automatic {auto.method} mask" + (f" ({auto.note})" if auto.note else "")

    from tqdm import tqdm

    from avatex_core.progress import Progress
    from backend.meshio import save_mesh
    from backend.models.checkpoint import load_checkpoint, load_official
    from backend.recon import reconstruct, reconstruct_views

    if args.model == "pifuhd":
        from backend.recon.pifuhd import load_pifuhd_recon

        model = load_pifuhd_recon(args.checkpoint, args.color_checkpoint, device=args.device)
    elif args.checkpoint is not None:
        model, _ = load_checkpoint(args.checkpoint, device=args.device)
    elif args.weights is not None:
        from backend.weights import installed

        files = installed(args.weights)
        model = load_official(files["net_G"], files["net_C"], upsample=args.upsample, device=args.device)
    else:
        model = load_official(args.net_g, args.net_c, upsample=args.upsample, device=args.device)

    bar = None if args.no_progress else tqdm(total=100, unit="%", file=sys.stderr, leave=False,
                                             bar_format="{desc:<10} {bar} {percentage:3.0f}%")
    spans = {"frame": (0, 2), "encode": (2, 15), "occupancy": (15, 85), "mesh": (85, 90), "color": (90, 95),
             "texture": (95, 100)}

    def progress(stage: str, fraction: float, info: dict) -> None:
        if bar is None:
            return
        lo, hi = spans.get(stage, (0, 100))
        bar.set_description_str(stage)
        bar.n = lo + (hi - lo) * fraction
        bar.refresh()

    textured = None
    try:
        if views is not None:
            result = reconstruct_views(model, views, resolution=args.resolution, device=args.device,
                                       progress=Progress(progress, interval_s=0.1))
        elif args.texture is None:
            result = reconstruct(model, image, mask, resolution=args.resolution, device=args.device,
                                 progress=Progress(progress, interval_s=0.1))
        else:
            from backend.recon.texture import reconstruct_textured

            smooth = {} if args.texture_smooth is None else {"smooth": args.texture_smooth}

            result, textured = reconstruct_textured(model, image, mask, texture_size=args.texture,
                                                    target_faces=args.faces, resolution=args.resolution,
                                                    detail=args.texture_detail, **smooth,
                                                    device=args.device,
                                                    progress=Progress(progress, interval_s=0.1))
    finally:
        if bar is not None:
            bar.close()
    s = result.stats
    if textured is not None:
        from backend.recon.texture import save_textured

        written = save_textured(args.out, textured, overwrite=args.overwrite)
        t = textured.stats
        print(f"wrote {', '.join(str(p) for p in written)}: {t['faces']} faces (from {t['source_faces']}), "
              f"{args.texture}² texture ({t['coverage']:.0%} covered"
              f"{'' if args.texture_detail == 'net' else f', {args.texture_detail} detail'}), "
              f"{s['seconds']['total']:.1f} s "
              f"reconstruction + {sum(t['seconds'].values()):.1f} s texture on {s['device']}{mask_note}")
        return 0
    write_output(args.out, lambda p: save_mesh(p, result.vertices, result.faces, result.colors),
                 args.overwrite, "--out")
    print(f"wrote {args.out}: {s['vertices']} vertices, {s['faces']} faces from {s['views']} view(s), "
          f"{s['points_evaluated']} points evaluated at resolution {s['resolution']}, "
          f"{s['seconds']['total']:.1f} s on {s['device']}{mask_note}")
    return 0
