"""avatex render: relit multi-view datasets of human meshes, rendered by Blender.

Runs Blender in worker subprocesses (this Python with the ``bpy`` wheel by default, or a Blender binary
given with --blender) on ``render_scripts/render_dataset.py``, through the render library API
(``avatex_core.render_jobs``). Workers split the (subject, view) units of this shard between them;
re-running the same command resumes (finished views are skipped), and ``--shard I/N`` splits one dataset
over N machines writing into a shared folder. A bad mesh is reported and the others go on; the summary
at the end counts rendered, skipped and failed work. The format is described in docs/dataset.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avatex_core.render_options import add_arguments
from backend.blender import blender_command

HELP = "render a relit dataset (45 views x lighting levels) with Blender"
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "render_scripts" / "render_dataset.py"


def configure(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel Blender processes on this machine (default 1)")
    parser.add_argument("--blender", metavar="PATH",
                        help="a Blender executable to render with (default: this Python's bpy module)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from avatex_core import render_jobs as jobs
    from backend.errors import InputError

    def skipping(problem: str) -> None:
        print(f"avatex render: skipping {problem}", file=sys.stderr)

    try:
        request = jobs.RenderRequest.from_args(args, workers=args.workers, report=skipping)
    except jobs.RequestError as exc:
        raise InputError(str(exc)) from None
    render = jobs.DatasetRender(request, blender_command(SCRIPT, args.blender), cwd=ROOT)
    bar = tqdm(total=0, unit="img", desc="render", dynamic_ncols=True, disable=None)

    def show(event: jobs.RenderEvent) -> None:
        if event.kind == jobs.PLAN:
            bar.total = render.total_images
            bar.refresh()
        elif event.kind == jobs.SUBJECT_START:
            bar.set_postfix_str(event.data["subject"], refresh=False)
        elif event.kind == jobs.IMAGE:
            bar.update(1)
        elif event.kind == jobs.SUBJECT_FAILED:
            bar.write(f"avatex render: {event.data['subject']}: {event.data['error']}")

    try:
        summary = render.run(show)
    except KeyboardInterrupt:
        bar.close()
        print("avatex render: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    for message in summary.fatal:
        print(f"avatex render: error: {message}", file=sys.stderr)
    if summary.exit_code == 2:
        return 2
    print(f"avatex render: {summary.rendered_images} images rendered ({summary.rendered_views} views), "
          f"{summary.skipped_views} finished views skipped, {len(summary.failed)} subject(s) failed, "
          f"{len(summary.input_errors)} input error(s); {summary.images_per_minute:.1f} images/min "
          f"in {summary.wall_seconds:.0f} s -> {request.out}")
    for sid, repairs in summary.repaired.items():
        print(f"  repaired {sid}: {'; '.join(repairs)}")
    for sid, message in summary.failed.items():
        print(f"  failed {sid}: {message}")
    return summary.exit_code
