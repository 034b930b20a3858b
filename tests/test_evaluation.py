"""Evaluating models on a dataset (backend.evaluation): frame mapping, renders, evaluate_runs end to end.

One tiny relit dataset is rendered here from the committed sample avatars (a textured OBJ and a
vertex-coloured PLY, both in the test split, 4 views x 2 levels at 96 px), and two tiny real checkpoints
that share their geometry net (the second is the first with a perturbed colour net) are evaluated on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatex_core import canonical
from avatex_core.progress import Progress
from backend.data.dataset import Dataset
from backend.errors import CancelledError, InputError
from backend.evaluation import (
    canonical_to_recon,
    evaluate_runs,
    geometry_key,
    novel_views,
    recon_to_canonical,
    reconstruction_to_canonical,
    view_rotation_from_calib,
)
from backend.evaluation import tables as eval_tables
from backend.evaluation.render import run_render_job, write_render_mesh
from backend.evaluation.run import cm_per_unit_for
from backend.meshio import ColoredMesh, load_mesh
from backend.metrics import geometry_metrics, texture_distance
from backend.metrics import table as seed_table
from backend.metrics.image import lpips_status
from backend.models import ModelConfig, PIFu
from backend.models.checkpoint import load_checkpoint, save_checkpoint
from backend.recon import reconstruct
from backend.recon.framing import frame_subject
from backend.recon.grid import GridSpec, evaluate_dense
from backend.recon.mesh import extract_surface
from tests.helpers.tiny_models import TINY

ROOT = Path(__file__).resolve().parents[1]
AVATARS = ROOT / "tests" / "fixtures" / "avatars"
RESOLUTION = 32
GT_SAMPLES = 50_000
GEOMETRY_SAMPLES = 2_000


def render_dataset(out: Path, meshes: list[Path], test_fraction: float = 1.0) -> Path:
    cmd = [sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes", *map(str, meshes),
           "--out", str(out), "--views", "4", "--step", "90", "--levels", "wild,clear", "--resolution", "96",
           "--samples", "2", "--albedo-samples", "1", "--no-denoise", "--test-fraction", str(test_fraction)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def relit(tmp_path_factory) -> Dataset:
    out = render_dataset(tmp_path_factory.mktemp("relit") / "data",
                         [AVATARS / "avatar_0000.obj", AVATARS / "avatar_0002.ply"])
    ds = Dataset(out)
    assert ds.split("test") == ["avatar_0000", "avatar_0002"]
    assert ds.gt_mesh("avatar_0000").has_texture and not ds.gt_mesh("avatar_0002").has_texture
    return ds


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A: a tiny PIFu; B: A with a perturbed colour net (same net_g); C: A with a perturbed net_g."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = PIFu(ModelConfig.small(**TINY)).eval()
    paths = {"A": save_checkpoint(folder / "a.pt", model)}
    with torch.no_grad():
        for p in model.net_c.parameters():
            p.add_(0.05 * torch.randn_like(p))
    paths["B"] = save_checkpoint(folder / "b.pt", model)
    with torch.no_grad():
        for p in model.net_g.parameters():
            p.mul_(1.001)
    paths["C"] = save_checkpoint(folder / "c.pt", model)
    return paths


# ------------------------------------------------------------------------------------- frame mapping

def test_framed_space_round_trip_and_rotation():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (1000, 3))
    calib = canonical.calib_for_view(123.0, 10.0)
    rot = view_rotation_from_calib(calib)
    assert np.allclose(rot, canonical.view_rotation(123.0, 10.0))
    crop = (-7, 13, 120)
    framed = canonical_to_recon(points, crop, (96, 96), 64, calib)
    back = recon_to_canonical(framed, crop, (96, 96), 64, calib)
    assert np.abs(back - points).max() < 1e-5
    with pytest.raises(InputError, match="not diag"):
        view_rotation_from_calib(np.diag([2.0, -1.0, 1.0, 1.0]))


@pytest.mark.parametrize("size", [48, 160])
def test_canonical_to_recon_follows_the_framing_to_a_fraction_of_a_pixel(size):
    """A single bright source pixel, framed by frame_subject (crop, pad, resize down or up), lands where
    canonical_to_recon puts the canonical point that projects onto that pixel's centre."""
    h = w = 100
    image = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[20:81, 30:61] = 255  # the subject's box decides the crop: side 69, shifted, partly outside
    row, col = 50, 44
    image[row, col] = 255
    framed = frame_subject(image, mask, size=size)
    assert framed.crop != (0, 0, w)
    lum = framed.rgb[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:size, 0:size]
    seen = np.array([(lum * xs).sum(), (lum * ys).sum()]) / lum.sum()  # centroid (column, row)
    calib = canonical.calib_for_view(90.0)
    view = np.array([[col / (w - 1) * 2 - 1, -(row / (h - 1) * 2 - 1), 0.3]])  # x right, y up
    point = view @ view_rotation_from_calib(calib)  # canonical = R^T view
    assert np.allclose(canonical.project(point, calib)[0, :2], [view[0, 0], -view[0, 1]])
    p = canonical_to_recon(point, framed.crop, (h, w), size, calib)[0]
    expected = np.array([canonical.to_pixels(p[0], size), canonical.to_pixels(-p[1], size)])
    assert np.abs(seen - expected).max() < 0.05, (seen, expected)


