"""Render coloured meshes unlit from dataset cameras, headless: the image-space side of ``avatex table``.

    python render_scripts/render_views.py --job JOB.json [--progress text|jsonl] [--log FILE]
    blender -b -P render_scripts/render_views.py -- --job JOB.json

JOB.json lists meshes (``.npz`` with ``vertices``, ``faces``, ``colors``) and, per mesh, the views to
render (yaw, pitch, seed, output PNG); format and conventions in ``blender_addon/render/views.py``.
Images already on disk are skipped. Progress goes to stdout (``@avatex {json}`` lines with
``--progress jsonl``); Blender's own output goes to ``--log`` (default: discarded).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path


def _argv() -> list[str]:
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def main(argv: list[str] | None = None) -> int:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.append(root)  # appended: a real Blender's own numpy must win
    from blender_addon.render.runner import Reporter, _redirect_stdout, _restore_stdout
    from blender_addon.render.views import JobError, read_job, run_job

    parser = argparse.ArgumentParser(prog="render_views", description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="the JSON render job")
    parser.add_argument("--progress", choices=("text", "jsonl"), default="text")
    parser.add_argument("--log", help="where Blender's own output goes (default: discarded)")
    args = parser.parse_args(_argv() if argv is None else argv)
    progress, saved = _redirect_stdout(Path(args.log) if args.log else None)
    emit = Reporter(progress, args.progress) if args.progress == "jsonl" else _text(progress)
    try:
        job = read_job(args.job)
        run_job(job, emit)
        return 0
    except JobError as exc:
        emit({"event": "fatal", "error": str(exc)})
        return 2
    except Exception as exc:  # report it on the progress channel: the caller shows the message
        emit({"event": "fatal", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 3
    finally:
        progress.close()
        _restore_stdout(saved)


def _text(stream):
    def emit(event: dict) -> None:
        kind = event.get("event")
        if kind == "image":
            line = f"[avatex] {event['done']}/{event['images']} {event['out']}"
        elif kind == "done":
            line = f"[avatex] rendered {event['images']} images in {event['wall_seconds']:.1f} s"
        elif kind == "fatal":
            line = f"[avatex] error: {event['error']}"
        else:
            return
        stream.write(line + "\n")
        stream.flush()
    return emit


if __name__ == "__main__":
    sys.exit(main())
