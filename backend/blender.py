"""Starting Blender from the backend.

The backend never imports ``bpy`` (it must run on machines without Blender, and a crash in Blender must
not take the server down). Everything that needs Blender is a script in ``render_scripts/`` run in a
subprocess: either in a Blender executable (``blender -b -P script -- args``) or in this Python when the
``bpy`` wheel is installed (``python script args``). Both accept the same arguments after the prefix this
module returns.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from backend.errors import InputError, NotAvailableError

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "render_scripts"


def has_bpy() -> bool:
    """Whether this Python can run Blender itself (the ``bpy`` wheel)."""
    return importlib.util.find_spec("bpy") is not None


def blender_command(script: str | Path, blender: str | None = None, *,
                    purpose: str = "rendering") -> list[str]:
    """The command that runs ``script`` (a name in ``render_scripts/`` or a path) in Blender, up to its
    own arguments. ``blender`` is an executable to use instead of this Python's bpy; ``purpose`` goes
    into the error when neither is available."""
    path = Path(script) if Path(script).is_absolute() else SCRIPTS / script
    if blender:
        if not (Path(blender).is_file() and os.access(blender, os.X_OK)):
            raise InputError(f"Blender executable {blender}: not an executable file")
        return [blender, "-b", "--factory-startup", "--python-exit-code", "3", "-P", str(path), "--"]
    if not has_bpy():
        raise NotAvailableError(f"{purpose} needs Blender: this Python has no bpy module; install the bpy "
                                "wheel (pip install 'avatex[blender]') or pass a Blender executable")
    return [sys.executable, str(path)]
