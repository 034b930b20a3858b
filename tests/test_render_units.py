"""The renderer's pure parts (no Blender): lighting levels and calibration, settings, dataset layout, and
the render library API's event lines and requests."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from avatex_core import dataset_layout as layout
from avatex_core import lighting
from avatex_core import render_jobs as jobs
from avatex_core import render_options as options
from avatex_core.lighting import (
    BUILTIN_LEVELS,
    LevelError,
    calibrate_point,
    keep_clear_of_subject,
    level_from_dict,
    load_level_config,
    sample_light,
    srgb_to_linear,
)
from avatex_core.render_settings import RenderSettings, SettingsError
from blender_addon.render import pngio


def test_builtin_levels_are_centred_on_the_seeds_settings():
    seed = {"wild": ((1, 1, 0.4), 0.3, 0.7), "intermediate": ((0, 0, 0.4), 0.45, 0.6),
            "clear": ((0, 0, 1.0), 0.6, 0.4)}
    for name, (pos, ambient, diffuse) in seed.items():
        spec = BUILTIN_LEVELS[name]
        assert spec.position == pos
        assert np.mean(spec.ambient) == pytest.approx(ambient)
        assert np.mean(spec.diffuse) == pytest.approx(diffuse)
        draws = [sample_light(spec, s) for s in range(400)]
        assert np.mean([d["ambient"] for d in draws]) == pytest.approx(ambient, abs=0.01)
        assert np.mean([d["diffuse"] for d in draws]) == pytest.approx(diffuse, abs=0.015)
        center = np.asarray(pos) / np.linalg.norm(pos)
        for d in draws:
            p = np.asarray(d["position_camera"])
            angle = math.degrees(math.acos(np.clip(p @ center / np.linalg.norm(p), -1, 1)))
            assert angle <= spec.position_jitter_deg + 1e-6
            r = np.linalg.norm(p) / np.linalg.norm(pos)
            assert 1 - spec.distance_jitter - 1e-6 <= r <= 1 + spec.distance_jitter + 1e-6


def test_sampling_is_a_function_of_the_seed():
    spec = BUILTIN_LEVELS["wild"]
    assert sample_light(spec, 7) == sample_light(spec, 7)
    assert sample_light(spec, 7) != sample_light(spec, 8)
    seeds = {lighting.image_seed(0, "s", v, lv) for v in range(45) for lv in ("wild", "clear", "albedo")}
    assert len(seeds) == 135 and all(0 <= s < 2 ** 31 for s in seeds)
    assert lighting.image_seed(1, "s", 0, "wild") != lighting.image_seed(0, "s", 0, "wild")


def test_hdri_sampling_picks_an_environment():
    spec = BUILTIN_LEVELS["hdri"]
    d = sample_light(spec, 3, ["city", "forest"])
    assert d["environment"] in ("city", "forest") and 0 <= d["rotation_deg"] <= 360
    assert spec.brightness[0] <= d["brightness"] <= spec.brightness[1]
    with pytest.raises(LevelError, match="no HDRI"):
        sample_light(spec, 3, [])


def test_calibration_puts_white_at_ambient_and_ambient_plus_diffuse():
    for ambient, diffuse in ((0.3, 0.7), (0.45, 0.6), (0.6, 0.4), (0.2, 0.3)):
        cal = calibrate_point(ambient, diffuse)
        # Radiance of a white Lambertian surface: world A (whole sky) + light P / (4 pi^2) facing it.
        away = cal.world_color[0]
        facing = away + cal.energy / (4 * math.pi ** 2)
        assert lighting.linear_to_srgb(away) == pytest.approx(ambient, abs=1e-9)
        assert lighting.linear_to_srgb(facing) == pytest.approx(ambient + diffuse, abs=1e-9)
    quad = calibrate_point(0.3, 0.4, falloff="quadratic", distance=2.0)
    assert quad.energy == pytest.approx(4 * calibrate_point(0.3, 0.4).energy)
    coloured = calibrate_point(0.3, 0.5, color=(1.0, 0.5, 0.0))
    assert coloured.light_color[0] == 1.0 and coloured.light_color[2] == 0.0
    assert calibrate_point(0.4, 0.0).energy == 0.0


def test_srgb_round_trip():
    x = np.linspace(0, 1.2, 50)
    np.testing.assert_allclose(lighting.linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)


def test_light_is_kept_outside_the_subject():
    verts = np.array([[0.0, 0.0, 0.6], [0.0, 0.0, -0.6], [0.5, 0.8, 0.1]])
    light = {"kind": "point", "position_camera": [0.0, 0.0, 0.4]}
    moved = keep_clear_of_subject(light, verts)
    assert moved["position_sampled"] == [0.0, 0.0, 0.4]
    assert moved["position_camera"] == pytest.approx([0.0, 0.0, 0.6 + lighting.LIGHT_CLEARANCE])
    far = {"kind": "point", "position_camera": [0.0, 0.0, 2.0]}
    assert keep_clear_of_subject(far, verts) is far


def test_level_config_toml_and_json(tmp_path):
    toml = tmp_path / "levels.toml"
    toml.write_text('[levels.dusk]\nposition = [1.0, 0.5, 0.6]\nambient = [0.2, 0.3]\ndiffuse = 0.5\n'
                    'color = [1.0, 0.7, 0.4]\n\n[levels.studio]\nkind = "hdri"\nenvironments = ["studio"]\n')
    levels = load_level_config(toml)
    assert levels["dusk"].ambient == (0.2, 0.3) and levels["dusk"].diffuse == (0.5, 0.5)
    assert levels["studio"].kind == "hdri" and levels["studio"].environments == ("studio",)
    js = tmp_path / "levels.json"
    js.write_text(json.dumps({"levels": {"flat": {"position": [0, 0, 3], "ambient": 0.5, "diffuse": 0.2}}}))
    assert load_level_config(js)["flat"].position == (0.0, 0.0, 3.0)


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "laser"}, "kind must be one of"),
    ({"position": [0, 0, 0]}, "origin"),
    ({"ambient": [0.5, 0.2]}, "ambient must be an increasing range"),
    ({"position": [1, 2]}, "position must be a list of 3"),
    ({"brightness": 1.0}, "unknown setting"),
    ({"falloff": "cubic"}, "falloff must be one of"),
    ({"position_jitter_deg": [1, 2]}, "position_jitter_deg must be a number"),
])
def test_bad_levels_are_named(spec, message):
    with pytest.raises(LevelError, match=message) as info:
        level_from_dict("mine", spec)
    assert "'mine'" in str(info.value)


def test_bad_config_files(tmp_path):
    with pytest.raises(LevelError, match="not found"):
        load_level_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[levels.x\n")
    with pytest.raises(LevelError, match="could not parse"):
        load_level_config(broken)
    empty = tmp_path / "empty.toml"
    empty.write_text("title = 'x'\n")
    with pytest.raises(LevelError, match="defines no levels"):
        load_level_config(empty)


def test_settings_views_and_identity():
    s = RenderSettings(views=3, step_deg=120, pitches=(0.0, 20.0))
    views = s.view_list()
    assert [(v.index, v.yaw, v.pitch) for v in views] == [
        (0, 0.0, 0.0), (1, 120.0, 0.0), (2, 240.0, 0.0), (3, 0.0, 20.0), (4, 120.0, 20.0), (5, 240.0, 20.0)]
    assert views[4].name == "v004"
    assert RenderSettings().identity() == RenderSettings(threads=2, device="cpu").identity()
    assert RenderSettings().identity() != RenderSettings(samples=8).identity()
    back = RenderSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.identity() == s.identity()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"levels": ("wild", "nope")}, "unknown lighting level 'nope'"),
    ({"resolution": 4}, "resolution"),
    ({"engine": "luxcore"}, "engine must be one of"),
    ({"pitches": (95.0,)}, "pitch"),
    ({"levels": ("wild", "wild")}, "listed twice"),
    ({"test_fraction": 1.5}, "test fraction"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        RenderSettings(**kwargs)


def test_subject_ids_are_unique_and_stable(tmp_path):
    files = [tmp_path / "a" / "mesh.obj", tmp_path / "b" / "mesh.obj", tmp_path / "x.obj", tmp_path / "x.glb",
             tmp_path / "weird name!.ply"]
    ids = layout.subject_ids(files)
    assert set(ids) == {"a_mesh", "b_mesh", "x_obj", "x_glb", "weird_name"}
    assert layout.subject_ids(list(reversed(files))) == {k: ids[k] for k in reversed(list(ids))}


def test_expand_subject_paths(tmp_path):
    (tmp_path / "d" / "s1").mkdir(parents=True)
    for name in ("d/s1/a.obj", "d/s1/a.mtl", "d/b.ply", "d/notes.txt", "d/c.tmp-x.ply"):
        (tmp_path / name).write_text("x")
    files, problems = layout.expand_subject_paths([tmp_path / "d", tmp_path / "missing.obj",
                                                   tmp_path / "d/notes.txt"])
    assert [f.name for f in files] == ["b.ply", "a.obj"]
    assert len(problems) == 2 and "no such file" in problems[0] and "unsupported" in problems[1]


def test_split_is_deterministic_and_near_the_fraction():
    sids = [f"subject_{i:04d}" for i in range(2000)]
    test = [s for s in sids if layout.split_of(s, 0.1) == "test"]
    assert 150 < len(test) < 250
    assert test == [s for s in sids if layout.split_of(s, 0.1) == "test"]
    assert all(layout.split_of(s, 0.0) == "train" for s in sids[:50])
    assert all(layout.split_of(s, 1.0) == "test" for s in sids[:50])


def test_shards_and_workers_partition_the_views():
    views = list(range(45))
    for sid in ("a", "subject_0007"):
        owned = {}
        writers = 0
        for i in range(3):
            for j in range(2):
                mine = layout.my_views(sid, views, (i, 3), (j, 2))
                for v in mine:
                    assert v not in owned
                    owned[v] = (i, j)
                writers += layout.owns_subject_files(sid, views, (i, 3), (j, 2))
        assert sorted(owned) == views and writers == 1
        assert max(map(list(owned.values()).count, set(owned.values()))) <= 8  # balanced: 45 / 6


def test_parse_part():
    assert layout.parse_part("1/4", "--shard") == (1, 4)
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(layout.LayoutError, match="--shard"):
            layout.parse_part(bad, "--shard")


def test_png_writer_round_trip_and_completeness_check(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for channels in (1, 3, 4):
        img = rng.integers(0, 256, size=(7, 5, channels), dtype=np.uint8)
        path = tmp_path / f"c{channels}.png"
        path.write_bytes(pngio.encode_png(img))
        back = np.asarray(Image.open(path))
        np.testing.assert_array_equal(back.reshape(img.shape), img)
        assert layout.png_complete(path)
    data = (tmp_path / "c4.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-20])
    assert not layout.png_complete(tmp_path / "cut.png")
    assert zlib.crc32(b"IEND") & 0xFFFFFFFF == int.from_bytes(data[-4:], "big")


def test_manifest_merge_refuses_other_settings(tmp_path):
    from avatex_core import atomic

    ident = RenderSettings(views=2).identity()
    views = [v.to_dict() for v in RenderSettings(views=2).view_list()]
    entry = {"split": "train", "dir": "subjects/a", "source": "x"}
    m = layout.merge_manifest(tmp_path, ident, views, {"a": entry}, write_json=atomic.write_json)
    assert m["format_version"] == layout.FORMAT_VERSION and list(m["subjects"]) == ["a"]
    entry = {"split": "test", "dir": "subjects/b", "source": "y"}
    m = layout.merge_manifest(tmp_path, ident, views, {"b": entry}, failed={"c": "broken"},
                              write_json=atomic.write_json)
    assert list(m["subjects"]) == ["a", "b"] and m["failed"] == {"c": "broken"}
    m = layout.merge_manifest(tmp_path, ident, views, {}, succeeded=["c"], write_json=atomic.write_json)
    assert m["failed"] == {}
    other = RenderSettings(views=2, resolution=256).identity()
    with pytest.raises(layout.LayoutError, match="resolution: 512 in the dataset, 256 now"):
        layout.merge_manifest(tmp_path, other, views, {}, write_json=atomic.write_json)


def test_cli_options_round_trip():
    import argparse

    p = argparse.ArgumentParser()
    options.add_arguments(p)
    args = p.parse_args(["--meshes", "m.ply", "--out", "o", "--views", "3", "--pitch", "0", "15",
                         "--no-denoise", "--levels", "wild,hdri", "--shard", "1/2"])
    again = p.parse_args(["--meshes", "m.ply", "--out", "o", *options.to_argv(args)])
    assert vars(again) == vars(args)


def test_event_lines_round_trip_and_other_lines_are_not_events():
    event = {"event": "image", "subject": "a b", "view": 3, "level": "wild", "seconds": 0.25}
    line = jobs.format_event(event)
    assert line.startswith(jobs.PREFIX) and "\n" not in line
    assert jobs.parse_event_line(line) == event
    assert jobs.parse_event_line(line + "\n") == event
    for other in ("Fra:1 Mem:12.45M | Synchronizing object", jobs.PREFIX + '{"event":"image","sub',
                  jobs.PREFIX + "[1, 2]", jobs.PREFIX + '{"no_kind": 1}', "", line[1:]):
        assert jobs.parse_event_line(other) is None, other


def _render_args(argv):
    import argparse

    p = argparse.ArgumentParser()
    options.add_arguments(p)
    return p.parse_args(argv)


def test_request_paths_are_absolute_whatever_the_callers_folder(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.ply").write_text("ply\n")
    (tmp_path / "levels.json").write_text(json.dumps({"levels": {"top": {"position": [0, 3, 0.5]}}}))
    monkeypatch.chdir(tmp_path)
    args = _render_args(["--meshes", "in", "--out", "ds", "--levels", "clear,top", "--light-config",
                         "levels.json", "--views", "2"])
    request = jobs.RenderRequest.from_args(args, workers=2)
    assert request.files == (tmp_path / "in" / "a.ply",) and request.out == tmp_path / "ds"
    assert request.settings.levels == ("clear", "top") and request.settings.views == 2
    config = request.options[request.options.index("--light-config") + 1]
    assert config == str(tmp_path / "levels.json")
    assert request.options[request.options.index("--threads") + 1] != "0"  # cores split over 2 workers
    assert args.light_config == "levels.json" and args.threads == 0  # the caller's namespace is untouched


def test_request_errors_name_the_problem(tmp_path):
    good = str(tmp_path / "a.ply")
    (tmp_path / "a.ply").write_text("ply\n")
    cases = [(["--meshes", good, "--out", "o"], {"workers": 0}, "--workers must be >= 1, got 0"),
             (["--meshes", good, "--out", "o", "--levels", "wild,sunny"], {},
              "unknown lighting level 'sunny'"),
             (["--meshes", good, "--out", "o", "--shard", "2/2"], {}, "--shard"),
             (["--meshes", str(tmp_path / "none.obj"), "--out", "o"], {}, "none.obj: no such file")]
    for argv, kwargs, message in cases:
        with pytest.raises(jobs.RequestError, match=message):
            jobs.RenderRequest.from_args(_render_args(argv), **kwargs)
    heard: list[str] = []
    (tmp_path / "notes.txt").write_text("x")
    request = jobs.RenderRequest.from_args(
        _render_args(["--meshes", good, str(tmp_path / "notes.txt"), "--out", "o"]), report=heard.append)
    assert len(heard) == 1 and "unsupported subject type '.txt'" in heard[0]
    assert request.input_errors == tuple(heard) and request.files == (tmp_path / "a.ply",)


@pytest.mark.parametrize("fields,code", [
    ({}, 0), ({"failed": {"s": "broken"}}, 1), ({"input_errors": ("x: no such file",)}, 1),
    ({"fatal": ("EEVEE renders need a GPU",), "rendered_images": 0}, 2),
    ({"fatal": ("worker 1 exited with code 3",)}, 1), ({"cancelled": True}, 130)])
def test_summary_exit_codes(fields, code):
    base = {"rendered_images": 8, "rendered_views": 2, "skipped_views": 0, "failed": {}, "input_errors": (),
            "fatal": (), "wall_seconds": 4.0}
    summary = jobs.RenderSummary(**{**base, **fields})
    assert summary.exit_code == code
    assert summary.to_dict()["images_per_minute"] == round(summary.rendered_images / 4.0 * 60, 2)
