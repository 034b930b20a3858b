"""GPU check: the tests marked ``cuda``, then the GPU benchmarks, in one short run written to one JSON.

    .venv/bin/python benchmarks/gpu_check.py [--out gpu_check.json] [--device cuda|cpu] [--quick]
                                             [--data DATASET] [--only tests,reconstruct,...] [--force]
    .venv/bin/python benchmarks/gpu_check.py --prepare-data DIR   # where bpy is: a dataset to carry

Every CUDA path of the project (device selection, AMP, DDP with NCCL, the torch CIEDE2000/k-NN engine,
Cycles on the GPU) is written for machines the development boxes are not; this is the one prepared run
that exercises them on a GPU machine and measures them against the CPU in the same run. It needs
nothing from the network: it checks its own prerequisites first and prints one line naming what is
missing. Sections, in order (each records its own error and the run goes on):

* ``tests``: ``pytest -m cuda`` on the test files that carry the marker (junit counts, failures named);
* ``reconstruct``: end to end (encode + surface-tracking grid + marching cubes + colours) at 256 and 512
  with the full-size official nets, with the same code on the CPU at 256 as the baseline
  (``bench_reconstruct.device_sweep``); target: under 1 s at 256;
* ``metrics``: PATD + PIPATD of 1M x 1M vertices, torch engine on the device against the numpy engine
  on the CPU (inputs of ``bench_metrics.make_inputs``), values compared per vertex;
* ``train``: steps/s and points/s of the full-size colour net (batch 16, 5000 points per item; fp32,
  bf16 autocast, and fp16 with a GradScaler as the training loop uses it) and of the geometry net
  (``bench_train.time_avatex``: the real data pipeline, DataLoader workers, the per-subject cache);
* ``baking``: texture baking at 2048^2 with the full-size colour net on ``--device``, against the same
  bake on the CPU at a smaller size (per texel);
* ``ddp``: ``torchrun`` with world size = the GPUs present (NCCL) for a few steps of a tiny model,
  checked against one process with the same global batch (on the CPU: two gloo ranks).

Training and the DDP check need a rendered dataset: ``--data``, or one rendered here with the bpy wheel
(by Cycles on the CPU; the cuda tests render on the GPU). ``--quick`` shrinks every size
so the script's logic runs on a CPU in seconds (tests/test_gpu_check.py). The JSON is rewritten after
each section, so a run cut short keeps what it measured. docs/api.md says how to run it.
One file of about 500 lines on purpose: it is carried to the GPU machine and run there as one script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

SECTIONS = ("tests", "reconstruct", "metrics", "train", "baking", "ddp")
REQUIRED = ("torch", "numpy", "scipy", "skimage", "trimesh", "colour", "zmq", "PIL", "matplotlib", "tqdm")
"""Modules every section imports: without one of them nothing runs."""
SECTION_NEEDS = {"tests": ("pytest",), "ddp": ("tensorboard",)}
"""Modules only one section needs: without them that section is recorded as not available and the
others run (``bpy`` is needed to render the dataset of train/ddp when ``--data`` is absent)."""
TESTS_TIMEOUT_S = 300
DDP_TIMEOUT_S = 300


def missing_modules(names: tuple[str, ...]) -> list[str]:
    return [m for m in names if importlib.util.find_spec(m) is None]


def run_limited(cmd: list[str], timeout: float, what: str, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` in its own process group, the whole group killed at the time limit (pytest's
    renders and torchrun's ranks would otherwise outlive it). Raises TimeoutError."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"{what} ran past {timeout:.0f} s and was killed") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# -------------------------------------------------------------------------------------------- sections

def run_cuda_tests(work: Path) -> dict:
    """``pytest -m cuda`` on the files that use the marker, counted from its junit report."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "mark.cuda" in p.read_text(encoding="utf-8"))
    if not files:
        return {"files": [], "error": "no test file uses the cuda marker"}
    junit = work / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           f"--junitxml={junit}", *files]
    t = time.perf_counter()
    proc = run_limited(cmd, TESTS_TIMEOUT_S, "pytest -m cuda", cwd=ROOT)
    out: dict = {"files": files, "returncode": proc.returncode, "seconds": round(time.perf_counter() - t, 1)}
    if not junit.is_file():
        out["error"] = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["pytest wrote no report"]
        return out
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed, skipped, slow = [], {}, {}
    for case in suite.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if float(case.get("time", 0)) >= 1.0:
            slow[name] = round(float(case.get("time")), 1)
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                failed.append({"test": name, "message": (node.get("message") or "")[:300]})
        node = case.find("skipped")
        if node is not None:
            reason = (node.get("message") or "").removeprefix("Skipped: ")[:200]
            skipped[reason] = skipped.get(reason, 0) + 1
    out.update(counts=counts, failed=failed, skip_reasons=skipped, seconds_of_tests_over_1_s=slow)
    return out


