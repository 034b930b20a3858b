"""Render a relit dataset headless: ``blender -b -P render_scripts/render_dataset.py -- ARGS``
or ``python render_scripts/render_dataset.py ARGS`` with the ``bpy`` wheel.

ARGS are those of ``avatex render`` (see ``--help``): ``--meshes PATH... --out DATASET [--views 45]
[--step 8] [--pitch DEG...] [--levels wild,intermediate,clear] [--resolution 512] [--engine cycles|eevee]
[--samples N] [--seed S] [--shard I/N] [--up auto|y|z] ...``. Re-running resumes: finished views are
skipped. The work happens in ``blender_addon.render.runner``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _argv() -> list[str]:
    """Arguments after ``--`` (Blender passes its own before it), else everything after the script."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def main() -> int:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.append(root)  # appended: a real Blender's own numpy must win
    from blender_addon.render.runner import main as run

    return run(_argv())


if __name__ == "__main__":
    sys.exit(main())
