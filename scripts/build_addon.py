#!/usr/bin/env python
"""Build the avatex Blender extension: one zip per platform in dist/.

    python scripts/build_addon.py [--out dist] [--cache .cache/wheels] [--offline]

What it does, in order:

1. Reads ``blender_addon/blender_manifest.toml``; its version must equal pyproject's.
2. Makes sure every wheel the manifest lists is in the cache (``.cache/wheels``), downloading the missing
   ones with ``pip download --only-binary=:all: --python-version ... --platform ... --no-deps``. The
   wheel file names in the manifest are the single source of truth: the pip arguments are read off
   them, and a download that yields any other file is an error. With the cache filled the build runs
   offline.
3. Builds the shared package ``avatex_core`` (pure Python, used by both the backend and the add-on) as
   a ``py3-none-any`` wheel, and stages the add-on in a temporary folder: the ``blender_addon`` sources
   and every wheel in ``wheels/``. Blender installs bundled wheels when it installs the extension, so
   the add-on imports ``avatex_core`` exactly as a source checkout does, and needs nothing outside its
   zip.
4. Runs Blender's own extension builder from the ``bpy`` wheel (``bl_pkg/cli/blender_ext.py validate``
   and ``build --split-platforms``), then rewrites each zip with sorted entries, fixed timestamps and
   fixed permissions, so that the same sources always give byte-identical zips, and validates them.

Idempotent: a second run replaces the zips with identical ones.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "blender_addon"
MANIFEST = ADDON / "blender_manifest.toml"
CORE = ROOT / "avatex_core"
CORE_WHEEL_PREFIX = "avatex_core-"
STAGE_EXCLUDE = {"__pycache__", "wheels"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


class BuildError(Exception):
    pass


def read_manifest() -> dict:
    with open(MANIFEST, "rb") as fh:
        manifest = tomllib.load(fh)
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project_version = tomllib.load(fh)["project"]["version"]
    if manifest["version"] != project_version:
        raise BuildError(f"{MANIFEST.relative_to(ROOT)} has version {manifest['version']} but pyproject.toml "
                         f"has {project_version}; make them equal")
    return manifest


def pip_download_args(wheel: str) -> list[str]:
    """The ``pip download`` arguments that fetch exactly the wheel named ``wheel``."""
    m = _WHEEL_RE.match(wheel)
    if m is None:
        raise BuildError(f"{wheel!r} is not a wheel file name (name-version-python-abi-platform.whl)")
    py = m["py"]
    if not re.fullmatch(r"cp3\d+", py):
        raise BuildError(f"{wheel}: only CPython wheels (cp3XX) can be bundled, not {py}")
    args = ["--only-binary=:all:", "--no-deps", "--implementation", "cp",
            "--python-version", f"3.{py[3:]}", "--abi", m["abi"]]
    for plat in m["plat"].split("."):
        args += ["--platform", plat]
    name = m["name"].replace("_", "-")
    return [*args, f"{name}=={m['version']}"]


def check_wheel_versions(wheels: list[str]) -> None:
    """Per package and platform, the cp311 wheel must have the highest version of all.

    Blender 4.2 does not filter an extension's wheels by Python version: of several wheels of one
    package it installs the one with the highest version (ties: the larger file name, which would be
    cp312-abi3). Newer Blenders filter by Python version first, so an older abi3 wheel still serves
    Python 3.12+ there.
    """
    best: dict[tuple[str, str], tuple[tuple[int, ...], str]] = {}
    for wheel in wheels:
        m = _WHEEL_RE.match(wheel)
        if m is None:
            raise BuildError(f"{wheel!r} is not a wheel file name")
        version = tuple(int(x) for x in re.findall(r"\d+", m["version"]))
        key = (m["name"].lower(), m["plat"])
        if key not in best or (version, m["py"]) > best[key]:
            best[key] = (version, m["py"])
    for (name, plat), (_, py) in best.items():
        if py != "cp311":
            raise BuildError(f"{name} for {plat}: the highest-versioned wheel is {py}, but Blender 4.2 "
                             "installs the highest version whatever its Python tag; the cp311 wheel must "
                             "be the newest")


def ensure_wheels(wheels: list[str], cache: Path, offline: bool) -> list[Path]:
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for wheel in wheels:
        target = cache / wheel
        if not (target.is_file() and zipfile.is_zipfile(target)):
            if offline:
                raise BuildError(f"{wheel} is not in {cache} and --offline forbids downloading it")
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
                cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", tmp, *pip_download_args(wheel)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                got = sorted(p.name for p in Path(tmp).glob("*.whl"))
                if proc.returncode != 0 or wheel not in got:
                    raise BuildError(f"could not download {wheel} (pip exit {proc.returncode}, got {got}):\n"
                                     f"{proc.stderr.strip()[-2000:]}")
                os.replace(Path(tmp) / wheel, target)  # whole files only: a killed download leaves no wheel
        paths.append(target)
    return paths


def build_core_wheel(wheel_name: str, dest: Path) -> Path:
    """Write ``avatex_core`` as the pure wheel ``wheel_name`` (PEP 427) with fixed bytes.

    Written with ``zipfile`` rather than a build backend so that the same sources always give the same
    bytes (sorted entries, fixed dates) and the build needs no toolchain beyond this Python.
    """
    m = _WHEEL_RE.match(wheel_name)
    if m is None or m["name"] != "avatex_core" or (m["py"], m["abi"], m["plat"]) != ("py3", "none", "any"):
        raise BuildError(f"{wheel_name}: list the shared package as avatex_core-VERSION-py3-none-any.whl")
    version = m["version"]
    init = (CORE / "__init__.py").read_text()
    declared = re.search(r'^__version__ = "([^"]+)"', init, re.MULTILINE)
    if declared is None or declared[1] != version:
        raise BuildError(f"avatex_core/__init__.py declares version {declared and declared[1]}, the manifest "
                         f"lists {wheel_name}; make them equal")
    files: dict[str, bytes] = {}
    for source in sorted(CORE.rglob("*.py")):
        text = source.read_text()
        if re.search(r"^\s*(from|import)\s+(backend|blender_addon|torch|bpy)\b", text, re.MULTILINE):
            raise BuildError(f"{source.relative_to(ROOT)} imports backend, blender_addon, torch or bpy; "
                             "avatex_core must stay pure (standard library, numpy, pyzmq)")
        files[source.relative_to(ROOT).as_posix()] = source.read_bytes()
    info = f"avatex_core-{version}.dist-info"
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: avatex_core\nVersion: {version}\n"
                                 "Summary: avatex's shared core (canonical space, protocol, dataset layout)\n"
                                 "License: Apache-2.0\nRequires-Python: >=3.11\n").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: avatex build_addon\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n")
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join(record) + f"\n{info}/RECORD,,\n").encode()
    path = dest / wheel_name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            entry.external_attr = 0o100644 << 16
            zf.writestr(entry, data, compresslevel=9)
    return path


def stage(stage_dir: Path, wheels: list[Path]) -> None:
    shutil.copytree(ADDON, stage_dir, ignore=lambda d, names: [
        n for n in names if n in STAGE_EXCLUDE or n.endswith((".pyc", ".zip"))])
    (stage_dir / "wheels").mkdir()
    for wheel in wheels:
        shutil.copyfile(wheel, stage_dir / "wheels" / wheel.name)


def blender_ext_tool() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy wheel is not installed in this Python; run scripts/env.sh first")
    tool = "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
    found = sorted(Path(spec.submodule_search_locations[0]).glob(tool))
    if not found:
        raise BuildError(f"Blender's extension builder ({tool}) is missing from the bpy wheel")
    return found[-1]


def run_tool(tool: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    if proc.returncode != 0 or "FATAL_ERROR" in proc.stdout or "Error" in proc.stderr:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{proc.stdout}\n{proc.stderr}".strip())


def normalize_zip(source: Path, dest: Path) -> None:
    """Rewrite ``source`` as ``dest`` with sorted entries, a fixed date and 0644 permissions."""
    tmp = dest.with_name("." + dest.name + ".tmp")
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(tmp, "w") as zout:
        for info in sorted(zin.infolist(), key=lambda i: i.filename):
            out = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            out.compress_type = info.compress_type
            out.create_system = 3
            out.external_attr = (0o40755 << 16) | 0x10 if info.is_dir() else 0o100644 << 16
            zout.writestr(out, zin.read(info.filename), compress_type=info.compress_type, compresslevel=9)
    os.replace(tmp, dest)


def build(out_dir: Path, cache: Path, offline: bool = False) -> list[Path]:
    manifest = read_manifest()
    listed = [w.removeprefix("./wheels/") for w in manifest.get("wheels", [])]
    core = [w for w in listed if w.startswith(CORE_WHEEL_PREFIX)]
    wheels = [w for w in listed if not w.startswith(CORE_WHEEL_PREFIX)]
    if len(core) != 1:
        raise BuildError(f"{MANIFEST.relative_to(ROOT)} must list exactly one avatex_core wheel, "
                         f"lists {core}")
    check_wheel_versions(wheels)
    wheel_paths = ensure_wheels(wheels, cache, offline)
    tool = blender_ext_tool()
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    # A private staging folder: concurrent builds (CI, tests, a developer) never share one.
    with tempfile.TemporaryDirectory(prefix="avatex-addon-") as tmp:
        work = Path(tmp)
        wheel_paths.append(build_core_wheel(core[0], work))
        stage_dir = work / manifest["id"]
        stage(stage_dir, wheel_paths)
        run_tool(tool, "validate", str(stage_dir))
        raw = work / "raw"
        raw.mkdir()
        run_tool(tool, "build", "--split-platforms", "--source-dir", str(stage_dir), "--output-dir", str(raw))
        built = sorted(raw.glob("*.zip"))
        if len(built) != len(manifest.get("platforms", [None])):
            raise BuildError(f"expected one zip per platform {manifest.get('platforms')}, "
                             f"got {[p.name for p in built]}")
        for zip_path in built:
            dest = out_dir / zip_path.name
            normalize_zip(zip_path, dest)
            run_tool(tool, "validate", str(dest))
            outputs.append(dest)
    keep = {p.name for p in outputs}
    for stale in out_dir.glob(f"{manifest['id']}-*.zip"):
        if stale.name not in keep:
            stale.unlink()
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "wheels",
                        help="wheel cache, reused offline when filled (default: .cache/wheels)")
    parser.add_argument("--offline", action="store_true", help="never download; use the cache only")
    args = parser.parse_args(argv)
    try:
        outputs = build(args.out.resolve(), args.cache.resolve(), args.offline)
    except BuildError as exc:
        print(f"build_addon: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"zips": [{"path": str(p), "bytes": p.stat().st_size,
                                "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in outputs]},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
