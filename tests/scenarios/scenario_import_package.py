"""Import every module of one package in a fresh interpreter and list the forbidden ones it pulled in.

``python scenario_import_package.py PACKAGE FORBIDDEN[,FORBIDDEN...]`` with the repository on
PYTHONPATH; prints ``LOADED n FORBIDDEN [...]`` and exits 1 when the list is not empty. Fresh, so that
nothing another test imported hides a violation.
"""

import importlib
import pkgutil
import sys


def forbidden_imports(package: str, forbidden: tuple[str, ...]) -> list[str]:
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    return sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))


if __name__ == "__main__":
    bad = forbidden_imports(sys.argv[1], tuple(sys.argv[2].split(",")))
    print("LOADED", len(sys.modules), "FORBIDDEN", bad)
    sys.exit(1 if bad else 0)
