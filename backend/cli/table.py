"""avatex table: evaluate checkpoints on a dataset's test split, per lighting level (the paper's table).

Every test subject's input view(s) are reconstructed by every model at every lighting level, brought back
into the GT's canonical space and scored: PATD / PIPATD (CIEDE2000, k reported), geometry (Chamfer,
point-to-surface, normal consistency; cm when the subject's unit is known) and, with Blender, PSNR /
SSIM of unlit renders against the dataset's albedo images on the input view and on novel views.
Models that share their geometry net (colour fine-tunes of one baseline) share one reconstruction.

Writes OUT/table.md and OUT/table.csv (metric x level rows, one column per model, best in bold) and
OUT/evaluation.json (settings, per-item values); prints the Markdown table. Re-running into the same
OUT resumes: items already in evaluation.json are kept. docs/metrics.md has the protocol.
"""

from __future__ import annotations

import argparse

HELP = "evaluate checkpoints on a dataset's test split per lighting level and write the results table"
PATHS = ("runs", "data", "out", "blender")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", required=True, metavar="RUN",
                        help="run folders (their last checkpoint) or checkpoint files")
    parser.add_argument("--data", required=True, metavar="DATASET", help="a relit dataset (avatex render)")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="column names, one per --runs (default: the run folder / file names)")
    parser.add_argument("--levels", nargs="+", metavar="LEVEL",
                        help="lighting levels (default: all of the dataset's; commas also separate)")
    parser.add_argument("--views", nargs="+", type=int, metavar="INDEX",
                        help="input view indices per test subject (default: 0, the frontal view)")
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="which subjects to evaluate (default test)")
    parser.add_argument("--resolution", type=int, default=256, help="reconstruction grid (default 256)")
    parser.add_argument("--k", type=int, default=8, help="neighbours for PIPATD (default 8)")
    parser.add_argument("--novel-views", type=int, default=4, metavar="N",
                        help="other dataset views rendered for the image metrics (default 4)")
    parser.add_argument("--no-image-metrics", action="store_true",
                        help="skip the Blender renders (no PSNR / SSIM)")
    parser.add_argument("--geometry-samples", type=int, default=None, metavar="N",
                        help="surface samples per mesh for the geometry metrics (default 20,000)")
    parser.add_argument("--keep-meshes", action="store_true",
                        help="keep every reconstruction (PLY), its per-vertex errors (.npz) and renders "
                             "under OUT/<model>/<subject>/")
    parser.add_argument("--out", default="table", metavar="DIR", help="output folder (default ./table)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    parser.add_argument("--blender", metavar="PATH",
                        help="a Blender executable for the renders (default: this Python's bpy module)")
    parser.add_argument("--no-progress-bar", action="store_true", help="no tqdm bar")


def default_names(runs: list[str]) -> list[str]:
    """Column names from paths: a run folder's name, a checkpoint's stem (its run's name for
    RUN/checkpoints/step-N.pt), made unique with a suffix where two collide."""
    from pathlib import Path

    names = []
    for r in runs:
        p = Path(r)
        if p.suffix == ".pt" and p.parent.name == "checkpoints":
            name = f"{p.parent.parent.name}@{p.stem.removeprefix('step-').lstrip('0') or '0'}"
        elif p.suffix == ".pt":
            name = p.stem
        else:
            name = p.name if p.name not in ("", ".") else str(p)
        names.append(name)
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n}#{seen[n]}")
    return out


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from avatex_core.progress import Progress
    from backend.errors import InputError
    from backend.evaluation import evaluate_runs
    from backend.evaluation.run import GEOMETRY_SAMPLES

    if args.names is not None and len(args.names) != len(args.runs):
        raise InputError(f"--names gives {len(args.names)} name(s) for {len(args.runs)} run(s)")
    names = args.names or default_names(args.runs)
    if len(set(names)) != len(names):
        raise InputError(f"model names must differ: {names}")
    levels = None
    if args.levels:
        levels = [lv.strip() for item in args.levels for lv in item.split(",") if lv.strip()]
    out = Path(args.out)
    bar = tqdm(total=1000, desc="table", file=sys.stderr, disable=True if args.no_progress_bar else None,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def progress(stage: str, fraction: float, info: dict) -> None:
        detail = stage
        if stage == "reconstruct" and "subject" in info:
            detail = f"reconstruct {info['subject']} v{int(info['view']):03d} {info['level']}"
        elif stage == "render" and "done" in info:
            detail = f"render {info['done']}/{info['images']}"
        elif stage == "load" and "model" in info:
            detail = f"load {info['model']}"
        bar.set_postfix_str(detail, refresh=False)
        bar.update(max(0, round(fraction * 1000) - bar.n))

    try:
        evaluation = evaluate_runs(
            dict(zip(names, args.runs, strict=True)), args.data, split=args.split, levels=levels,
            views=args.views, resolution=args.resolution, k=args.k, device=args.device,
            image_metrics=not args.no_image_metrics, novel_views=args.novel_views, out_dir=out,
            keep_meshes=args.keep_meshes, progress=Progress(progress, interval_s=0.1), blender=args.blender,
            geometry_samples=args.geometry_samples or GEOMETRY_SAMPLES)
    finally:
        bar.close()
    md, csv_path = evaluation.write_tables(out / "table")
    print(evaluation.markdown(), end="")
    failed = sum(1 for r in evaluation.per_item if r.get("error"))
    lpips = evaluation.stats.get("lpips", {})
    notes = [f"k = {args.k}; {len(evaluation.per_item)} item(s) in {out / 'evaluation.json'}; "
             f"tables {md}, {csv_path}"]
    if failed:
        notes.append(f"{failed} item(s) failed (no surface reconstructed); see evaluation.json")
    if not args.no_image_metrics and not lpips.get("available"):
        notes.append(f"LPIPS skipped: {lpips.get('reason')}")
    for s in evaluation.stats.get("skipped", []):
        notes.append(f"skipped {s['subject']} view {s['view']}: {s['reason']}")
    for note in notes:
        print(note, file=sys.stderr)
    return 0
