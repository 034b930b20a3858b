"""Benchmark: importing a 1M-vertex / 2M-triangle mesh with colours and two float attributes.

    .venv/bin/python benchmarks/bench_mesh_import.py [--size 1000] [--repeats 3]

Compares, in the same process on the same arrays:

* ``import_mesh`` - the add-on's one-shot attribute-buffer path (position / .corner_vert foreach_set,
  Blender derives the edges in ``update()``);
* ``StagedImport`` - the add-on's timer path (edges derived in numpy in bounded steps), total time and
  its longest single step;
* the baseline ``Mesh.from_pydata`` + ``update()``, followed by the same colour and attribute writes.

Prints one JSON object; ``ratio`` is baseline / one-shot time (best of ``--repeats``). Timings on a
shared 2-core machine are noisy: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bpy  # noqa: E402

from blender_addon import mesh_import  # noqa: E402


def torus(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n x n torus grid: n^2 vertices, 2 n^2 triangles, closed and manifold."""
    u = np.linspace(0, 2 * np.pi, n, endpoint=False)
    uu, vv = np.meshgrid(u, u, indexing="ij")
    r = 1.0 + 0.3 * np.cos(vv)
    verts = np.stack([r * np.cos(uu), r * np.sin(uu), 0.3 * np.sin(vv)], -1).reshape(-1, 3)
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    a, b = i * n + j, ((i + 1) % n) * n + j
    c, d = ((i + 1) % n) * n + (j + 1) % n, i * n + (j + 1) % n
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts.astype(np.float32), tris.astype(np.int32)


def clear() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)


def baseline(verts, tris, colors, floats) -> None:
    mesh = bpy.data.meshes.new("baseline")
    mesh.from_pydata(verts, [], tris)
    mesh.update()
    mesh_import.set_point_colors(mesh, "Col", colors)
    for name, values in floats.items():
        mesh_import.set_point_floats(mesh, name, values)
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("baseline", mesh))


def timed(fn) -> float:
    clear()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1000, help="torus grid size: size^2 vertices")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    verts, tris = torus(args.size)
    rng = np.random.default_rng(0)
    colors = rng.random((len(verts), 3), dtype=np.float32)
    patd = (rng.random(len(verts), dtype=np.float32) * 25).astype(np.float32)
    floats = {"patd": patd, "pipatd": patd * 0.5}

    one_shot = [timed(lambda: mesh_import.import_mesh("fast", verts, tris, colors, floats=floats))
                for _ in range(args.repeats)]
    staged, staged_step = [], []
    for _ in range(args.repeats):
        clear()
        job = mesh_import.StagedImport("staged", verts, tris, colors, floats=floats)
        steps = []
        while True:
            t0 = time.perf_counter()
            more = job.step()
            steps.append(time.perf_counter() - t0)
            if not more:
                break
        staged.append(sum(steps))
        staged_step.append(max(steps))
    base = [timed(lambda: baseline(verts, tris, colors, floats)) for _ in range(max(1, args.repeats - 1))]
    clear()

    best = min(one_shot)
    print(json.dumps({
        "benchmark": "mesh_import",
        "blender": bpy.app.version_string,
        "vertices": int(len(verts)),
        "triangles": int(len(tris)),
        "attributes": ["Col (FLOAT_COLOR)", "patd", "pipatd"],
        "one_shot_s": round(best, 4),
        "staged_total_s": round(min(staged), 4),
        "staged_longest_step_s": round(min(staged_step), 4),
        "from_pydata_s": round(min(base), 4),
        "ratio": round(min(base) / best, 2),
        "staged_ratio": round(min(base) / min(staged), 2),
        "repeats": args.repeats,
        "runs": {"one_shot": [round(t, 4) for t in one_shot], "staged": [round(t, 4) for t in staged],
                 "from_pydata": [round(t, 4) for t in base]},
        "note": "best of repeats on a shared 2-core machine; timings are noisy, ratios less so",
    }, indent=2))


if __name__ == "__main__":
    main()