def reconstruction(device: str, quick: bool) -> dict:
    """End-to-end reconstruction on ``device`` at two resolutions and on the CPU at the first."""
    import torch
    from bench_reconstruct import device_sweep

    from backend.models import ModelConfig, PIFu
    from backend.recon.pipeline import default_chunk
    from tests.helpers.tiny_models import TINY

    resolutions = [24, 32] if quick else [256, 512]
    repeats = 1 if quick else 2
    torch.manual_seed(0)
    model = PIFu(ModelConfig.small(**TINY) if quick else ModelConfig.official()).eval()
    chunk = default_chunk(torch.device(device))
    if device.startswith("cuda"):
        device_sweep(model, device, [64], chunk)  # warm-up: CUDA context, kernels, allocator
    runs = [device_sweep(model, device, resolutions, chunk) for _ in range(repeats)]
    rows = [min((run[i] for run in runs), key=_end_to_end) for i in range(len(resolutions))]
    cpu = device_sweep(model, "cpu", resolutions[:1], default_chunk(torch.device("cpu")))[0]
    for row in [*rows, cpu]:
        row["end_to_end_seconds"] = round(_end_to_end(row), 3)
    out: dict = {"model": "tiny (quick)" if quick else "official full size",
                 "parameters": {"net_g": sum(p.numel() for p in model.net_g.parameters()),
                                "net_c": sum(p.numel() for p in model.net_c.parameters())},
                 "device": rows, "cpu_baseline": cpu, "repeats": repeats,
                 "ratio_cpu_over_device_at_first_resolution":
                     round(cpu["end_to_end_seconds"] / rows[0]["end_to_end_seconds"], 3)}
    if not quick:
        out["under_1_s_at_256"] = rows[0]["end_to_end_seconds"] < 1.0
    return out


def baking(device: str, quick: bool) -> dict:
    """Texture baking (``backend.recon.texture.texture_mesh``) of a body-sized mesh: the full-size colour
    net queried at every texel on ``device`` (2048^2), against the same code on the CPU at 512^2, per
    texel. The mesh is a subdivided capsule the size of a canonical subject: decimation, unwrap and
    rasterisation cost what they cost on a reconstruction, and the colour queries do not depend on the
    field's values."""
    import numpy as np
    import torch
    import trimesh

    from avatex_core import canonical
    from backend.models import ModelConfig, PIFu
    from backend.recon.analytic import body_image
    from backend.recon.framing import frame_subject
    from backend.recon.pipeline import default_chunk
    from backend.recon.texture import texture_mesh
    from tests.helpers.tiny_models import TINY

    torch.manual_seed(0)
    model = PIFu(ModelConfig.small(**TINY) if quick else ModelConfig.official()).eval()
    capsule = trimesh.creation.capsule(height=1.2, radius=0.25, count=[96, 96] if not quick else [24, 24])
    vertices, faces = np.asarray(capsule.vertices, np.float32), np.asarray(capsule.faces, np.int64)
    framed = frame_subject(body_image(model.config.load_size), size=model.config.load_size)

    def bake(dev: str, size: int) -> dict:
        model.to(dev)
        calib = torch.from_numpy(canonical.calib_for_view(0.0)).float().unsqueeze(0).to(dev)
        chunk = default_chunk(torch.device(dev))
        with torch.inference_mode():
            model.encode(torch.from_numpy(framed.network_input()).to(dev))

            def color_fn(points: np.ndarray) -> np.ndarray:
                out = np.empty((len(points), 3), np.float32)
                for i in range(0, len(points), chunk):
                    pts = torch.from_numpy(np.ascontiguousarray(points[i:i + chunk], np.float32)).to(dev)
                    out[i:i + chunk] = (model.query_color(pts.t().unsqueeze(0), calib)[0].t() * 0.5 + 0.5
                                        ).float().cpu().numpy()
                return out

            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            textured = texture_mesh(vertices, faces, color_fn, size=size, target_faces=20_000)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t
        texels = int(textured.stats.get("texels", size * size))
        return {"device": dev, "size": size, "seconds": round(seconds, 3), "texels": texels,
                "us_per_texel": round(seconds / max(texels, 1) * 1e6, 3),
                "stages": {k: round(v, 3) for k, v in textured.stats.get("seconds", {}).items()}}

    size = 512 if quick else 2048
    on_device = bake(device, size)
    cpu = bake("cpu", 512)
    model.to("cpu")
    return {"model": "tiny (quick)" if quick else "official full size", "mesh_faces": int(len(faces)),
            "device": on_device, "cpu_baseline": cpu,
            "ratio_cpu_over_device_per_texel":
                round(cpu["us_per_texel"] / max(on_device["us_per_texel"], 1e-9), 3)}


