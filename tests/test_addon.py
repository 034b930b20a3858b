"""The add-on from a source checkout under the bpy wheel: registration, audit results on meshes, the
edit-mode selection error, images, training progress, the local-backend launcher and operator errors.

The installed extension (built zip) against a real backend is tested in test_addon_extension.py.
"""

from __future__ import annotations

import socket
import sys
import time

import numpy as np
import pytest
import trimesh

bpy = pytest.importorskip("bpy")

import blender_addon  # noqa: E402
from avatex_core import heatmap, protocol  # noqa: E402
from blender_addon import audit, images, materials, operators, runtime, tasks  # noqa: E402
from blender_addon import mesh_import as mi  # noqa: E402
from blender_addon.local_backend import LaunchError, LocalBackend, serve_command  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.helpers.addon import addon, empty_scene  # noqa: E402, F401, F811  (registration, clean scenes)
from tests.helpers.meshes import grid, mesh_arrays  # noqa: E402

pytestmark = pytest.mark.blender


def grid_mesh(name: str = "recon", n: int = 20, colors: np.ndarray | None = None):
    verts, tris = grid(n)
    if colors is None:
        colors = np.random.default_rng(0).random((n * n, 3), dtype=np.float32)
    obj = mi.import_mesh(name, verts, tris, colors)
    materials.assign_single_material(obj, materials.attribute_material(materials.COLORS_MATERIAL, "Col"))
    return obj


# ------------------------------------------------------------------------------------- registration
def test_registration_adds_panels_operators_and_settings(addon):  # noqa: F811  (the fixture)
    for name in ("AVATEX_PT_train", "AVATEX_PT_reconstruct", "AVATEX_PT_audit"):
        panel = getattr(bpy.types, name)
        assert panel.bl_category == "avatex" and panel.bl_region_type == "UI"
    orders = [getattr(bpy.types, n).bl_order for n in ("AVATEX_PT_train", "AVATEX_PT_reconstruct",
                                                       "AVATEX_PT_audit")]
    assert orders == sorted(orders)
    for op in ("reconstruct", "audit", "train_start", "cancel", "backend_start", "connect"):
        assert hasattr(bpy.ops.avatex, op)
    assert bpy.context.scene.avatex.k == 8
    legend_top = bpy.context.window_manager.avatex_legend_4[:]
    np.testing.assert_allclose(legend_top, heatmap.STOPS_SRGB[-1], atol=1e-6)


def test_every_icon_the_ui_draws_exists():
    # Panel draw code cannot run headless; a misspelt icon would only fail in the UI.
    import re

    known = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    used = set()
    for name in ("panels.py", "preferences.py", "runtime.py", "dataset_panel.py"):
        text = (ROOT / "blender_addon" / name).read_text()
        used |= set(re.findall(r'icon="([A-Z0-9_]+)"', text))
        used |= set(re.findall(r'return \(.*, "([A-Z][A-Z0-9_]+)"\)$', text, re.MULTILINE))  # (text, icon)
    assert {"LINKED", "ERROR", "CANCEL", "VIEWZOOM"} <= used
    assert sorted(used - known) == []


def test_module_registration_list_includes_the_dataset_panel():
    assert "dataset_panel" in blender_addon._MODULES
    assert blender_addon._MODULES.index("dataset_panel") < blender_addon._MODULES.index("panels")


def test_one_timer_for_the_whole_addon():
    """Only the runtime registers a timer; the Dataset render is polled from its tick."""
    users = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "blender_addon").rglob("*.py")
                   if "timers.register(" in p.read_text(encoding="utf-8"))
    assert users == ["blender_addon/runtime.py"]
    assert bpy.app.timers.is_registered(runtime.tick)
    assert runtime.RUNTIME.dataset.running is False


def test_idle_tick_without_a_connection_is_cheap_and_slow_paced():
    assert runtime.tick() == runtime.IDLE_INTERVAL_S
    assert runtime.RUNTIME.status_line()[0] == "Not connected"


