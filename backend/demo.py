"""The demo: one held-out avatar through every part of avatex, on built-in defaults.

1. Blender (the bpy wheel, headless) renders one relit view of an avatar the shipped model never saw,
   with its calib, in the canonical space (``render_scripts/render_dataset.py``).
2. A real ``avatex serve`` process starts on a free loopback port; the add-on's own ZeroMQ client asks it
   to ``reconstruct`` that render with the shipped checkpoint and then to ``evaluate`` the result against
   the avatar's ground truth (PATD / PIPATD per vertex, CIEDE2000 via the project's exact kernel).
3. Blender writes a ``.blend`` with the mesh, its colours, the ``patd`` / ``pipatd`` attributes and the
   heatmap material, and renders images of the coloured mesh and of its error heatmap
   (``render_scripts/audit_blend.py``).

Everything runs in subprocesses or over sockets: this module imports neither bpy nor torch.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avatex_core.atomic import write_json, write_with
from backend.blender import blender_command
from backend.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "pifu_clothed.pt"
# Held out: a clothed avatar whose person is always in the protocol's test split; the checkpoint's
# provenance lists the avatars it was trained on (backend/assets/README.md), and none is this person.
DEFAULT_AVATAR = ROOT / "tests" / "fixtures" / "valid" / "White_M_1_Casual" / "White_M_1_Casual.obj"


@dataclass
class DemoConfig:
    out: Path = Path("demo_out")
    avatar: Path = DEFAULT_AVATAR
    checkpoint: Path = DEFAULT_CHECKPOINT
    level: str = "wild"
    render_resolution: int = 512
    samples: int = 16
    recon_resolution: int = 256
    k: int = 8
    blend: bool = True


def run_demo(cfg: DemoConfig, log=print) -> dict:
    """Run the demo; returns the summary it also writes to ``OUT/summary.json``."""
    out = Path(cfg.out).resolve()
    avatar, checkpoint = Path(cfg.avatar).resolve(), Path(cfg.checkpoint).resolve()
    if not avatar.is_file():
        raise InputError(f"demo avatar not found: {avatar} (pass --avatar MESH)")
    if not checkpoint.is_file():
        raise InputError(f"checkpoint not found: {checkpoint} (pass --checkpoint CKPT; the shipped one is "
                         f"made by `avatex experiment`, see backend/assets/README.md)")
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    log(f"[1/3] Blender renders {avatar.name} under '{cfg.level}' lighting ({cfg.render_resolution} px) ...")
    image_path, gt_path = _render(avatar, out / "render", cfg)
    seconds["render"] = time.perf_counter() - t

    t = time.perf_counter()
    log("[2/3] backend: reconstruct + evaluate through `avatex serve` and the add-on's ZeroMQ client ...")
    recon, errors = _reconstruct_and_evaluate(image_path, gt_path, checkpoint, out, cfg)
    seconds["reconstruct_evaluate"] = time.perf_counter() - t

    from backend.meshio import save_mesh

    mesh_path, errors_path = out / "reconstruction.ply", out / "errors.npz"
    save_mesh(mesh_path, recon["vertices"], recon["faces"], recon["colors"])
    arrays = {name: errors[name] for name in ("patd", "pipatd", "nearest")}
    write_with(errors_path, lambda fh: np.savez(fh, **arrays, k=np.int64(cfg.k)))

    t = time.perf_counter()
    blend = None
    if cfg.blend:
        log("[3/3] Blender writes the .blend with the heatmap and renders its images ...")
        blend = _audit_blend(mesh_path, errors_path, out)
    seconds["blend"] = time.perf_counter() - t

    summary = {
        "avatar": str(avatar), "checkpoint": str(checkpoint), "level": cfg.level,
        "input_image": str(image_path), "gt_mesh": str(gt_path),
        "mesh": str(mesh_path), "errors": str(errors_path), "blend": blend,
        "images": sorted(str(p) for p in out.glob("reconstruction_*.png")),
        "vertices": int(len(recon["vertices"])), "faces": int(len(recon["faces"])),
        "metrics": recon["metrics"], "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
    }
    write_json(out / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    m = summary["metrics"]
    kind = "GT vertices" if m["gt_kind"] == "vertices" else "GT surface samples"
    lines = [
        f"avatex demo: {Path(summary['avatar']).name} under '{summary['level']}' lighting, "
        f"{summary['vertices']:,} reconstructed vertices vs {m['gt_points']:,} {kind}",
        f"  PATD   mean {m['patd']['mean']:6.2f}  median {m['patd']['median']:6.2f}  "
        f"p90 {m['patd']['p90']:6.2f}   (ΔE00 to the nearest GT point)",
        f"  PIPATD mean {m['pipatd']['mean']:6.2f}  median {m['pipatd']['median']:6.2f}  "
        f"p90 {m['pipatd']['p90']:6.2f}   (min ΔE00 over the k = {m['k']} nearest GT points)",
        f"  mesh      {summary['mesh']}",
        f"  errors    {summary['errors']}",
    ]
    if summary["blend"]:
        lines.append(f"  .blend    {summary['blend']}")
    lines += [f"  image     {p}" for p in summary["images"]]
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds"].items())
    lines.append(f"  time      {secs}")
    return "\n".join(lines)


def _render(avatar: Path, data: Path, cfg: DemoConfig) -> tuple[Path, Path]:
    """One relit yaw-0 view of the avatar (resumable: a finished render is reused)."""
    from backend.data.dataset import Dataset

    cmd = blender_command("render_dataset.py", purpose="the demo") + [
           "--meshes", str(avatar), "--out", str(data), "--views", "1", "--levels", cfg.level,
           "--resolution", str(cfg.render_resolution), "--samples", str(cfg.samples),
           "--test-fraction", "1.0", "--progress", "text"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"rendering {avatar.name} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    ds = Dataset(data)
    (sid,) = ds.subjects()
    view = ds.views_of(sid)[0]
    image = data / "input.png"
    from PIL import Image

    write_with(image, lambda fh: Image.fromarray(ds.image(sid, view, cfg.level)).save(fh, format="PNG"))
    return image, ds.gt_mesh_path(sid)


def _reconstruct_and_evaluate(image: Path, gt: Path, checkpoint: Path, out: Path, cfg: DemoConfig
                              ) -> tuple[dict, dict]:
    from avatex_core.client import Client
    from backend.evaluation.framing import reconstruction_to_canonical
    from backend.server.launch import LocalServer

    state = out / ".server"
    with LocalServer(roots=[out, checkpoint.parent], state=state, log=out / "server.log") as server, \
            Client(server.endpoint) as client:
        rec = client.call("reconstruct", {"image": str(image), "checkpoint": str(checkpoint),
                                          "resolution": cfg.recon_resolution}, timeout=600)
        stats = rec.result["stats"]
        # The reconstruction lives in the frame of its re-cropped input, the GT in canonical space.
        vertices = reconstruction_to_canonical(rec.arrays["vertices"], stats, np.diag([1.0, -1.0, 1.0, 1.0]))
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        colors = np.ascontiguousarray(rec.arrays["colors"], dtype=np.float32)
        ev = client.call("evaluate", {"gt": str(gt), "k": cfg.k},
                         {"vertices": vertices, "colors": colors}, timeout=600)
    shutil.rmtree(state, ignore_errors=True)
    recon = {"vertices": vertices, "faces": np.asarray(rec.arrays["faces"]), "colors": colors,
             "metrics": ev.result}
    errors = {name: np.array(ev.arrays[name]) for name in ("patd", "pipatd", "nearest")}
    return recon, errors


def _audit_blend(mesh: Path, errors: Path, out: Path) -> str:
    cmd = blender_command("audit_blend.py", purpose="the demo") + [
           str(mesh), str(errors), "--out", str(out), "--name", "reconstruction"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"writing the .blend failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return str(out / "reconstruction.blend")