def _end_to_end(row: dict) -> float:
    return row["encode_seconds"] + row["grid_plus_mc_seconds"] + row["color_seconds"]


def metrics(device: str, quick: bool) -> dict:
    """PATD + PIPATD: torch engine on ``device`` against the numpy engine on the CPU, same inputs."""
    import numpy as np
    import torch
    from bench_metrics import make_inputs

    from backend.metrics import texture_distance

    n, repeats, k = (3_000, 1, 8) if quick else (1_000_000, 3, 8)
    pred_v, pred_c, gt = make_inputs(n)
    texture_distance(pred_v[:2000], pred_c[:2000], gt, k=k, device=device, engine="torch")  # warm-up
    runs: dict[str, list[float]] = {"torch": [], "numpy": []}
    results = {}
    for r in range(repeats):
        for engine in ("torch", "numpy") if r % 2 == 0 else ("numpy", "torch"):
            t = time.perf_counter()
            results[engine] = texture_distance(pred_v, pred_c, gt, k=k, engine=engine,
                                               device=device if engine == "torch" else "cpu")
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            runs[engine].append(time.perf_counter() - t)
    a, b = results["torch"], results["numpy"]
    return {
        "pred_vertices": len(pred_v), "gt_vertices": len(gt.vertices), "k": k, "repeats": repeats,
        "torch": {"device": a.device, "best_s": round(min(runs["torch"]), 4),
                  "runs_s": [round(x, 4) for x in runs["torch"]], **_means(a)},
        "numpy": {"device": b.device, "best_s": round(min(runs["numpy"]), 4),
                  "runs_s": [round(x, 4) for x in runs["numpy"]], **_means(b)},
        "speedup_torch_over_numpy": round(min(runs["numpy"]) / min(runs["torch"]), 3),
        "max_abs_difference": {"patd": float(np.abs(a.patd - b.patd).max()),
                               "pipatd": float(np.abs(a.pipatd - b.pipatd).max())},
        "nearest_mismatches": int(np.count_nonzero(a.nearest != b.nearest)),
    }


def _means(td) -> dict:
    s = td.summary()
    return {"patd_mean": s["patd"]["mean"], "pipatd_mean": s["pipatd"]["mean"]}


TRAIN_CASES = (("color", "fp32"), ("color", "bf16"), ("color", "fp16"), ("geometry", "fp32"),
               ("geometry", "bf16"))