# -------------------------------------------------------------------------------------------- audit
def test_audit_apply_writes_attributes_heatmap_material_and_summary():
    obj = grid_mesh()
    n = len(obj.data.vertices)
    patd = np.linspace(0, 30, n, dtype=np.float32)
    pipatd = patd / 2
    summary = {"patd": {"mean": 15.0, "median": 15.0, "p90": 27.0}, "pipatd": {"mean": 7.5}, "k": 8}
    stages = list(audit.apply_steps(obj, patd, pipatd, summary))
    assert stages == ["attributes", "heatmap colours", "material"]
    mesh = obj.data
    np.testing.assert_array_equal(mi.read_point_floats(mesh, "patd"), patd)
    np.testing.assert_array_equal(mi.read_point_floats(mesh, "pipatd"), pipatd)
    assert mesh.attributes["patd"].domain == "POINT" and mesh.attributes["patd"].data_type == "FLOAT"
    # Solid mode shows the heatmap; exporters and the next audit still get the mesh's own colours.
    assert mesh.color_attributes.active_color_name == audit.HEATMAP_ATTRIBUTE
    assert mesh.color_attributes.default_color_name == "Col"
    np.testing.assert_allclose(mi.read_point_colors(mesh, audit.HEATMAP_ATTRIBUTE),
                               heatmap.heatmap_srgb(patd), atol=1e-5)
    mat = mesh.materials[0]
    assert mat.name == materials.HEATMAP_MATERIAL
    attr_nodes = [nd for nd in mat.node_tree.nodes if nd.type == "ATTRIBUTE"]
    assert [nd.attribute_name for nd in attr_nodes] == [audit.HEATMAP_ATTRIBUTE]
    assert attr_nodes[0].outputs["Color"].links[0].to_socket.name == "Base Color"
    assert audit.summary_of(obj)["patd"]["mean"] == 15.0 and audit.summary_of(obj)["shown"] == "patd"
    np.testing.assert_allclose(operators.object_colors(obj), mi.read_point_colors(mesh, "Col"))


def test_heatmap_metric_switch_and_back_to_colours():
    obj = grid_mesh()
    n = len(obj.data.vertices)
    audit.apply(obj, np.zeros(n, np.float32), np.full(n, 25.0, np.float32))
    bpy.context.scene.avatex.audit_object = obj
    bpy.context.scene.avatex.heatmap_metric = "pipatd"       # the property's update re-colours
    np.testing.assert_allclose(mi.read_point_colors(obj.data, audit.HEATMAP_ATTRIBUTE)[0],
                               heatmap.STOPS_SRGB[-1], atol=1e-5)
    audit.show_colors(obj)
    assert obj.data.color_attributes.active_color_name == "Col"
    assert obj.data.materials[0].name == materials.COLORS_MATERIAL
    bpy.ops.avatex.audit_view(show="HEATMAP")
    assert obj.data.color_attributes.active_color_name == audit.HEATMAP_ATTRIBUTE


def test_users_own_materials_come_back_after_the_heatmap():
    obj = grid_mesh()
    own = bpy.data.materials.new("skin")
    obj.data.materials.clear()
    obj.data.materials.append(own)
    n = len(obj.data.vertices)
    audit.apply(obj, np.ones(n, np.float32), np.ones(n, np.float32))
    assert [m.name for m in obj.data.materials] == [materials.HEATMAP_MATERIAL]
    audit.show_colors(obj)
    assert [m.name for m in obj.data.materials] == ["skin"]


def test_audit_apply_refuses_wrong_lengths():
    obj = grid_mesh()
    with pytest.raises(ValueError, match="has shape"):
        audit.apply(obj, np.zeros(3, np.float32), np.zeros(3, np.float32))


