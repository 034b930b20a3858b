"""Benchmark: painting one sample avatar (texture bake + dense vertex colours), no anny needed.

    .venv/bin/python benchmarks/bench_synth.py [--size 1024] [--repeats 3]

Runs on a committed fixture body (tests/fixtures/avatars/avatar_0000 + the committed part weights) and
measures, in the same process:

* ``rasterize``: `backend.data.synth.rasterize_uv`, all 27,420 UV triangles at once (chunked numpy);
* ``baseline_rasterize``: the same texel coverage found triangle by triangle in a Python loop, numpy per
  bounding box: the straightforward implementation;
* ``bake``: the whole `bake_texture` (rasterise, paint every texel at its 3D point, dilate seams);
* ``paint_avatar``: bake + once-subdivided PLY colours (~55k vertices): what `avatex synth` spends per
  avatar besides anny's forward pass.

Prints one JSON object; ``ratio`` = baseline_rasterize / rasterize (best of ``--repeats``). Timings on a
shared 2-core machine are noisy: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.data.synth import Outfit, bake_texture, landmarks, paint_avatar, rasterize_uv  # noqa: E402

AVATARS = ROOT / "tests" / "fixtures" / "avatars"


def read_obj(path: Path):
    v, vt, f = [], [], []
    for line in path.read_text(encoding="ascii").splitlines():
        if line.startswith("v "):
            v.append(line[2:].split())
        elif line.startswith("vt "):
            vt.append(line[3:].split())
        elif line.startswith("f "):
            f.append(line[2:].replace("/", " ").split())
    faces = np.array(f, dtype=np.int64) - 1
    return (np.array(v, dtype=np.float64), faces[:, 0::2], np.array(vt, dtype=np.float64), faces[:, 1::2])


def baseline_rasterize(uv: np.ndarray, face_uv: np.ndarray, size: int):
    texels, faces = [], []
    for k, tri in enumerate(uv[face_uv]):
        x = tri[:, 0] * size - 0.5
        y = (1.0 - tri[:, 1]) * size - 0.5
        xs = np.arange(max(int(np.ceil(x.min())), 0), min(int(np.floor(x.max())), size - 1) + 1)
        ys = np.arange(max(int(np.ceil(y.min())), 0), min(int(np.floor(y.max())), size - 1) + 1)
        if len(xs) == 0 or len(ys) == 0:
            continue
        cx, cy = np.meshgrid(xs, ys)
        det = (y[1] - y[2]) * (x[0] - x[2]) + (x[2] - x[1]) * (y[0] - y[2])
        if abs(det) < 1e-12:
            continue
        l0 = ((y[1] - y[2]) * (cx - x[2]) + (x[2] - x[1]) * (cy - y[2])) / det
        l1 = ((y[2] - y[0]) * (cx - x[2]) + (x[0] - x[2]) * (cy - y[2])) / det
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (1 - l0 - l1 >= -1e-9)
        texels.append((cy * size + cx)[inside])
        faces.append(np.full(inside.sum(), k))
    return np.concatenate(texels), np.concatenate(faces)


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    v, f, uv, fuv = read_obj(AVATARS / "avatar_0000.obj")
    w = np.load(AVATARS / "anny_part_weights.npz")["weights"]
    outfit = Outfit.from_dict(json.loads((AVATARS / "avatar_0000.json").read_text())["outfit"])
    marks = landmarks(v, w)

    t_fast, (texel, _, _) = best(lambda: rasterize_uv(uv, fuv, args.size), args.repeats)
    t_base, (texel_b, _) = best(lambda: baseline_rasterize(uv, fuv, args.size), args.repeats)
    same = set(texel.tolist()) == set(texel_b.tolist())
    t_bake, _ = best(lambda: bake_texture(v, f, uv, fuv, w, marks, outfit, size=args.size), args.repeats)
    t_avatar, avatar = best(lambda: paint_avatar(v, f, uv, fuv, w, outfit, texture_size=args.size,
                                                 subdivisions=1), args.repeats)
    print(json.dumps({
        "benchmark": "synth", "texture_size": args.size, "faces": len(f), "texels": int(len(texel)),
        "rasterize_s": round(t_fast, 4), "baseline_rasterize_s": round(t_base, 4),
        "ratio": round(t_base / t_fast, 2), "same_coverage": same,
        "bake_s": round(t_bake, 4), "paint_avatar_s": round(t_avatar, 4),
        "ply_vertices": len(avatar.dense_vertices), "repeats": args.repeats,
    }, indent=2))


if __name__ == "__main__":
    main()