def training(device: str, quick: bool, data: Path, work: Path) -> dict:
    """Training throughput of the colour and geometry nets at each precision (bench_train's timing)."""
    import torch
    from bench_train import time_avatex

    from backend.models import ModelConfig, PIFu
    from backend.train.config import TrainConfig
    from backend.train.data import load_subject, train_items
    from backend.train.source import open_source
    from tests.helpers.tiny_models import TINY

    dev = torch.device(device)
    batch, points, steps, repeats = (2, 500, 1, 1) if quick else (16, 5000, 5, 2)
    workers = 0 if quick else max(1, min(8, (os.cpu_count() or 2) - 2))
    model_cfg = ModelConfig.small(**TINY) if quick else ModelConfig.official()
    source = open_source(data)
    items = train_items(source, None)
    cache = work / "cache"
    base = dict(data=str(data), out=str(work / "run"), loss="l1", batch=batch, workers=workers,
                points_color=points, points_geometry=points, seed=0, cache_dir=str(cache), device=device)
    if quick:
        base.update(dense_samples=30000, pool_surface=4 * points, pool_uniform=points)
    rows: dict = {}
    for stage, precision in TRAIN_CASES:
        name = f"{stage}_{precision}"
        if precision == "fp16" and dev.type != "cuda":
            rows[name] = {"skipped": "fp16 autocast with a GradScaler is the training loop's CUDA path"}
            continue
        cfg = TrainConfig.from_dict({**base, "stage": stage})
        for sid in sorted({s for s, _, _ in items}):
            load_subject(source, sid, cfg, cache)  # the one-off per-subject cache, not timed
        torch.manual_seed(0)
        try:  # one case running out of memory must not lose the others
            model = PIFu(model_cfg, with_color=stage == "color").to(dev)
            times = time_avatex(cfg, model, dev, items, cache, steps, repeats, precision)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            rows[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            times = None
        model = None
        if times is not None:
            best = min(times) / steps
            rows[name] = {"s_per_step": round(best, 5), "steps_per_s": round(1 / best, 3),
                          "points_per_s": round(batch * points / best, 1),
                          "all_s_per_step": [round(x / steps, 5) for x in times]}
        if dev.type == "cuda":
            rows[name]["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 30, 2)
            torch.cuda.reset_peak_memory_stats(dev)
            torch.cuda.empty_cache()
    ratios = {}
    for stage in ("color", "geometry"):
        fp32 = rows.get(f"{stage}_fp32", {}).get("steps_per_s")
        for precision in ("bf16", "fp16"):
            other = rows.get(f"{stage}_{precision}", {}).get("steps_per_s")
            if fp32 and other:
                ratios[f"{stage}_{precision}_over_fp32"] = round(other / fp32, 3)
    return {"model": "tiny (quick)" if quick else "official full size", "batch": batch,
            "points_per_item": points, "load_size": model_cfg.load_size, "workers": workers,
            "timing": f"best of {repeats} runs of {steps} steps after 1 warm-up step", "loss": "l1",
            "cases": rows, "ratios": ratios, "case_errors": sum("error" in r for r in rows.values())}


DDP_CONFIG = {"model": "small", "stage": "color", "loss": "l1+ssim", "lr": 1e-3, "seed": 0,
              "points_color": 500, "patches": 20, "patch_k": 5, "dense_samples": 30000, "workers": 0,
              "log_every": 1, "val_subjects": 0, "progress_bar": False, "amp": False}
"""A tiny colour run (tests/helpers/tiny_models.py) in fp32: the check is that ranks agree, not how fast."""


def ddp_check(device: str, quick: bool, data: Path, work: Path) -> dict:
    """torchrun (world size = GPUs present; two gloo ranks on the CPU) against one process, same global
    batch: netG (frozen) identical, netC equal up to the order of float sums."""
    import torch

    from backend.models import ModelConfig, PIFu
    from backend.models.checkpoint import load_checkpoint
    from backend.train import run_training
    from tests.helpers.tiny_models import TINY

    on_cuda = device.startswith("cuda")
    world = torch.cuda.device_count() if on_cuda else 2
    steps = 2 if quick else 4
    cfg = {**DDP_CONFIG, "data": str(data), "cache_dir": str(work / "cache"), "model_overrides": TINY,
           "steps": steps, "batch": 2 * world, "checkpoint_every": steps,
           "device": "cuda" if on_cuda else "cpu"}
    run_training({**cfg, "out": str(work / "ddp_single")})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
           str(Path(__file__).resolve()), "--ddp-child", json.dumps({**cfg, "out": str(work / "ddp_ranks")})]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    proc = run_limited(cmd, DDP_TIMEOUT_S, "torchrun", cwd=ROOT, env=env)
    out: dict = {"world_size": world, "process_group": ("nccl" if on_cuda else "gloo") if world > 1 else
                 "none: one rank (DDP needs >= 2 devices; torchrun and a 1-rank NCCL all-reduce only)",
                 "steps": steps, "global_batch": 2 * world,
                 "torchrun_seconds": round(time.perf_counter() - t, 1)}
    if proc.returncode != 0:
        out["error"] = (proc.stderr.strip().splitlines() or ["torchrun failed with no output"])[-3:]
        return out
    child = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"ddp_child"')]
    out["ranks"] = child
    ckpt = f"checkpoints/step-{steps:08d}.pt"
    ref, ref_state = load_checkpoint(work / "ddp_single" / ckpt, device="cpu")
    got, state = load_checkpoint(work / "ddp_ranks" / ckpt, device="cpu")
    torch.manual_seed(0)
    init = PIFu(ModelConfig.small(**TINY))
    g_equal = all(torch.equal(a, b) for a, b in zip(ref.net_g.state_dict().values(),
                                                    got.net_g.state_dict().values(), strict=True))
    r, g, i = (torch.cat([v.flatten().float() for v in m.net_c.state_dict().values()])
               for m in (ref, got, init))
    moved, diff = (r - i).norm().item(), (r - g).norm().item()
    rel = diff / moved if moved > 0 else math.inf
    out.update(net_g_identical=g_equal, net_c_diff_over_moved=rel,
               net_c_max_abs_diff=(r - g).abs().max().item(),
               first_loss={"single": ref_state["history"]["train"][0]["loss"],
                           "ranks": state["history"]["train"][0]["loss"]},
               agree=bool(g_equal and rel < 0.05))
    return out


def ddp_child(cfg: dict) -> int:
    """One torchrun rank: with a single rank on CUDA, first a 1-rank NCCL all-reduce (the training code
    forms no process group for one rank), then the training run itself."""
    import torch
    import torch.distributed as dist

    from backend.train import run_training

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    info: dict = {"ddp_child": rank, "world_size": world}
    if world == 1 and cfg.get("device") == "cuda":
        dist.init_process_group("nccl")
        t = torch.full((1,), 3.0, device="cuda")
        dist.all_reduce(t)
        info["nccl_one_rank_all_reduce_ok"] = bool(t.item() == 3.0)
        dist.destroy_process_group()
    result = run_training(cfg)
    info["step"] = result["step"]
    print(json.dumps(info), flush=True)
    return 0


# -------------------------------------------------------------------------------------------- driver

def machine(device: str) -> dict:
    import torch

    info: dict = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                  "platform": platform.platform(), "device": device, "cuda": torch.version.cuda,
                  "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                  "load_average": [round(x, 2) for x in os.getloadavg()]}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    bf16_supported=torch.cuda.is_bf16_supported(), nccl_available=_nccl_available())
    return info


def _nccl_available() -> bool:
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_nccl_available())