def test_selection_error_in_edit_mode():
    import bmesh

    obj = grid_mesh()
    n = len(obj.data.vertices)
    patd = np.arange(n, dtype=np.float32)
    audit.apply(obj, patd, patd * 2)
    view_layer = bpy.context.view_layer
    view_layer.objects.active = obj
    obj.select_set(True)
    with bpy.context.temp_override(active_object=obj, object=obj, selected_objects=[obj],
                                   selected_editable_objects=[obj]):
        bpy.ops.object.mode_set(mode="EDIT")
        bm = bmesh.from_edit_mesh(obj.data)
        for v in bm.verts:
            v.select_set(v.index in (3, 10, 50))
        bm.select_flush_mode()
        bmesh.update_edit_mesh(obj.data)
        assert runtime.RUNTIME._watch_selection(time.monotonic() + 10) is True
        sel = runtime.RUNTIME.selection
        assert sel["selected"] == 3 and sel["object"] == obj.name
        assert sel["patd"] == pytest.approx(21.0) and sel["pipatd"] == pytest.approx(42.0)
        # Unchanged selection: nothing recomputed.
        assert runtime.RUNTIME._watch_selection(time.monotonic() + 20) is False
        bm.verts.ensure_lookup_table()
        bm.verts[50].select_set(False)
        bm.select_history.add(bm.verts[3])
        bmesh.update_edit_mesh(obj.data)
        assert runtime.RUNTIME._watch_selection(time.monotonic() + 30) is True
        assert runtime.RUNTIME.selection["patd"] == pytest.approx(6.5)
        bpy.ops.object.mode_set(mode="OBJECT")


def test_an_audit_result_waits_while_its_object_is_in_edit_mode():
    obj = grid_mesh()
    n = len(obj.data.vertices)
    bpy.context.view_layer.objects.active = obj
    task = tasks.AuditTask(obj.name, n, "patd")
    runtime.RUNTIME.tasks.append(task)
    patd = np.full(n, 3.0, np.float32)
    event = protocol.Event(type="ok", id="r1", job="j1", result={"patd": {"mean": 3.0}, "k": 8},
                           arrays={"patd": patd, "pipatd": patd / 3})
    with bpy.context.temp_override(active_object=obj, object=obj, selected_objects=[obj],
                                   selected_editable_objects=[obj]):
        bpy.ops.object.mode_set(mode="EDIT")
        task.on_ok(event)
        assert runtime.RUNTIME.tick(budget_s=0.05) == runtime.ACTIVE_INTERVAL_S   # paused: no busy loop
        assert task.paused and task.applying and "leave Edit Mode" in task.stage
        bpy.ops.object.mode_set(mode="OBJECT")
    runtime.RUNTIME.tick(budget_s=1.0)
    assert task.state == tasks.DONE and not task.paused
    np.testing.assert_array_equal(mi.read_point_floats(obj.data, "patd"), patd)
    assert task.done_message() == f"{obj.name}: PATD mean 3.00"
    task.result["flavour"] = "vertices"
    assert task.done_message() == f"{obj.name}: PATD mean 3.00 (against GT vertices, the paper's PATD)"


def test_audit_request_sends_object_colours_not_the_heatmap_and_world_space_on_request():
    pred = grid_mesh("pred")
    gt = grid_mesh("gt", colors=np.full((400, 3), 0.25, np.float32))
    gt.location = (1.0, 2.0, 3.0)
    bpy.context.view_layer.update()
    n = len(pred.data.vertices)
    audit.apply(pred, np.ones(n, np.float32), np.ones(n, np.float32))
    s = bpy.context.scene.avatex
    s.gt_source = "OBJECT"
    args, arrays = operators.audit_request(pred, gt, s)
    assert args == {"k": 8} and set(arrays) == {"vertices", "colors", "gt_vertices", "gt_faces", "gt_colors"}
    np.testing.assert_allclose(arrays["colors"], mi.read_point_colors(pred.data, "Col"), atol=1e-6)
    np.testing.assert_allclose(arrays["gt_colors"], 0.25, atol=1e-6)
    assert arrays["gt_faces"].dtype == np.int32 and arrays["gt_faces"].shape == (2 * 19 * 19, 3)
    np.testing.assert_allclose(arrays["gt_vertices"], arrays["vertices"])          # object space
    s.space = "WORLD"
    _, arrays = operators.audit_request(pred, gt, s)
    np.testing.assert_allclose(arrays["gt_vertices"] - arrays["vertices"], [[1.0, 2.0, 3.0]] * n, atol=1e-6)
    s.gt_source, s.gt_path = "FILE", "/data/gt/subject.ply"
    args, arrays = operators.audit_request(pred, gt, s)
    assert args["gt"] == "/data/gt/subject.ply" and "gt_vertices" not in arrays