@pytest.mark.parametrize("view", [0, 1])
def test_gt_in_framed_space_projects_onto_the_framed_mask(relit, view):
    """On real renders: the GT taken into the framed space covers the framed mask (bounding boxes within
    the antialiasing blur, vertices on covered pixels)."""
    sid, size = "avatar_0002", 128
    rgba = relit.image(sid, view, "wild")
    framed = frame_subject(rgba[..., :3], rgba[..., 3], size=size)
    gt = relit.gt_mesh(sid)
    p = canonical_to_recon(gt.vertices, framed.crop, rgba.shape[:2], size, relit.calib(sid, view))
    # The reconstruction's calib is diag(1, -1, 1, 1): column from x, row from -y.
    cols = canonical.to_pixels(p[:, 0], size)
    rows = canonical.to_pixels(-p[:, 1], size)
    ys, xs = np.nonzero(framed.mask > 0.1)
    assert abs(cols.min() - xs.min()) < 2 and abs(cols.max() - xs.max()) < 2
    assert abs(rows.min() - ys.min()) < 2 and abs(rows.max() - ys.max()) < 2
    covered = framed.mask[np.clip(np.rint(rows).astype(int), 0, size - 1),
                          np.clip(np.rint(cols).astype(int), 0, size - 1)]
    assert (covered > 0).mean() > 0.98


@pytest.mark.slow
def test_gt_pushed_through_the_reconstruction_path_lands_on_the_gt(relit):
    """A GT-perfect 'reconstruction' made in the framed space by the real grid + marching cubes, with
    GT colours, comes back onto the GT: PATD ~ 0 and Chamfer within a voxel."""
    from backend.data.inside import build_tree, inside

    sid, view, size, res = "avatar_0002", 1, 64, 48
    rgba = relit.image(sid, view, "clear")
    calib = relit.calib(sid, view)
    framed = frame_subject(rgba[..., :3], rgba[..., 3], size=size)
    gt = relit.gt_mesh(sid)
    gt_framed = canonical_to_recon(gt.vertices, framed.crop, rgba.shape[:2], size, calib)
    tree = build_tree(gt_framed, gt.faces)
    spec = GridSpec(res)
    grid = evaluate_dense(lambda pts: inside(gt_framed, gt.faces, pts, tree=tree).astype(np.float32), spec)
    vertices, faces = extract_surface(grid.volume, spec)
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(gt_framed).query(vertices)
    colors = gt.vertex_colors[nearest]
    back = recon_to_canonical(vertices, framed.crop, rgba.shape[:2], size, calib)
    td = texture_distance(back, colors, gt)
    assert td.summary()["patd"]["mean"] < 1e-6
    geo = geometry_metrics(back, faces, gt.vertices, gt.faces, samples=20_000)
    top, left, side = framed.crop
    voxel = 2.0 / res * (side / size) * (size - 1) / (rgba.shape[1] - 1)  # framed units -> canonical
    assert geo.chamfer < 0.5 * voxel, (geo.chamfer, voxel)
    assert geo.normal_consistency > 0.8  # a binary field's staircase at 48^3


def test_novel_views_are_evenly_spaced():
    ring = [(k, 45.0 * k, 0.0) for k in range(8)] + [(8, 0.0, 30.0)]
    assert novel_views(ring, 0, 3) == [2, 4, 6]
    assert novel_views(ring, 2, 1) == [6]
    assert novel_views(ring, 0, 20) == [1, 2, 3, 4, 5, 6, 7] or \
        sorted(novel_views(ring, 0, 20)) == [1, 2, 3, 4, 5, 6, 7]
    assert novel_views(ring, 0, 0) == []
    assert 8 not in novel_views(ring, 0, 7)  # other pitches are not mixed in