def prepare_dataset(out: Path, quick: bool) -> Path:
    """The training sections' dataset, rendered by Cycles on the CPU: a first GPU render may spend
    minutes compiling kernels, which this timed run cannot afford (tests/test_cuda.py renders on the
    GPU within the tests' own time limit)."""
    from bench_train import render_dataset

    return render_dataset(out, resolution=64 if quick else 512, device="cpu")


def render_device(data: Path) -> str | None:
    """The Cycles device the dataset's first view was rendered on ("CPU" or "GPU:<backend>:<names>")."""
    for view in sorted(data.glob("subjects/*/views/*/view.json")):
        return json.loads(view.read_text()).get("render", {}).get("device")
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "gpu_check.json", help="the JSON to write")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to run the script's logic on a CPU")
    ap.add_argument("--data", type=Path, help="a rendered dataset for training/DDP (default: render one)")
    ap.add_argument("--only", help=f"comma-separated sections (default all: {','.join(SECTIONS)})")
    ap.add_argument("--prepare-data", type=Path, metavar="DIR", help="render the dataset into DIR and exit")
    ap.add_argument("--ddp-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(SECTIONS))
        if unknown:
            ap.error(f"unknown section(s) {', '.join(unknown)}; have {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ddp_child:
        return ddp_child(json.loads(args.ddp_child))
    missing = missing_modules(REQUIRED)
    if missing:
        print(f"gpu_check: missing on this machine: {', '.join(missing)} (install them, or carry an "
              "environment that has them; this machine may reach no registry)", file=sys.stderr)
        return 2
    if args.prepare_data:
        if missing_modules(("bpy",)):
            print("gpu_check: --prepare-data needs the bpy wheel (pip install -e '.[blender]')",
                  file=sys.stderr)
            return 2
        if args.prepare_data.exists() and any(args.prepare_data.iterdir()):
            print(f"gpu_check: {args.prepare_data} is not empty; give a new folder", file=sys.stderr)
            return 2
        print(prepare_dataset(args.prepare_data, args.quick))
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no GPU found (torch {torch.__version__} sees no CUDA device); "
              "use --device cpu to run the checks on the CPU", file=sys.stderr)
        return 2
    if args.out.exists() and not args.force:
        print(f"gpu_check: {args.out} exists; pass --force to replace it or choose another --out",
              file=sys.stderr)
        return 2
    if args.data is not None and not (args.data / "manifest.json").is_file():
        print(f"gpu_check: --data {args.data} is not a rendered dataset (no manifest.json)", file=sys.stderr)
        return 2
    from avatex_core.atomic import write_json

    wanted = args.only.split(",") if args.only else list(SECTIONS)
    report: dict = {"benchmark": "gpu_check", "quick": args.quick, "machine": machine(args.device),
                    "sections": {}, "notes": []}
    needs_data = {"train", "ddp"} & set(wanted)
    no_bpy = bool(missing_modules(("bpy",)))
    skipped = {name: f"missing {', '.join(m)}" for name in wanted
               if (m := missing_modules(SECTION_NEEDS.get(name, ())))}
    if needs_data and args.data is None and no_bpy:
        for name in needs_data - set(skipped):
            skipped[name] = "no dataset: bpy is missing; pass --data DATASET (made by --prepare-data DIR)"
    if skipped:
        line = "gpu_check: not run: " + "; ".join(f"{n} ({why})" for n, why in skipped.items())
        print(line, file=sys.stderr)
        report["notes"].append(line.removeprefix("gpu_check: "))
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        data = args.data
        for name in wanted:
            t = time.perf_counter()
            print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
            section: dict = {"error": "interrupted"}
            try:
                if name in skipped:
                    section = {"status": "not available", "reason": skipped[name]}
                    continue
                if name in needs_data and data is None:
                    t_render = time.perf_counter()
                    try:
                        data = prepare_dataset(work / "data", args.quick)
                    except Exception as exc:
                        for other in needs_data:  # one failed render is enough: do not retry it
                            skipped[other] = f"the dataset render failed: {type(exc).__name__}: {exc}"
                        raise
                    report["dataset"] = {"rendered_here": True, "render_device": render_device(data),
                                         "seconds": round(time.perf_counter() - t_render, 1)}
                if name == "tests":
                    section = run_cuda_tests(work)
                elif name == "reconstruct":
                    section = reconstruction(args.device, args.quick)
                elif name == "metrics":
                    section = metrics(args.device, args.quick)
                elif name == "baking":
                    section = baking(args.device, args.quick)
                elif name == "train":
                    section = training(args.device, args.quick, data, work / "train")
                else:
                    section = ddp_check(args.device, args.quick, data, work / "ddp")
            except Exception as exc:  # one section's failure must not lose the others' figures
                section = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"[gpu_check] {name} failed: {section['error']}", file=sys.stderr, flush=True)
            finally:
                section["section_seconds"] = round(time.perf_counter() - t, 1)
                report["sections"][name] = section
                report["total_seconds"] = round(time.perf_counter() - t_all, 1)
                write_json(args.out, report)
    sections = report["sections"]
    tests = sections.get("tests", {})
    failed = [n for n, s in sections.items()
              if "error" in s or s.get("case_errors") or (n == "ddp" and s.get("agree") is False)]
    if tests.get("counts", {}).get("failures") or tests.get("counts", {}).get("errors"):
        failed.append("tests")
    report["failed_sections"] = sorted(set(failed))
    report["ok"] = not failed
    write_json(args.out, report)
    print(f"gpu_check: {'ok' if report['ok'] else 'FAILED: ' + ', '.join(report['failed_sections'])}; "
          f"{report['total_seconds']} s; wrote {args.out}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