def test_audit_operator_explains_what_is_missing():
    pred = grid_mesh("pred")
    s = bpy.context.scene.avatex
    s.audit_object = pred
    s.gt_source = "OBJECT"
    with pytest.raises(RuntimeError, match="choose the ground-truth object"):
        bpy.ops.avatex.audit()
    bare = bpy.data.objects.new("bare", mi.build_mesh("bare", np.eye(3, dtype=np.float32),
                                                     np.array([[0, 1, 2]])))
    bpy.context.scene.collection.objects.link(bare)
    s.gt_object = bare
    with pytest.raises(RuntimeError, match="neither a colour attribute nor an image texture"):
        bpy.ops.avatex.audit()


# ------------------------------------------------------------------------------------------- images
def test_image_rgba_is_top_down_uint8_srgb():
    img = bpy.data.images.new("px", 2, 3, alpha=True)
    px = np.zeros((3, 2, 4), np.float32)   # Blender rows: bottom first
    px[0, 0] = (1, 0, 0, 1)                # bottom-left red
    px[2, 1] = (0, 0, 1, 0.5)              # top-right blue, half transparent
    img.pixels.foreach_set(px.ravel())
    out = images.image_rgba(img)
    assert out.shape == (3, 2, 4) and out.dtype == np.uint8
    assert tuple(out[2, 0]) == (255, 0, 0, 255)
    assert tuple(out[0, 1]) == (0, 0, 255, 128)


def test_float_images_are_encoded_to_srgb_and_missing_files_are_named():
    img = bpy.data.images.new("lin", 1, 1, float_buffer=True)
    img.pixels.foreach_set(np.array([0.21404114, 0.21404114, 0.21404114, 1.0], np.float32))
    assert tuple(images.image_rgba(img)[0, 0, :3]) == (128, 128, 128)
    with pytest.raises(images.ImageError, match="person.png' does not exist"):
        images.read_file("/nonexistent/person.png")


def test_image_files_are_read_without_leaving_a_datablock(tmp_path):
    img = bpy.data.images.new("saved", 3, 2, alpha=True)
    img.pixels.foreach_set(np.tile(np.array([0, 1, 0, 1], np.float32), 6))
    img.filepath_raw = str(tmp_path / "person.png")
    img.file_format = "PNG"
    img.save()
    bpy.data.images.remove(img)
    rgba, stem = images.read_file(str(tmp_path / "person.png"))
    assert stem == "person" and rgba.shape == (2, 3, 4)
    assert tuple(rgba[0, 0]) == (0, 255, 0, 255)
    assert len(bpy.data.images) == 0


def test_reconstruct_operator_checks_its_image(tmp_path):
    s = bpy.context.scene.avatex
    s.image_source, s.image_path = "FILE", str(tmp_path / "missing.png")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.avatex.reconstruct()