def test_cm_scale_from_the_source_height():
    shape = np.array([[0, 0, 0], [0.5, 1.8, 0.2], [0.1, 0.9, 0.1], [0.2, 0.3, 0.0]])
    norm = canonical.normalization_for(shape)
    cm, unit = cm_per_unit_for(norm)
    assert unit == "m" and cm == pytest.approx(100 * 1.8 / canonical.CANONICAL_HEIGHT)
    in_cm = canonical.normalization_for(shape * 100)
    assert cm_per_unit_for(in_cm) == (pytest.approx(cm), "cm")
    odd = canonical.normalization_for(shape * 10)
    assert cm_per_unit_for(odd) == (None, None)


# ------------------------------------------------------------------------------------------ renders

@pytest.mark.slow
def test_unlit_render_of_the_gt_reproduces_the_dataset_albedo(relit, tmp_path):
    """The prediction side renders exactly like the dataset's albedo images: the vertex-coloured GT
    rendered by render_scripts/render_views.py with a view's albedo seed is that view's albedo.png."""
    sid = "avatar_0002"
    gt = relit.gt_mesh(sid)
    mesh = write_render_mesh(tmp_path / "gt.npz", gt.vertices, gt.faces, gt.vertex_colors)
    views = []
    for k in relit.views_of(sid):
        rec = relit.record(sid, k)
        views.append({"index": k, "yaw": rec["yaw"], "pitch": rec["pitch"], "seed": rec["albedo"]["seed"],
                      "out": str(tmp_path / f"v{k}.png")})
    events = []
    job = {"resolution": relit.resolution, "samples": relit.settings["albedo_samples"], "device": "cpu",
           "meshes": [{"mesh": str(mesh), "views": views}]}
    final = run_render_job(job, tmp_path / "job.json",
                           progress=Progress(lambda s, f, i: events.append((i["done"], i["images"]))))
    assert final["images"] == 4 and events[-1] == (4, 4)
    for k in relit.views_of(sid):
        ours = np.asarray(Image.open(tmp_path / f"v{k}.png").convert("RGBA"))
        theirs = relit.albedo(sid, k)
        assert ours.shape == theirs.shape
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1, k
    again = run_render_job(job, tmp_path / "job2.json")  # everything on disk: nothing is rendered
    assert again["images"] == 0


# ------------------------------------------------------------------------------------ evaluate_runs

def _direct(relit: Dataset, checkpoint: Path, sid: str, view: int, level: str):
    """The item scored without backend.evaluation's pipeline: reconstruct, map, texture_distance in both
    flavours (GT vertices; GT_SAMPLES surface samples)."""
    model, _ = load_checkpoint(checkpoint, device="cpu")
    rgba = relit.image(sid, view, level)
    rec = reconstruct(model, rgba[..., :3], rgba[..., 3], resolution=RESOLUTION, device="cpu")
    verts = reconstruction_to_canonical(rec.vertices, rec.stats, relit.calib(sid, view))
    gt = relit.gt_mesh(sid)
    return (texture_distance(verts, rec.colors, gt, k=8),
            texture_distance(verts, rec.colors, gt, k=8, gt_samples=GT_SAMPLES, rng=np.random.default_rng(0)))


@pytest.fixture(scope="module")
def evaluated(relit, checkpoints, tmp_path_factory) -> dict:
    """evaluate_runs on A and B, first cancelled after one input image, then resumed to the end."""
    out = tmp_path_factory.mktemp("eval")
    models = {"A": checkpoints["A"], "B": checkpoints["B"]}
    kwargs = dict(levels=["wild", "clear"], views=[0], resolution=RESOLUTION, k=8, device="cpu",
                  novel_views=2, out_dir=out, keep_meshes=True, geometry_samples=GEOMETRY_SAMPLES,
                  gt_samples=GT_SAMPLES)
    seen: list[str] = []

    def stop() -> bool:
        return seen.count("reconstruct") >= 2  # the second input image is being started

    with pytest.raises(CancelledError):
        evaluate_runs(models, relit, progress=Progress(lambda s, f, i: seen.append(s), should_stop=stop),
                      **kwargs)
    partial = json.loads((out / "evaluation.json").read_text())
    events: list[tuple[str, float, dict]] = []
    ev = evaluate_runs(models, relit.root, progress=Progress(lambda s, f, i: events.append((s, f, i))),
                       **kwargs)
    return {"ev": ev, "out": out, "partial": partial, "events": events, "kwargs": kwargs, "models": models}


