"""The package boundaries of docs/architecture.md, checked in fresh interpreters.

* ``avatex_core`` (shared by both sides) imports neither side, nor torch, nor bpy;
* ``backend`` never imports bpy or the add-on;
* ``blender_addon`` never imports torch or the backend.

Two checks per package: every module is imported (so a function-level import that runs at import time
is caught), and every ``import`` statement in its sources is read (so a function-level import that only
runs later is caught too).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers.scenarios import SCENARIOS

FORBIDDEN = {
    "avatex_core": ("torch", "bpy", "backend", "blender_addon"),
    "backend": ("bpy", "blender_addon"),
    "blender_addon": ("torch", "backend"),
}

def _imported_names(path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
    return names


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_package_imports_nothing_across_its_boundary_at_import_time(pkg):
    # A fresh interpreter, so nothing another test imported hides a violation.
    proc = subprocess.run([sys.executable, str(SCENARIOS / "scenario_import_package.py"), pkg,
                           ",".join(FORBIDDEN[pkg])], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_no_source_line_imports_across_the_boundary(pkg):
    bad = []
    for path in sorted((ROOT / pkg).rglob("*.py")):
        for line, name in _imported_names(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[pkg]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == [], "\n".join(bad)


def test_the_check_catches_a_violation(tmp_path):
    """The source check is not vacuous: a function-level import of torch in a file is found."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    import torch.nn\n    from backend.x import y\n")
    assert [n for _, n in _imported_names(path)] == ["torch.nn", "backend.x"]


def _relative_imports(pkg: str) -> dict[str, set[str]]:
    """module -> the modules of ``pkg`` it imports, from every import statement (function-level ones
    included: deferring an import hides a cycle from Python, not from this graph)."""
    graph: dict[str, set[str]] = {}
    root = ROOT / pkg
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = ".".join(parts[:-1])
        deps = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
                deps.update(n for n in names if (ROOT / Path(*n.split("."))).with_suffix(".py").exists()
                            or (ROOT / Path(*n.split("."))).is_dir())
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if dep == node.rsplit(".", 1)[0] or dep == node:
                continue  # a module's own package, whose __init__ ran first
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_the_addon_has_no_import_cycle():
    graph = _relative_imports("blender_addon")
    assert "blender_addon.runtime" in graph["blender_addon.preferences"]  # the graph sees real edges
    assert "blender_addon.render.loop" in graph["blender_addon.render.runner"]  # function-level ones too
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == [["p.a", "p.b", "p.c", "p.a"]]