def test_reconstruct_offers_pifuhd_with_vertex_colours_only():
    s = bpy.context.scene.avatex
    items = [i.identifier for i in s.bl_rna.properties["recon_model"].enum_items]
    assert items == ["pifu", "pifu_official", "pifuhd"] and s.recon_model == "pifu"
    img = bpy.data.images.new("cutout.png", 4, 4, alpha=True)
    px = np.ones((4, 4, 4), np.float32)
    px[0, :, 3] = 0.0
    img.pixels.foreach_set(px.ravel())
    s.image_source, s.image, s.use_mask, s.recon_model, s.texture = "DATABLOCK", img, False, "pifuhd", "1024"
    try:
        with pytest.raises(RuntimeError, match="PIFuHD gives vertex colours only"):
            bpy.ops.avatex.reconstruct()
    finally:
        s.recon_model, s.texture = "pifu", "NONE"


def test_separate_masks_are_read_and_must_match_the_image():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[1:3, 2:4] = 255
    assert images.mask_from(rgba).tolist() == rgba[..., 3].tolist()     # alpha when it varies
    opaque = rgba.copy()
    opaque[..., 3] = 255
    np.testing.assert_array_equal(images.mask_from(opaque), rgba[..., 0])   # else brightness
    img = bpy.data.images.new("person.png", 6, 4, alpha=True)
    img.pixels.foreach_set(np.ones(6 * 4 * 4, np.float32))
    mask = bpy.data.images.new("mask.png", 3, 2)
    s = bpy.context.scene.avatex
    s.image_source, s.image, s.use_mask = "DATABLOCK", img, True
    with pytest.raises(RuntimeError, match="choose a mask"):
        bpy.ops.avatex.reconstruct()
    s.mask_image = mask
    with pytest.raises(RuntimeError, match="the mask is 3×2 but the image is 6×4"):
        bpy.ops.avatex.reconstruct()


# ------------------------------------------------------------------------------------------- train
def test_training_progress_fills_the_panel_state_and_the_loss_image():
    task = tasks.TrainTask("run", total_steps=100)
    for step in range(0, 60, 10):
        task.on_progress(protocol.Event(type="progress", id="r", job="j1", stage="train",
                                        fraction=step / 100, info={"step": step, "loss": 1.0 / (1 + step)}))
    assert task.job == "j1" and task.step_now == 50 and task.loss_now == pytest.approx(1 / 51)
    assert task.eta_s is not None and task.eta_s >= 0
    assert task.steps == [0, 10, 20, 30, 40, 50]
    assert task.refresh_curve(time.monotonic()) is True
    img = bpy.data.images[tasks.LOSS_IMAGE]
    px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
    img.pixels.foreach_get(px)
    assert np.any(np.all(np.isclose(px.reshape(-1, 4), (1.0, 0.62, 0.2, 1.0), atol=1e-3), axis=1))
    assert task.refresh_curve(time.monotonic()) is False     # nothing new to draw


# ------------------------------------------------------------------------------------ local backend
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_when_up(client, op: str, timeout: float = 90.0) -> dict:
    """A blocking call that waits out a backend still starting (requests sent before it listened are
    failed by the client once it reconnects: it cannot know whether they arrived)."""
    from avatex_core.client import BackendError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.call(op, timeout=max(1.0, deadline - time.monotonic())).result
        except BackendError as exc:
            if exc.code != "connection_lost" or time.monotonic() > deadline:
                raise


def test_launcher_validates_its_inputs(tmp_path):
    backend = LocalBackend()
    with pytest.raises(LaunchError, match="set the backend Python"):
        backend.start("", "tcp://127.0.0.1:5555", [], tmp_path)
    with pytest.raises(LaunchError, match="not an executable"):
        backend.start(str(tmp_path / "python"), "tcp://127.0.0.1:5555", [], tmp_path)
    with pytest.raises(LaunchError, match="do not exist"):
        backend.start(sys.executable, "tcp://127.0.0.1:5555", [str(tmp_path / "nope")], tmp_path)
    assert serve_command("py", "tcp://127.0.0.1:1", ["/a", "/b"], "--device cpu") == [
        "py", "-m", "backend", "serve", "--bind", "tcp://127.0.0.1:1", "--root", "/a", "--root", "/b",
        "--device", "cpu"]