def test_table_has_every_model_and_level(evaluated):
    ev = evaluated["ev"]
    table = ev.table
    assert list(table) == ["A", "B"]
    for name in ("A", "B"):
        assert list(table[name]) == ["wild", "clear"]
        for level in ("wild", "clear"):
            cell = table[name][level]
            assert cell["items"] == 2 and cell["failed"] == 0  # two subjects, one view
            assert 0 < cell["pipatd"] <= cell["patd"] < 100
            assert cell["chamfer"] > 0 and cell["chamfer_cm"] == pytest.approx(
                np.mean([r["chamfer_cm"] for r in ev.per_item if r["model"] == name and r["level"] == level]))
            assert np.isfinite(cell["psnr_input"]) and np.isfinite(cell["psnr_novel"])
            assert -1 <= cell["ssim_input"] <= 1 and -1 <= cell["ssim_novel"] <= 1
    # Colour fine-tunes differ in colour, not geometry.
    assert table["A"]["wild"]["patd"] != table["B"]["wild"]["patd"]
    assert table["A"]["wild"]["chamfer"] == table["B"]["wild"]["chamfer"]


def test_shared_geometry_is_reconstructed_once(evaluated, checkpoints):
    ev = evaluated["ev"]
    partial = evaluated["partial"]
    assert ev.stats["groups"] == [["A", "B"]]
    assert ev.models["A"]["geometry"] == ev.models["B"]["geometry"]
    assert ev.models["A"]["shares_geometry_with"] == ["B"]
    # 2 subjects x 1 view x 2 levels = 4 input images, split between the cancelled run and the resumed one.
    assert partial["stats"]["reconstructions"] == 1 and partial["stats"]["color_queries"] == 1
    assert len(partial["per_item"]) == 2
    assert ev.stats["resumed_items"] == 2
    assert ev.stats["reconstructions"] == 3 and ev.stats["color_queries"] == 3
    assert ev.stats["geometry_evaluations"] == 3
    assert ev.stats["render_processes"] == 1 and ev.stats["renders"] == 8 * 3
    assert all(r["reconstructed_by"] == "A" for r in ev.per_item)
    key_c = geometry_key(load_checkpoint(checkpoints["C"], device="cpu")[0])
    assert key_c != ev.models["A"]["geometry"]


@pytest.mark.parametrize("model,sid,level", [("A", "avatar_0002", "wild"), ("B", "avatar_0000", "clear")])
def test_values_match_a_direct_texture_distance(evaluated, relit, model, sid, level):
    ev = evaluated["ev"]
    row = next(r for r in ev.per_item if (r["model"], r["subject"], r["level"]) == (model, sid, level))
    td, dense = _direct(relit, evaluated["models"][model], sid, 0, level)
    s, sd = td.summary(), dense.summary()
    assert row["patd"] == pytest.approx(s["patd"]["mean"], rel=1e-6)
    assert row["pipatd"] == pytest.approx(s["pipatd"]["mean"], rel=1e-6)
    assert row["gt_kind"] == s["gt_kind"] == "vertices" and row["gt_points"] == s["gt_points"]
    assert row["k"] == 8
    assert row["patd_dense"] == pytest.approx(sd["patd"]["mean"], rel=1e-6)
    assert row["pipatd_dense"] == pytest.approx(sd["pipatd"]["mean"], rel=1e-6)
    assert row["dense_samples"] == GT_SAMPLES
    assert row["vertices"] == len(td.patd)
    # The kept per-vertex file is what `avatex evaluate --out` writes, for the same vertices.
    errors = np.load(evaluated["out"] / row["errors"])
    assert np.allclose(errors["patd"], td.patd, atol=1e-4) and errors["gt_kind"] == s["gt_kind"]
    assert np.allclose(errors["patd_dense"], dense.patd, atol=1e-4)
    assert int(errors["dense_samples"]) == GT_SAMPLES
    mesh = load_mesh(evaluated["out"] / row["mesh"])
    assert len(mesh.vertices) == row["vertices"] and mesh.vertex_colors is not None


