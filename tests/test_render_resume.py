"""A run killed mid-way and re-run completes the dataset, with no corrupt or duplicated file; shards
rendering into one folder at the same time give the same dataset as one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avatex_core import dataset_layout as layout
from avatex_core.render_jobs import VIEW_DONE, parse_event_line
from backend.data.dataset import Dataset
from tests.conftest import ROOT
from tests.helpers.render import SCRIPT, avatar, events_of, read_rgba, render

pytestmark = pytest.mark.blender

ARGS = ["--views", "6", "--step", "60", "--resolution", "64", "--samples", "4", "--levels", "wild,clear"]
EXPECTED_FILES = {"albedo.png", "wild.png", "clear.png", "view.json"}


@pytest.fixture(scope="module")
def mesh():
    return avatar("avatar_0002", ".ply")


@pytest.fixture(scope="module")
def reference(mesh, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "ds"
    rc, events, err = render(["--meshes", mesh, "--out", out, *ARGS])
    assert rc == 0, (events, err)
    return out


def _images(root):
    ds = Dataset(root)
    out = {}
    for sid in ds.subjects():
        for view in ds.views_of(sid):
            vdir = ds.view_dir(sid, view)
            for png in vdir.glob("*.png"):
                out[(sid, view, png.name)] = read_rgba(png)
    return out


def _records_without_timings(root):
    out = {}
    for path in sorted(root.rglob("view.json")):
        record = json.loads(path.read_text())
        record.pop("render")
        out[path.relative_to(root)] = record
    return out


def _assert_same_dataset(a, b):
    ia, ib = _images(a), _images(b)
    assert set(ia) == set(ib) and len(ia) == 6 * 3
    for key in ia:
        np.testing.assert_array_equal(ia[key], ib[key], err_msg=str(key))
    assert _records_without_timings(a) == _records_without_timings(b)


def test_killed_run_resumes_to_the_same_dataset(mesh, reference, tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--meshes", str(mesh), "--out", str(out), *ARGS,
                             "--progress", "jsonl"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    views_done = images = 0
    try:
        for line in proc.stdout:
            event = parse_event_line(line)
            if event is None:
                continue
            views_done += event["event"] == "view_done"
            images += event["event"] == "image"
            if views_done >= 2 and event["event"] == "image":
                break  # the next image of view 3 is being rendered right now
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and views_done >= 2

    sdir = out / "subjects" / "avatar_0002"
    finished = [v for v in range(6) if layout.view_finished(sdir / "views" / f"v{v:03d}", ["wild", "clear"],
                                                             json.loads((out / "manifest.json").read_text())
                                                             ["settings_hash"])]
    assert 2 <= len(finished) < 6
    # Whatever the killed run left: every non-temporary PNG is complete (atomic renames).
    for png in out.rglob("*.png"):
        if layout.TMP_MARK not in png.name:
            assert layout.png_complete(png), png
    # A stale temporary like a killed writer leaves, in an unfinished view and in the subject folder.
    unfinished = sdir / "views" / f"v{max(finished) + 1:03d}"
    unfinished.mkdir(parents=True, exist_ok=True)
    (unfinished / f"wild{layout.TMP_MARK}abc123.png").write_bytes(b"\x89PNG half")
    (sdir / f"mesh{layout.TMP_MARK}zz.ply").write_bytes(b"ply half")

    rc, events, err = render(["--meshes", mesh, "--out", out, *ARGS])
    assert rc == 0, (events, err)
    plan = next(e for e in events if e["event"] == "plan")
    assert plan["views_pending"] == 6 - len(finished)
    done = next(e for e in events if e["event"] == "done")
    assert done["rendered_views"] == 6 - len(finished)

    assert not [p for p in out.rglob(f"*{layout.TMP_MARK}*") if p.is_file()]
    for v in range(6):
        assert {p.name for p in (sdir / "views" / f"v{v:03d}").iterdir()} == EXPECTED_FILES
    _assert_same_dataset(out, reference)


def test_shards_sharing_a_folder_make_the_same_dataset(mesh, reference, tmp_path):
    out = tmp_path / "ds"
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), "--meshes", str(mesh), "--out", str(out), *ARGS,
                               "--shard", f"{i}/2", "--progress", "jsonl"], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT) for i in range(2)]
    rendered = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        assert p.returncode == 0, stdout
        rendered.append(sum(e["event"] == VIEW_DONE for e in events_of(stdout)))
    assert sorted(rendered) == [3, 3]  # disjoint halves of the 6 views
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["subjects"]) == ["avatar_0002"] and manifest["failed"] == {}
    _assert_same_dataset(out, reference)
    assert Dataset(out).gt_mesh("avatar_0002").vertices.shape == Dataset(reference).gt_mesh(
        "avatar_0002").vertices.shape


def _worker_pids(out) -> list[int]:
    """Blender worker processes rendering into ``out`` (Linux /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"render_dataset.py") for a in args) and str(out).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc to find the worker")
def test_a_crashing_worker_fails_only_its_subject(tmp_path):
    """Blender dying inside a subject (importer crash, out of memory): that subject is reported, a fresh
    worker renders the others, and a later run completes the crashed one."""
    out = tmp_path / "ds"
    args = ["--meshes", avatar("avatar_0000", ".ply"), avatar("avatar_0001", ".ply"), "--out", out,
            "--views", "12", "--step", "30", "--resolution", "48", "--samples", "2", "--levels", "clear"]
    proc = subprocess.Popen([sys.executable, "-m", "backend", "render", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("subjects/*/views/v*/view.json")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    pids = _worker_pids(out)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout + stderr
    ds = Dataset(out)
    assert len(ds.failed) == 1
    (crashed, message), = ds.failed.items()
    assert "Blender exited with code -9 while rendering it" in message and crashed in stdout + stderr
    other = ({"avatar_0000", "avatar_0001"} - {crashed}).pop()
    assert ds.views_of(other) == list(range(12))
    again = subprocess.run([sys.executable, "-m", "backend", "render", *map(str, args)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    ds = Dataset(out)
    assert ds.failed == {} and ds.views_of(crashed) == list(range(12))