@pytest.mark.slow
def test_launcher_starts_a_real_backend_that_answers_then_stops(tmp_path):
    from avatex_core.client import Client

    backend = LocalBackend()
    address = f"tcp://127.0.0.1:{_free_port()}"
    backend.start(sys.executable, address, [str(tmp_path)], tmp_path / "logs",
                  extra=f"--state {tmp_path / 'state'} --no-resume")
    try:
        with Client(address) as client:
            hello = call_when_up(client, "hello")
        assert str(tmp_path.resolve()) in str(hello["roots"])
        assert backend.running
    finally:
        backend.stop(timeout=15)
    assert not backend.running and backend.proc.returncode is not None
    assert "backend serve" in (tmp_path / "logs" / "backend.log").read_text()


@pytest.mark.slow
def test_launcher_reports_why_the_backend_exited(tmp_path):
    backend = LocalBackend()
    backend.start(sys.executable, "tcp://0.0.0.0:5599", [], tmp_path)   # refused without keys
    deadline = time.monotonic() + 60
    while backend.running and time.monotonic() < deadline:
        time.sleep(0.1)
    message = backend.exit_message()
    assert message is not None and "CurveZMQ" in message
    backend.stop()


def test_runtime_refuses_remote_addresses_without_keys():
    from blender_addon.settings import Settings

    with pytest.raises(ConnectionError, match="needs CurveZMQ keys"):
        runtime.RUNTIME.connect(Settings(address="tcp://10.1.2.3:5555"), force=True)
    assert runtime._is_local_address("tcp://127.0.0.1:5555") and runtime._is_local_address("ipc:///tmp/x")
    assert not runtime._is_local_address("tcp://gpu-box:5555")


def test_build_script_module_derives_pip_arguments_from_wheel_names():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_addon
    finally:
        sys.path.pop(0)
    wheel = "pyzmq-27.3.0-cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"
    args = build_addon.pip_download_args(wheel)
    assert args[args.index("--python-version") + 1] == "3.12" and args[args.index("--abi") + 1] == "abi3"
    assert args.count("--platform") == 2 and args[-1] == "pyzmq==27.3.0"
    with pytest.raises(build_addon.BuildError, match="only CPython"):
        build_addon.pip_download_args("six-1.16.0-py2.py3-none-any.whl")
    # Blender 4.2 installs the highest-versioned wheel whatever its Python tag: cp311 must be newest.
    build_addon.check_wheel_versions(["pyzmq-27.3.0-cp311-cp311-win_amd64.whl",
                                      "pyzmq-27.2.0-cp312-abi3-win_amd64.whl"])
    with pytest.raises(build_addon.BuildError, match="cp311 wheel must be the newest"):
        build_addon.check_wheel_versions(["pyzmq-27.3.0-cp311-cp311-win_amd64.whl",
                                          "pyzmq-27.3.0-cp312-abi3-win_amd64.whl"])