def test_color_only_patd_is_the_net_queried_at_the_gt_surface(evaluated, relit):
    """The colour-only diagnostic, recomputed from the model's own query on the GT's dense samples, mapped
    into the framed image's space; it ignores the reconstructed surface, so two models that share
    geometry but not colour get different values, and the values are plausible CIEDE2000 means."""
    from backend.evaluation.framing import canonical_to_recon
    from backend.metrics.color import ciede2000, srgb_to_lab
    from backend.metrics.patd import gt_point_set

    ev = evaluated["ev"]
    sid, level = "avatar_0002", "wild"
    row = next(r for r in ev.per_item if (r["model"], r["subject"], r["level"]) == ("B", sid, level))
    model, _ = load_checkpoint(evaluated["models"]["B"], device="cpu")
    model.eval()
    rgba = relit.image(sid, 0, level)
    framed = frame_subject(rgba[..., :3], rgba[..., 3], size=model.config.load_size)
    xyz, rgb, _, _ = gt_point_set(relit.gt_mesh(sid), GT_SAMPLES, np.random.default_rng(0))
    step = max(1, len(xyz) // 20_000)
    xyz, rgb = xyz[::step][:20_000], rgb[::step][:20_000]
    rec = reconstruct(model, rgba[..., :3], rgba[..., 3], resolution=RESOLUTION, device="cpu")
    crop = rec.stats["crop"]
    crop = (crop["top"], crop["left"], crop["side"]) if isinstance(crop, dict) else tuple(crop)
    pts = canonical_to_recon(xyz, crop, tuple(rec.stats["image_size"][:2]), model.config.load_size,
                             relit.calib(sid, 0))
    calib = torch.from_numpy(canonical.calib_for_view(0.0)).float().unsqueeze(0)
    with torch.inference_mode():
        model.encode(torch.from_numpy(framed.network_input()))
        q = model.query_color(torch.from_numpy(pts.astype(np.float32)).t().unsqueeze(0), calib)[0].t()
    colors = np.clip(q.numpy() * 0.5 + 0.5, 0, 1)
    want = float(np.mean(ciede2000(srgb_to_lab(colors), srgb_to_lab(rgb))))
    assert row["patd_color_only"] == pytest.approx(want, rel=1e-4)
    other = next(r for r in ev.per_item if (r["model"], r["subject"], r["level"]) == ("A", sid, level))
    assert other["patd_color_only"] != row["patd_color_only"]
    assert all(0 < r["patd_color_only"] < 100 for r in ev.per_item)


def test_image_metrics_and_lpips_status(evaluated):
    ev = evaluated["ev"]
    out = evaluated["out"]
    status = lpips_status()
    for row in ev.per_item:
        assert row["novel_views"] == [1, 3]
        assert [v["view"] for v in row["per_view"]] == [0, 1, 3]
        assert np.isfinite(row["psnr_input"]) and row["psnr_input"] > 0
        assert len(row["renders"]) == 3 and all((out / r).is_file() for r in row["renders"])
        if status.available:
            assert np.isfinite(row["lpips_input"])
        else:
            assert row["lpips_input"] is None and row["lpips_reason"] == status.reason
    assert ev.stats["lpips"]["available"] == status.available
    # The renders are in the dataset's framing: the prediction's silhouette is where its mesh projects.
    row = ev.per_item[0]
    render = np.asarray(Image.open(out / row["renders"][0]).convert("RGBA"))
    assert render.shape == (96, 96, 4) and render[..., 3].max() == 255


def test_evaluation_json_and_tables(evaluated, tmp_path):
    ev = evaluated["ev"]
    data = json.loads((evaluated["out"] / "evaluation.json").read_text())
    assert data["format"] == "avatex-evaluation" and len(data["per_item"]) == 8
    assert data["table"]["B"]["clear"]["patd"] == pytest.approx(ev.table["B"]["clear"]["patd"])
    assert not (evaluated["out"] / ".work").exists()
    md, csv_path = ev.write_tables(tmp_path / "table")
    text = md.read_text()
    assert "| metric | level | A | B |" in text and "**" in text
    # The paper's rows are exactly backend.metrics.table's.
    seed_rows = seed_table.to_markdown({m: {lv: {"patd": c["patd"], "pipatd": c["pipatd"]}
                                            for lv, c in per.items()} for m, per in ev.table.items()})
    for line in seed_rows.splitlines()[2:]:
        assert line in text
    assert "| PATD dense | wild |" in text and "| PIPATD dense | clear |" in text
    assert f"against {GT_SAMPLES:,} area-uniform GT surface samples" in text
    assert csv_path.read_text().splitlines()[0] == "metric,level,A,B"


def test_direction_aware_bold():
    results = {"x": {"wild": {"patd": 10.0, "pipatd": 8.0, "psnr_input": 20.0}},
               "y": {"wild": {"patd": 12.0, "pipatd": 8.0, "psnr_input": 25.0}}}
    text = eval_tables.to_markdown(results)
    assert "| PATD | wild | **10.00** | 12.00 |" in text
    assert "| PIPATD | wild | **8.00** | **8.00** |" in text
    assert "| PSNR input view (dB) | wild | 20.00 | **25.00** |" in text
    assert "Chamfer" not in text


def test_resume_refuses_other_settings(evaluated, relit):
    kwargs = dict(evaluated["kwargs"], resolution=RESOLUTION + 8)
    with pytest.raises(InputError, match="resolution"):
        evaluate_runs(evaluated["models"], relit, **kwargs)


def test_progress_reaches_done(evaluated):
    events = evaluated["events"]
    stages = [s for s, _, _ in events]
    assert stages[0] == "load" and stages[-1] == "done"
    assert {"reconstruct", "render"} <= set(stages)
    fractions = [f for _, f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_bad_inputs(relit, checkpoints, tmp_path):
    models = {"A": checkpoints["A"]}
    with pytest.raises(InputError, match="not in the dataset"):
        evaluate_runs(models, relit, levels=["sunset"], image_metrics=False)
    with pytest.raises(InputError, match="view"):
        evaluate_runs(models, relit, views=[9], image_metrics=False)
    with pytest.raises(InputError, match="no 'train' subjects"):
        evaluate_runs(models, relit, split="train", image_metrics=False)
    with pytest.raises(InputError, match=r"subject\(s\) \['nobody'\] are not in the 'test' split"):
        evaluate_runs(models, relit, subjects=["nobody"], image_metrics=False)
    from backend.evaluation.plan import EvalConfig, plan

    some = plan(models, relit, EvalConfig(subjects=["avatar_0002"], levels=["wild"], views=[0, 1]))
    assert some.inputs == [("avatar_0002", 0, "wild"), ("avatar_0002", 1, "wild")]
    assert some.settings["subjects"] == ["avatar_0002"]
    assert "subjects" not in plan(models, relit, EvalConfig()).settings  # older runs still resume
    with pytest.raises(InputError, match="checkpoint not found"):
        evaluate_runs({"X": tmp_path / "missing.pt"}, relit, image_metrics=False)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(InputError, match="without checkpoints"):
        evaluate_runs({"X": tmp_path / "empty_run"}, relit, image_metrics=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="X"):
        evaluate_runs({"X": tmp_path / "junk.pt"}, relit, image_metrics=False)


@pytest.mark.slow
def test_run_folder_means_its_last_checkpoint(relit, checkpoints, tmp_path):
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    (run / "step-00000010.pt").write_bytes(Path(checkpoints["A"]).read_bytes())
    (run / "step-00000020.pt").write_bytes(Path(checkpoints["B"]).read_bytes())
    ev = evaluate_runs({"run": tmp_path / "run"}, relit, levels=["clear"], resolution=RESOLUTION,
                       device="cpu", image_metrics=False, geometry_samples=GEOMETRY_SAMPLES,
                       gt_samples=GT_SAMPLES)
    assert ev.models["run"]["checkpoint"].endswith("step-00000020.pt")
    assert ev.stats["lpips"]["reason"] == "image metrics off"
    assert all(r.get("psnr_input") is None for r in ev.per_item)
    assert "PSNR" not in ev.markdown() and "PATD" in ev.markdown()


def test_points_only_gt_equals_the_textured_gt(relit):
    """The textured GT's surface samples, drawn once per subject and passed as a point set, give what
    texture_distance gives on the textured mesh itself (same samples, same seed)."""
    from backend.metrics.patd import gt_point_set

    gt = relit.gt_mesh("avatar_0000")
    rng = np.random.default_rng(5)
    pred = gt.vertices[rng.choice(len(gt.vertices), 500)] + rng.normal(0, 0.01, (500, 3))
    colors = rng.uniform(0, 1, (500, 3))
    xyz, rgb, kind, _ = gt_point_set(gt, 20_000, np.random.default_rng(0))
    points = ColoredMesh(vertices=xyz, faces=np.zeros((0, 3), np.int64), vertex_colors=rgb.astype(np.float32))
    a = texture_distance(pred, colors, points)
    b = texture_distance(pred, colors, gt, gt_samples=20_000, rng=np.random.default_rng(0))
    assert kind == "surface-samples"
    assert np.array_equal(a.patd, b.patd) and np.array_equal(a.nearest, b.nearest)
