"""design.md §2: the add-on never imports torch; the backend never imports bpy."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

_CHECK = r"""
import importlib, pkgutil, sys
pkg = importlib.import_module({pkg!r})
for info in pkgutil.walk_packages(pkg.__path__, prefix={pkg!r} + "."):
    if "._vendor" in info.name or info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m == {forbidden!r} or m.startswith({forbidden!r} + "."))
print("LOADED", len(sys.modules), "FORBIDDEN", bad)
sys.exit(1 if bad else 0)
"""


@pytest.mark.parametrize(("pkg", "forbidden"), [("backend", "bpy"), ("blender_addon", "torch")])
def test_package_does_not_import(pkg, forbidden):
    # A fresh interpreter, so nothing another test imported hides a violation.
    proc = subprocess.run([sys.executable, "-c", _CHECK.format(pkg=pkg, forbidden=forbidden)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