# -------------------------------------------------------------------------------- headless script
@pytest.mark.slow
def test_audit_blend_script_writes_the_blend_and_both_images(tmp_path):
    import json
    import subprocess

    from PIL import Image

    from backend.meshio import save_mesh

    # A standing capsule (y-up, like a person in the canonical space).
    body = trimesh.creation.capsule(height=1.4, radius=0.8, count=[24, 24])
    body.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    verts, tris = mesh_arrays(body)
    colors = np.tile(np.array([[0.8, 0.3, 0.2]], np.float32), (len(verts), 1))
    save_mesh(tmp_path / "person.ply", verts, tris, colors)
    patd = np.linspace(0, 25, len(verts)).astype(np.float32)
    np.savez(tmp_path / "errors.npz", patd=patd, pipatd=patd / 2)
    out = tmp_path / "out"
    script = str(ROOT / "render_scripts" / "audit_blend.py")
    proc = subprocess.run([sys.executable, script, str(tmp_path / "person.ply"), str(tmp_path / "errors.npz"),
                           "--out", str(out), "--size", "96"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.name for p in out.iterdir())
    assert written == ["person.blend", "person_colors.png", "person_heatmap.png"]
    shots = {k: np.asarray(Image.open(out / f"person_{k}.png")) for k in ("colors", "heatmap")}
    for img in shots.values():
        assert img.shape == (96, 96, 4) and (img[..., 3] > 0).mean() > 0.2   # the mesh fills the frame
    assert np.abs(shots["colors"].astype(int) - shots["heatmap"].astype(int)).mean() > 5
    # Flat light: every covered pixel is the vertex colour itself (its 8-bit sRGB value), not a shade of it.
    covered = shots["colors"][..., 3] > 250  # inside the silhouette (its edge is antialiased)
    shown = np.median(shots["colors"][covered][:, :3], axis=0)
    assert np.abs(shown - np.array([0.8, 0.3, 0.2]) * 255).max() <= 2
    check = ("import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
             "me = bpy.data.objects['person'].data; "
             "print('R', json.dumps({'attrs': sorted(a.name for a in me.attributes if a.name[0] != '.'), "
             "'active': me.color_attributes.active_color_name, 'mat': me.materials[0].name, "
             "'patd': [me.attributes['patd'].data[k].value for k in (0, len(me.vertices) - 1)]}))")
    proc = subprocess.run([sys.executable, "-c", check, str(out / "person.blend")], capture_output=True,
                          text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("R ")]
    assert line, proc.stderr[-2000:]
    saved = json.loads(line[0][2:])
    assert {"Col", "patd", "pipatd", "avatex_heatmap"} <= set(saved["attrs"])
    assert saved["active"] == "avatex_heatmap" and saved["mat"] == "avatex heatmap"
    assert saved["patd"] == pytest.approx([0.0, 25.0])


@pytest.mark.slow
def test_audit_blend_script_refuses_mismatched_errors(tmp_path):
    import subprocess

    from backend.meshio import save_mesh

    save_mesh(tmp_path / "m.ply", np.eye(3, dtype=np.float32), np.array([[0, 1, 2]], np.int32),
              np.ones((3, 3), np.float32))
    np.savez(tmp_path / "e.npz", patd=np.zeros(5, np.float32), pipatd=np.zeros(5, np.float32))
    script = str(ROOT / "render_scripts" / "audit_blend.py")
    proc = subprocess.run([sys.executable, script, str(tmp_path / "m.ply"), str(tmp_path / "e.npz"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "patd has 5 values but the mesh has 3 vertices" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_reconstruct_with_official_weights_asks_the_backend_for_its_fetched_pifu(monkeypatch, tmp_path):
    """Model "PIFu (official weights)" sends no checkpoint but ``weights: "pifu"``; a backend whose weights
    folder is empty answers with the one line that says how to fetch them."""
    from tests.helpers.addon import connect_runtime, finished_task
    from tests.helpers.server import spawn_test_server

    monkeypatch.setenv("AVATEX_WEIGHTS", str(tmp_path / "weights"))
    s = bpy.context.scene.avatex
    img = bpy.data.images.new("cutout.png", 8, 8, alpha=True)
    px = np.ones((8, 8, 4), np.float32)
    px[:2, :, 3] = 0.0
    img.pixels.foreach_set(px.ravel())
    s.image_source, s.image, s.use_mask, s.texture = "DATABLOCK", img, False, "NONE"
    s.recon_model = "pifu_official"
    s.checkpoint = "ignored.pt"
    server = spawn_test_server("--root", str(tmp_path))
    try:
        connect_runtime(monkeypatch, server.endpoint)
        assert bpy.ops.avatex.reconstruct() == {"FINISHED"}
        task = finished_task("reconstruct", 120)
        assert task.state != "done"
        assert "avatex weights fetch pifu" in task.message and str(tmp_path / "weights") in task.message
    finally:
        runtime.RUNTIME.disconnect()
        server.close()
        s.recon_model, s.checkpoint = "pifu", ""
