"""The built extension, installed into headless Blender, against a real `avatex serve` backend.

Each test runs a scenario in a fresh Python process (bpy cannot be re-initialised): it installs the
built zip with ``bpy.ops.extensions.package_install_files`` into a throw-away user folder
(``BLENDER_USER_RESOURCES``), enables it, makes the bundled pyzmq the one imported, and drives the
add-on the way Blender would - operators for the buttons and direct calls of the timer callback
``runtime.tick`` (timers never fire under the wheel). Backends are real server processes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.tiny_models import TINY

pytestmark = pytest.mark.blender
pytest.importorskip("bpy")

PKG = "bl_ext.user_default.avatex"

# The documented heatmap stops (docs/addon.md), for checking colours independently of the add-on.
DOC_STOPS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30",
             "#fde725"]

PREAMBLE = r'''
import atexit, glob, importlib, json, os, socket, subprocess, sys, time
import numpy as np
ZIP, ROOT = sys.argv[1], sys.argv[2]
BACKEND_PY = os.environ["AVATEX_BACKEND_PYTHON"]   # the backend runs in the project's environment
import bpy
bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
# Use the pyzmq wheel bundled in the extension, not the test environment's.
EXT_SITE = glob.glob(os.path.join(os.environ["BLENDER_USER_RESOURCES"], "extensions", ".local", "lib",
                                  "python3.*", "site-packages"))[0]
sys.path.insert(0, EXT_SITE)
PKG = "bl_ext.user_default.avatex"
addon = importlib.import_module(PKG)
tasks = importlib.import_module(PKG + ".tasks")
runtime = importlib.import_module(PKG + ".runtime")
mi = importlib.import_module(PKG + ".mesh_import")
audit = importlib.import_module(PKG + ".audit")
prefs = bpy.context.preferences.addons[PKG].preferences

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

SERVERS = []

@atexit.register
def _stop_servers():
    # Also after a failed assertion: a server left running would keep this process's pipes open.
    for proc in SERVERS:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

def serve(*args, port=None):
    """A real `avatex serve` on a loopback port; returns its endpoint."""
    endpoint = f"tcp://127.0.0.1:{port or free_port()}"
    state = os.path.join(os.environ["BLENDER_USER_RESOURCES"], "server-state")
    proc = subprocess.Popen([BACKEND_PY, "-m", "backend", "serve", "--bind", endpoint, "--state", state,
                             "--no-resume", "--log-level", "warning", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, line
    SERVERS.append(proc)
    return endpoint, proc

def use(endpoint, timeout_s=10.0):
    prefs.address = endpoint
    prefs.timeout_s = timeout_s
    bpy.ops.avatex.connect()
    tick_until(lambda: runtime.RUNTIME.connection_state == "connected", 90)

def tick_until(done, timeout, sleep=0.005, budget=None):
    """Call the timer callback like Blender would until done(); returns each tick's duration.
    ``budget=0`` runs one apply step per tick."""
    durations, deadline = [], time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; connection: {runtime.RUNTIME.status_line()}; tasks: "
                                 f"{[(t.kind, t.state, t.stage, t.message) for t in runtime.RUNTIME.tasks]}")
        t0 = time.perf_counter()
        runtime.tick() if budget is None else runtime.RUNTIME.tick(budget)
        durations.append(time.perf_counter() - t0)
        time.sleep(sleep)
    return durations

def finish(result):
    for proc in SERVERS:
        proc.terminate()
        proc.wait(30)
    print("RESULT " + json.dumps(result), flush=True)

def torus(n):
    u = np.linspace(0, 2 * np.pi, n, endpoint=False)
    uu, vv = np.meshgrid(u, u, indexing="ij")
    r = 1.0 + 0.3 * np.cos(vv)
    verts = np.stack([r * np.cos(uu), r * np.sin(uu), 0.3 * np.sin(vv)], -1).reshape(-1, 3)
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    a, b = i * n + j, ((i + 1) % n) * n + j
    c, d = ((i + 1) % n) * n + (j + 1) % n, i * n + (j + 1) % n
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts.astype(np.float32), tris.astype(np.int32)
'''


@pytest.fixture(scope="session")
def built_zips(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_addon.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {p.name: p for p in sorted(out.glob("*.zip"))}


@pytest.fixture(scope="session")
def linux_zip(built_zips) -> Path:
    return built_zips["avatex-0.1.0-linux_x64.zip"]


BLENDER_PYTHON = os.environ.get("AVATEX_TEST_BLENDER_PYTHON", sys.executable)
"""The Python (with a bpy wheel) that runs the scenarios: set AVATEX_TEST_BLENDER_PYTHON to a venv with
bpy 4.2.0 or 5.0.1 (plus numpy<2, colour-science) to check the extension on other Blender versions."""


def run_scenario(zip_path: Path, body: str, tmp_path: Path, timeout: float = 600) -> dict:
    script = tmp_path / "scenario.py"
    script.write_text(PREAMBLE + textwrap.dedent(body))
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"),
               AVATEX_BACKEND_PYTHON=sys.executable)
    proc = subprocess.run([BLENDER_PYTHON, str(script), str(zip_path), str(ROOT)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"scenario failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n" \
                                           f"{proc.stderr[-6000:]}"
    return json.loads(lines[-1][len("RESULT "):])


# ------------------------------------------------------------------------------------------- build
def test_build_makes_one_valid_zip_per_platform_deterministically(built_zips, tmp_path):
    assert sorted(built_zips) == ["avatex-0.1.0-linux_x64.zip", "avatex-0.1.0-macos_arm64.zip",
                                  "avatex-0.1.0-macos_x64.zip", "avatex-0.1.0-windows_x64.zip"]
    # Two builds back to back (offline: the session build filled the wheel cache) give identical bytes.
    for out in ("a", "b"):
        again = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_addon.py"), "--out",
                                str(tmp_path / out), "--offline"], capture_output=True, text=True,
                               timeout=600, cwd=ROOT)
        assert again.returncode == 0, again.stderr
    for name in built_zips:
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).digest() == \
            hashlib.sha256((tmp_path / "b" / name).read_bytes()).digest(), f"{name} differs between builds"
    platform_tag = {"linux_x64": "manylinux", "windows_x64": "win_amd64", "macos_arm64": "macosx",
                    "macos_x64": "macosx"}
    for name in built_zips:
        with zipfile.ZipFile(tmp_path / "b" / name) as zf:
            names = zf.namelist()
            core = [n for n in names if n.startswith("wheels/avatex_core-")]
            assert core == ["wheels/avatex_core-0.1.0-py3-none-any.whl"], core
            with zipfile.ZipFile(io.BytesIO(zf.read(core[0]))) as wheel:
                for source in sorted((ROOT / "avatex_core").glob("*.py")):
                    assert wheel.read(f"avatex_core/{source.name}") == source.read_bytes(), source.name
            wheels = [n for n in names if n.startswith("wheels/pyzmq-")]
            tag = platform_tag[name.removeprefix("avatex-0.1.0-").removesuffix(".zip")]
            assert len(wheels) == 2 and all(tag in w for w in wheels), wheels
            assert any("cp311-cp311" in w for w in wheels) and any("cp312-abi3" in w for w in wheels)
            manifest = zf.read("blender_manifest.toml").decode()
            assert 'id = "avatex"' in manifest and 'blender_version_min = "4.2.0"' in manifest
            assert "network =" in manifest and "files =" in manifest
            assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
            assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_build_offline_without_cached_wheels_says_so(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_addon.py"), "--out", str(tmp_path),
                           "--offline", "--cache", str(tmp_path / "empty-cache")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "--offline forbids downloading" in proc.stderr
    assert not list(tmp_path.glob("*.zip"))


# ------------------------------------------------------------------------------------ registration
def test_installed_extension_registers_and_is_self_contained(linux_zip, tmp_path):
    result = run_scenario(linux_zip, r'''
        import zmq
        # The UI API the panels draw with (draw code cannot run headless; its calls must exist).
        layout_api = {f.identifier for f in bpy.types.UILayout.bl_rna.functions}
        missing_api = sorted({"progress", "template_icon", "template_ID", "grid_flow", "prop", "operator"}
                             - layout_api)
        if "preview_ensure" not in {f.identifier for f in bpy.types.Image.bl_rna.functions}:
            missing_api.append("Image.preview_ensure")
        panels = sorted(c.__name__ for c in bpy.types.Panel.__subclasses__()
                        if getattr(c, "bl_category", "") == "avatex")
        import avatex_core.protocol
        bpy.ops.preferences.addon_disable(module=PKG)
        disabled = not hasattr(bpy.types.Scene, "avatex")
        bpy.ops.preferences.addon_enable(module=PKG)
        finish({"enabled": PKG in bpy.context.preferences.addons, "panels": panels,
                "address": bpy.context.preferences.addons[PKG].preferences.address,
                "zmq": zmq.__file__, "ext_site": EXT_SITE,
                "protocol": avatex_core.protocol.__file__, "addon_dir": os.path.dirname(addon.__file__),
                "torch": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                "timer": bpy.app.timers.is_registered(runtime.tick), "disabled_cleanly": disabled,
                "missing_api": missing_api,
                "reenabled": hasattr(bpy.types.Scene, "avatex"), "dataset_panel_file":
                os.path.exists(os.path.join(os.path.dirname(addon.__file__), "dataset_panel.py"))})
    ''', tmp_path)
    assert result["enabled"] and result["address"] == "tcp://127.0.0.1:5555"
    assert {"AVATEX_PT_train", "AVATEX_PT_reconstruct", "AVATEX_PT_audit"} <= set(result["panels"])
    if result["dataset_panel_file"]:
        assert len(result["panels"]) > 3, "the renderer's Dataset panel should register too"
    assert result["zmq"].startswith(result["ext_site"]), "pyzmq must come from the bundled wheel"
    assert result["protocol"].startswith(result["ext_site"]), "avatex_core must come from the bundled wheel"
    assert not result["torch"]
    assert result["timer"] and result["disabled_cleanly"] and result["reenabled"]
    assert result["missing_api"] == []


# ------------------------------------------------------------------------------------------- audit
def test_audit_through_the_extension_lands_the_backends_values(linux_zip, tmp_path):
    result = run_scenario(linux_zip, r'''
        import colour
        endpoint, _ = serve()
        use(endpoint)
        n = 30
        x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        verts = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], -1).astype(np.float32) / n
        i, j = np.arange(n - 1)[:, None], np.arange(n - 1)[None, :]
        a, b, c, d = i * n + j, (i + 1) * n + j, (i + 1) * n + j + 1, i * n + j + 1
        tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                               np.stack([a, c, d], -1).reshape(-1, 3)]).astype(np.int32)
        rng = np.random.default_rng(3)
        gt_rgb = rng.random((n * n, 3)).astype(np.float32)
        pred_rgb = np.clip(gt_rgb + rng.normal(0, 0.05, gt_rgb.shape), 0, 1).astype(np.float32)
        # Three vertices with known errors: identical colour, a mid one, black against white.
        probes = [100, 450, 800]
        pred_rgb[100] = gt_rgb[100]
        pred_rgb[450], gt_rgb[450] = (0.5, 0.5, 0.5), (0.6, 0.45, 0.5)
        pred_rgb[800], gt_rgb[800] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        gt = mi.import_mesh("gt", verts, tris, gt_rgb)
        pred = mi.import_mesh("pred", verts, tris, pred_rgb)
        s = bpy.context.scene.avatex
        s.audit_object, s.gt_object, s.gt_source = pred, gt, "OBJECT"
        assert bpy.ops.avatex.audit() == {"FINISHED"}
        ticks = tick_until(lambda: not runtime.RUNTIME.latest("audit").active, 120)
        task = runtime.RUNTIME.latest("audit")
        # The backend's own answer to the same request, through the bundled client.
        import avatex_core.client as client_mod
        ops = importlib.import_module(PKG + ".operators")
        args, arrays = ops.audit_request(pred, gt, s)
        with client_mod.Client(endpoint) as client:
            ref = client.call("evaluate", args, arrays, timeout=120)
        def lab(rgb):
            return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(np.asarray(rgb, np.float64)))
        reference_de = [float(colour.delta_E(lab(pred_rgb[p]), lab(gt_rgb[p]), method="CIE 2000"))
                        for p in probes]
        mesh = pred.data
        finish({"state": task.state, "message": task.message, "ticks": len(ticks),
                "patd": mi.read_point_floats(mesh, "patd").tolist(),
                "pipatd": mi.read_point_floats(mesh, "pipatd").tolist(),
                "ref_patd": ref.arrays["patd"].tolist(), "ref_pipatd": ref.arrays["pipatd"].tolist(),
                "ref_summary": ref.result, "summary": audit.summary_of(pred),
                "heatmap": mi.read_point_colors(mesh, audit.HEATMAP_ATTRIBUTE)[probes].tolist(),
                "probes": probes, "reference_de": reference_de,
                "active": mesh.color_attributes.active_color_name,
                "render": mesh.color_attributes.default_color_name,
                "domains": [mesh.attributes[k].domain + "/" + mesh.attributes[k].data_type
                            for k in ("patd", "pipatd")],
                "material": [m.name for m in mesh.materials]})
    ''', tmp_path)
    import numpy as np

    assert result["state"] == "done", result["message"]
    np.testing.assert_allclose(result["patd"], result["ref_patd"], atol=1e-6)
    np.testing.assert_allclose(result["pipatd"], result["ref_pipatd"], atol=1e-6)
    assert result["domains"] == ["POINT/FLOAT", "POINT/FLOAT"]
    for key in ("patd", "pipatd"):
        for stat in ("mean", "median", "p90"):
            assert result["summary"][key][stat] == pytest.approx(result["ref_summary"][key][stat], abs=1e-9)
    assert result["summary"]["k"] == 8
    # Known values: 0, a mid value (colour-science's CIEDE2000) and black vs white (saturated).
    ref = result["reference_de"]
    assert ref[0] == 0 and 2.5 < ref[1] < 17.5 and ref[2] > 20
    patd = np.asarray(result["patd"])[result["probes"]]
    np.testing.assert_allclose(patd, ref, atol=2e-3)
    stops = np.array([[int(h[k:k + 2], 16) / 255 for k in (1, 3, 5)] for h in DOC_STOPS])
    expected = []
    for de in ref:
        d = min(max(de, 0.0), 20.0)
        k = min(int(d // 2.5), 7)
        t = (d - 2.5 * k) / 2.5
        expected.append(stops[k] * (1 - t) + stops[k + 1] * t)
    np.testing.assert_allclose(result["heatmap"], expected, atol=2 / 255)
    assert result["active"] == "avatex_heatmap" and result["render"] == "Col"
    assert result["material"] == ["avatex heatmap"]


# ----------------------------------------------------------------------------------- reconstruct
def _recon_ready() -> bool:
    try:
        import backend.recon as recon
    except ImportError:
        return False
    return hasattr(recon, "reconstruct") and importlib.util.find_spec("backend.models.checkpoint") is not None


@pytest.mark.skipif(not _recon_ready(), reason="backend.recon.reconstruct is not in the tree yet")
def test_reconstruct_through_the_extension_imports_the_mesh_at_the_cursor(linux_zip, tmp_path):
    import numpy as np

    from backend.models.checkpoint import load_models, save_checkpoint
    from backend.models.config import ModelConfig
    from backend.models.pifu import PIFu

    data = tmp_path / "data"
    data.mkdir()
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = PIFu(ModelConfig.small())
    ckpt = save_checkpoint(data / "small.pt", model)
    assert load_models(checkpoint=ckpt) is not None
    # A person-shaped silhouette: RGBA, alpha is the mask.
    h = w = 128
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = (((xx - 64) / 22.0) ** 2 + ((yy - 64) / 56.0) ** 2 < 1).astype(np.float32)
    rgba = np.stack([0.8 * alpha, 0.4 * alpha, 0.3 * alpha, alpha], -1)
    np.save(tmp_path / "image.npy", rgba.astype(np.float32))
    result = run_scenario(linux_zip, fr'''
        endpoint, _ = serve("--root", {str(data)!r})
        use(endpoint)
        rgba = np.load({str(tmp_path / "image.npy")!r})
        img = bpy.data.images.new("person.png", rgba.shape[1], rgba.shape[0], alpha=True)
        img.pixels.foreach_set(rgba[::-1].ravel())
        s = bpy.context.scene.avatex
        s.image_source, s.image = "DATABLOCK", img
        s.checkpoint, s.resolution = {str(ckpt)!r}, 48
        bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
        assert bpy.ops.avatex.reconstruct() == {{"FINISHED"}}
        tick_until(lambda: not runtime.RUNTIME.latest("reconstruct").active, 400)
        task = runtime.RUNTIME.latest("reconstruct")
        obj = bpy.data.objects.get("person")
        out = {{"state": task.state, "message": task.message, "result": task.result}}
        if obj is not None:
            colors = mi.read_point_colors(obj.data)
            out.update(vertices=len(obj.data.vertices), faces=len(obj.data.polygons),
                       location=list(obj.location), matrix=[list(r) for r in obj.matrix_world],
                       color_attr=obj.data.color_attributes.default_color_name,
                       colors_min=float(colors.min()) if len(colors) else 0.0,
                       colors_max=float(colors.max()) if len(colors) else 1.0,
                       material=[m.name for m in obj.data.materials],
                       checkpoint=obj.get("avatex_checkpoint"),
                       active=bpy.context.view_layer.objects.active.name)
        finish(out)
    ''', tmp_path)
    assert result["state"] == "done", result["message"]
    assert result["vertices"] == result["result"]["vertices"] > 0
    assert result["faces"] == result["result"]["faces"]
    np.testing.assert_allclose(result["location"], [1.0, 2.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(result["matrix"])[:3, :3],
                               [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-6)   # canonical y-up -> z-up
    assert result["color_attr"] == "Col" and 0.0 <= result["colors_min"] <= result["colors_max"] <= 1.0
    assert result["material"] == ["avatex vertex colours"] and result["active"] == "person"
    assert result["checkpoint"] == str(ckpt)


# ---------------------------------------------------------------------------------- large results
def test_million_vertex_mesh_with_both_attributes(linux_zip, tmp_path):
    result = run_scenario(linux_zip, r'''
        verts, tris = torus(1000)
        rng = np.random.default_rng(0)
        colors = rng.random((len(verts), 3), dtype=np.float32)
        patd = (rng.random(len(verts), dtype=np.float32) * 30).astype(np.float32)
        pipatd = (patd * 0.5).astype(np.float32)
        job = mi.StagedImport("big", verts, tris, colors, floats={"patd": patd, "pipatd": pipatd})
        obj = job.run_to_end()
        audit.apply(obj, patd, pipatd, {"patd": {"mean": float(patd.mean())}})
        mesh = obj.data
        finish({"vertices": len(mesh.vertices), "faces": len(mesh.polygons), "edges": len(mesh.edges),
                "patd_equal": bool(np.array_equal(mi.read_point_floats(mesh, "patd"), patd)),
                "pipatd_equal": bool(np.array_equal(mi.read_point_floats(mesh, "pipatd"), pipatd)),
                "tris_equal": bool(np.array_equal(mi.read_triangles(mesh), tris)),
                "colors_err": float(np.abs(mi.read_point_colors(mesh, "Col") - colors).max()),
                "active": mesh.color_attributes.active_color_name})
    ''', tmp_path)
    assert (result["vertices"], result["faces"], result["edges"]) == (1_000_000, 2_000_000, 3_000_000)
    assert result["patd_equal"] and result["pipatd_equal"] and result["tris_equal"]
    assert result["colors_err"] < 1e-6 and result["active"] == "avatex_heatmap"


def test_timer_ticks_stay_bounded_while_a_million_vertex_result_streams_in(linux_zip, tmp_path):
    # The server's `echo` sends the arrays back: a real 36 MB reply over the real socket, handled by the
    # same ReconstructTask that imports reconstructions.
    result = run_scenario(linux_zip, r'''
        endpoint, _ = serve()
        use(endpoint)
        prefs.tick_budget_ms = 15
        verts, tris = torus(1000)
        colors = np.random.default_rng(0).random((len(verts), 3), dtype=np.float32)
        task = tasks.ReconstructTask("streamed", (0.0, 0.0, 0.0), {})
        runtime.RUNTIME.submit(task, "echo", {"data": "large"},
                             {"vertices": verts, "faces": tris, "colors": colors})
        durations, applying, stages = [], [], []
        deadline = time.monotonic() + 300
        while task.active and time.monotonic() < deadline:
            was_applying = task.applying
            t0 = time.perf_counter()
            runtime.tick()
            durations.append(time.perf_counter() - t0)
            stages.append(task.stage)
            applying.append(was_applying or task.applying)
            time.sleep(0.002)
        obj = bpy.data.objects.get("streamed")
        work = [d for d, a in zip(durations, applying) if a]
        worst = int(np.argmax(durations))
        finish({"state": task.state, "message": task.message, "max_tick": max(durations),
                "worst_stage": stages[worst], "worst_prev_stage": stages[worst - 1] if worst else "",
                "ticks": len(durations), "work_ticks": len(work), "work_total": sum(work),
                "vertices": len(obj.data.vertices) if obj else 0})
    ''', tmp_path)
    assert result["state"] == "done", result["message"]
    assert result["vertices"] == 1_000_000
    print("tick bound:", {k: result[k] for k in ("max_tick", "worst_stage", "worst_prev_stage", "ticks",
                                                 "work_ticks", "work_total")})
    budget = 0.015
    # Behaviour bound, not a benchmark: no tick may take more than the budget plus one bounded step
    # (0.1-0.2 s here; 1 s of slack for a loaded CI machine - building the whole mesh at once takes
    # 0.7-2.5 s), and the work is spread over many ticks.
    assert result["max_tick"] < budget + 1.0, result
    assert result["work_ticks"] >= 10, result
    assert result["max_tick"] < result["work_total"] / 3, result


def test_cancel_while_importing_leaves_nothing_behind(linux_zip, tmp_path):
    result = run_scenario(linux_zip, r'''
        endpoint, _ = serve()
        use(endpoint)
        verts, tris = torus(300)
        before = (len(bpy.data.meshes), len(bpy.data.objects))
        task = tasks.ReconstructTask("cancelled", (0.0, 0.0, 0.0), {})
        runtime.RUNTIME.submit(task, "echo", {}, {"vertices": verts, "faces": tris, "colors": verts * 0})
        # One step per tick, until the mesh exists in bpy.data but is not finished.
        tick_until(lambda: task.importer is not None and task.importer.mesh is not None, 120, sleep=0,
                   budget=0.0)
        assert task.applying and "cancelled" in bpy.data.meshes
        assert bpy.ops.avatex.cancel(kind="reconstruct") == {"FINISHED"}
        runtime.tick()
        finish({"state": task.state, "message": task.message, "before": before,
                "after": (len(bpy.data.meshes), len(bpy.data.objects))})
    ''', tmp_path)
    assert result["state"] == "cancelled" and "nothing was added" in result["message"]
    assert result["after"] == result["before"]


# -------------------------------------------------------------------------------------- connection
def test_dropped_backend_gives_a_clear_message_and_reconnects(linux_zip, tmp_path):
    result = run_scenario(linux_zip, r'''
        port = free_port()
        endpoint, proc = serve(port=port)
        use(endpoint, timeout_s=2.0)
        connected = runtime.RUNTIME.status_line()
        proc.kill()
        proc.wait(10)
        SERVERS.remove(proc)
        tick_until(lambda: runtime.RUNTIME.connection_state in ("lost", "reconnecting"), 60, sleep=0.02)
        lost = runtime.RUNTIME.status_line()
        serve(port=port)
        tick_until(lambda: runtime.RUNTIME.connection_state == "connected", 90, sleep=0.02)
        # The reconnected client works: a small audit goes through.
        verts, tris = torus(20)
        gt = mi.import_mesh("gt", verts, tris, np.full((len(verts), 3), 0.5, np.float32))
        pred = mi.import_mesh("pred", verts, tris, np.full((len(verts), 3), 0.5, np.float32))
        s = bpy.context.scene.avatex
        s.audit_object, s.gt_object, s.gt_source = pred, gt, "OBJECT"
        bpy.ops.avatex.audit()
        tick_until(lambda: not runtime.RUNTIME.latest("audit").active, 120)
        finish({"connected": connected, "lost": lost, "again": runtime.RUNTIME.status_line(),
                "audit": runtime.RUNTIME.latest("audit").state,
                "patd_max": float(mi.read_point_floats(pred.data, "patd").max())})
    ''', tmp_path)
    assert result["connected"][1] == "LINKED"
    text, icon = result["lost"]
    assert icon == "ERROR" and "reconnecting" in text
    assert "no reply from the backend" in text or "closed the connection" in text
    assert result["again"][1] == "LINKED"
    assert result["audit"] == "done" and result["patd_max"] == 0.0


# ------------------------------------------------------------------------------------------- train
def test_train_start_reaches_the_backend_and_its_refusal_is_shown(linux_zip, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    result = run_scenario(linux_zip, fr'''
        endpoint, _ = serve("--root", {str(data)!r})
        use(endpoint)
        s = bpy.context.scene.avatex
        s.dataset, s.run_dir, s.loss, s.steps = "/etc", {str(data / "run")!r}, "l1", 10
        assert bpy.ops.avatex.train_start() == {{"FINISHED"}}
        tick_until(lambda: not runtime.RUNTIME.latest("train").active, 120)
        task = runtime.RUNTIME.latest("train")
        finish({{"state": task.state, "message": task.message}})
    ''', tmp_path)
    assert result["state"] == "failed"
    assert "/etc" in result["message"] and "outside the server's roots" in result["message"]


# ------------------------------------------------------------------------------ keys and launcher
def test_curve_keys_and_the_start_local_backend_button(linux_zip, tmp_path):
    keys = tmp_path / "keys"
    for name, out in (("server", keys), ("blender", tmp_path / "client")):
        proc = subprocess.run([sys.executable, "-m", "backend", "keys", "--out", str(out), "--name", name],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
    (keys / "authorized").mkdir(exist_ok=True)
    (keys / "authorized" / "blender.key").write_bytes((tmp_path / "client" / "blender.key").read_bytes())
    result = run_scenario(linux_zip, fr'''
        # 1. A CurveZMQ backend: refused without keys, served with them (key file, then the Z85 text).
        endpoint, _ = serve("--keys", {str(keys)!r})
        prefs.address, prefs.timeout_s = endpoint, 3.0
        prefs.server_key = {str(keys / "server.key")!r}
        prefs.client_key = {str(tmp_path / "client" / "blender.key_secret")!r}
        bpy.ops.avatex.connect()
        tick_until(lambda: runtime.RUNTIME.connection_state == "connected", 90)
        with_file = runtime.RUNTIME.status_line()
        z85 = [ln.split('"')[1] for ln in open({str(keys / "server.key")!r}) if "public-key" in ln][0]
        prefs.server_key = z85
        bpy.ops.avatex.connect()
        tick_until(lambda: runtime.RUNTIME.connection_state == "connected", 90)
        with_text = runtime.RUNTIME.status_line()
        prefs.server_key = prefs.client_key = ""
        bpy.ops.avatex.connect()
        tick_until(lambda: runtime.RUNTIME.connection_state in ("lost", "reconnecting"), 60, sleep=0.02)
        without = runtime.RUNTIME.status_line()
        # 2. The preferences' Start local backend button runs `python -m backend serve` and connects.
        prefs.python, prefs.roots = {sys.executable!r}, {str(tmp_path)!r}
        prefs.extra_args = "--state " + {str(tmp_path / "launcher-state")!r} + " --no-resume"
        prefs.address, prefs.timeout_s = f"tcp://127.0.0.1:{{free_port()}}", 10.0
        bpy.ops.avatex.backend_start()
        pid = runtime.RUNTIME.local.proc.pid
        tick_until(lambda: runtime.RUNTIME.connection_state == "connected", 120, sleep=0.02)
        launched = runtime.RUNTIME.status_line()
        bpy.ops.avatex.backend_stop()
        runtime.RUNTIME.local.proc.wait(30)
        finish({{"with_file": with_file, "with_text": with_text, "without": without, "launched": launched,
                 "pid": pid, "exit": runtime.RUNTIME.local.proc.returncode,
                 "log": open(runtime.RUNTIME.local.log_path).read()}})
    ''', tmp_path)
    assert result["with_file"][1] == "LINKED" and result["with_text"][1] == "LINKED"
    assert result["without"][1] == "ERROR"
    assert result["launched"][1] == "LINKED"
    assert result["exit"] is not None and "backend serve --bind tcp://127.0.0.1:" in result["log"]





@pytest.mark.slow
def test_training_shows_live_progress_and_loss_curve_and_stops(linux_zip, tmp_path):
    data = tmp_path / "data"
    avatars = ROOT / "tests" / "fixtures" / "avatars"
    render = subprocess.run([sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes",
                             str(avatars / "avatar_0001.ply"), str(avatars / "avatar_0002.ply"), "--out",
                             str(data / "relit"), "--views", "2", "--step", "180", "--levels", "clear",
                             "--resolution", "64", "--samples", "2", "--albedo-samples", "1", "--no-denoise",
                             "--test-fraction", "0.5"], capture_output=True, text=True, timeout=600)
    assert render.returncode == 0, render.stderr[-3000:]
    config = {"data": str(data / "relit"), "model": "small", "model_overrides": TINY, "stage": "color",
              "loss": "l1", "batch": 1, "points_color": 200, "patches": 10, "dense_samples": 5000,
              "pool_surface": 2000, "pool_uniform": 500, "workers": 0, "log_every": 1,
              "checkpoint_every": 1000, "val_every": 1000, "progress_bar": False, "seed": 0}
    result = run_scenario(linux_zip, fr'''
        endpoint, _ = serve("--root", {str(data)!r})
        use(endpoint)
        config = json.loads({json.dumps(config)!r})
        # A short run to its end: live step / loss / ETA and the loss-curve image.
        task = tasks.TrainTask("short", 6)
        run1 = dict(config, steps=6, out={str(data / "run1")!r})
        runtime.RUNTIME.submit(task, "train.start", {{"config": run1}})
        seen = []
        def progressed():
            if task.step_now is not None and (not seen or seen[-1] != task.step_now):
                seen.append(task.step_now)
            return not task.active
        tick_until(progressed, 400, sleep=0.02)
        img = bpy.data.images.get(tasks.LOSS_IMAGE)
        px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
        img.pixels.foreach_get(px)
        short = {{"state": task.state, "message": task.message, "steps_seen": seen, "losses": task.losses,
                  "eta_seen": task.eta_s is not None, "image": list(img.size),
                  "curve_pixels": int(np.all(np.isclose(px.reshape(-1, 4), (1.0, 0.62, 0.2, 1.0), atol=1e-3),
                                             axis=1).sum()),
                  "checkpoint": task.result.get("checkpoint")}}
        # A long run, stopped with the panel's Stop button once it trains.
        bpy.context.scene.avatex.steps = 5000
        task = tasks.TrainTask("long", 5000)
        run2 = dict(config, steps=5000, out={str(data / "run2")!r})
        runtime.RUNTIME.submit(task, "train.start", {{"config": run2}})
        tick_until(lambda: task.step_now is not None and task.step_now >= 1 and task.stage == "train", 400,
                   sleep=0.02)
        assert bpy.ops.avatex.cancel(kind="train") == {{"FINISHED"}}
        tick_until(lambda: not task.active, 300, sleep=0.02)
        finish({{"short": short, "long": {{"state": task.state, "message": task.message,
                                          "step": task.step_now}}}})
    ''', tmp_path)
    short, long = result["short"], result["long"]
    assert short["state"] == "done", short["message"]
    assert short["steps_seen"][-1] == 6 and len(short["losses"]) >= 2 and short["eta_seen"]
    assert short["image"] == [320, 160] and short["curve_pixels"] > 50
    assert short["checkpoint"] and short["checkpoint"].endswith(".pt")
    assert long["state"] == "cancelled" and long["step"] < 5000
