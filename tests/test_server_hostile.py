"""Issue 15: the server under hostile and careless clients (raw pyzmq sockets, loopback only).

Memory is measured on a real server subprocess (VmRSS from /proc/PID/status). Each case also checks
that the server answered every request with a one-line error and kept serving.

Over 500 lines on purpose: one file per area (the hostile-client cases share one server fixture).
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from avatex_core import protocol
from avatex_core.client import BackendError, Client
from backend.data.dataset import Dataset, DatasetError
from backend.errors import InputError
from backend.images import read_image
from backend.meshio import load_mesh
from backend.models.checkpoint import FORMAT, load_checkpoint, read_state_dict, save_checkpoint
from backend.server import ops_admin
from backend.server.paths import PathError, write_output
from backend.server.schema import MODEL_CONFIG, TRAIN_CONFIG
from tests.helpers.server import running_server, spawn_test_server
from tests.helpers.tiny_models import tiny_config

MiB = 1 << 20


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def raw_socket(ctx: zmq.Context, endpoint: str, **options: int) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.connect(endpoint)
    return sock


def raw_call(sock: zmq.Socket, header: dict, frames: tuple = (), timeout_ms: int = 60_000,
             first: bool = False) -> dict:
    """Send a hand-made header (anything a hostile client might write); return the final reply's
    header (or the first reply's, with ``first``)."""
    sock.send_multipart([json.dumps(header).encode(), *frames], copy=False)
    while True:
        assert sock.poll(timeout_ms), f"no reply to {header}"
        reply = json.loads(sock.recv_multipart()[0])
        if first or reply["type"] != "progress":
            return reply


def wait_job(client: Client, rid: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll(0.05):
            if event.id == rid and event.job:
                return event.job
            assert not (event.id == rid and event.final), event
    raise AssertionError("no job id")


def requests_of(*ops_args: tuple[str, dict], owner: str | None = None, arrays: dict | None = None):
    return [protocol.encode_request(f"r{i}", op, args, arrays, owner=owner)
            for i, (op, args) in enumerate(ops_args)]


# -- memory: bytes, not counts -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_client_that_never_reads_cannot_make_the_server_hold_its_replies(tmp_path):
    server = spawn_test_server("--state", str(tmp_path / "state"))
    ctx = zmq.Context()
    try:
        with Client(server.endpoint) as probe:
            probe.call("hello", timeout=30)
            before = rss(server.proc.pid)
            # RCVHWM 1 and a small kernel buffer: this client takes (almost) nothing off the wire.
            lazy = raw_socket(ctx, server.endpoint, RCVHWM=1, RCVBUF=1 << 16, SNDHWM=100)
            payload = np.ones(20 * MiB, np.uint8)
            for frames in requests_of(*[("echo", {})] * 60, arrays={"a": payload}):
                lazy.send_multipart(frames, copy=False)
            peak, deadline = before, time.monotonic() + 20
            while time.monotonic() < deadline:
                peak = max(peak, rss(server.proc.pid))
                time.sleep(0.1)
            assert probe.call("ping", timeout=30).result["time"] > 0   # the others are still served
        print(f"non-reading client, 60 x 20 MiB echo: server RSS +{(peak - before) / MiB:.0f} MiB")
        assert peak - before < 600 * MiB, f"server RSS grew by {(peak - before) / MiB:.0f} MiB"
        kinds: dict[str, int] = {}
        for _ in range(60):   # now read: every request got exactly one final reply
            assert lazy.poll(30_000)
            header = json.loads(lazy.recv_multipart()[0])
            kind = header["type"] if header["type"] == "ok" else header["error"]["code"]
            kinds[kind] = kinds.get(kind, 0) + 1
        assert set(kinds) == {"ok", "slow_client"} and kinds["slow_client"] >= 30, kinds
        lazy.close()
    finally:
        ctx.destroy(linger=0)
        server.close()


@pytest.mark.slow
def test_queued_job_inputs_are_bounded_in_bytes_with_busy_replies(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "model.pt").write_bytes(b"never loaded: the jobs stay queued")
    server = spawn_test_server("--root", str(root), "--state", str(tmp_path / "state"))
    ctx = zmq.Context()
    try:
        with Client(server.endpoint) as client:
            hold = client.submit("count", {"n": 100_000, "delay_s": 0.05})   # takes the only device slot
            wait_job(client, hold)
            before = rss(server.proc.pid)
            sock = raw_socket(ctx, server.endpoint)
            image = np.full((7072, 7072, 3), 7, np.uint8)   # 150 MB
            owner = protocol.new_owner_secret()
            for frames in requests_of(*[("reconstruct", {"checkpoint": "model.pt"})] * 20, owner=owner,
                                      arrays={"image": image}):
                sock.send_multipart(frames, copy=False)
            replies, peak = [], before
            while len(replies) < 20:
                peak = max(peak, rss(server.proc.pid))
                if sock.poll(100):
                    replies.append(json.loads(sock.recv_multipart()[0]))
            peak = max(peak, rss(server.proc.pid))
            queued = [r for r in replies if r["type"] == "progress"]
            busy = [r for r in replies if r["type"] == "error" and r["error"]["code"] == "busy"]
            assert len(queued) + len(busy) == 20
            assert 1 <= len(queued) <= 7 and any("MiB" in r["error"]["message"] for r in busy)
            print(f"20 x 150 MB reconstruct: {len(queued)} queued, {len(busy)} busy, server RSS "
                  f"+{(peak - before) / MiB:.0f} MiB")
            assert peak - before < 1536 * MiB, f"server RSS grew by {(peak - before) / MiB:.0f} MiB"
            sock.close()
    finally:
        ctx.destroy(linger=0)
        server.close()


def test_the_input_budget_refuses_jobs_before_their_count_limit(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with running_server(roots=[tmp_path], max_queued_bytes=3 * MiB) as server, \
            Client(server.endpoint) as client:
        wait_job(client, client.submit("count", {"n": 100_000, "delay_s": 0.05}))
        image = np.zeros((1024, 1024, 1), np.uint8).repeat(3, axis=2)   # 3 MiB
        rids = [client.submit("reconstruct", {"checkpoint": "model.pt"}, {"image": image}) for _ in range(3)]
        finals: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while len(finals) < 3 and time.monotonic() < deadline:
            for event in client.poll(0.05):
                if event.id in rids and (event.type == "progress" or event.final):
                    finals.setdefault(event.id, event.code or event.type)
        assert sorted(finals.values()) == ["busy", "busy", "progress"]
        assert server.jobs.max_input_bytes == 3 * MiB


def test_the_reply_ledger_counts_bytes_until_libzmq_lets_go():
    from backend.server.server import ReplyLedger

    ledger = ReplyLedger(per_peer=100, total=150)
    ctx = zmq.Context()
    try:
        push, pull = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        push.bind("inproc://ledger")
        pull.connect("inproc://ledger")
        frame = zmq.Frame(b"x" * 80, copy=False, track=True)
        ledger.add(b"a", [frame.tracker], 80)
        assert ledger.held(b"a") == 80 and ledger.held() == 80
        assert not ledger.admits(b"a", 30)   # 110 bytes for one client: over its 100
        assert ledger.admits(b"b", 60) and not ledger.admits(b"b", 80)   # 160 in all: over 150
        push.send(frame, copy=False)
        assert pull.recv() == b"x" * 80
        del frame
        deadline = time.monotonic() + 10
        while ledger.held() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.held() == 0
        assert ledger.admits(b"a", 10_000)   # alone, one reply always goes (it passed the message limit)
    finally:
        ctx.destroy(linger=0)


# -- isolation between clients ------------------------------------------------------------------------

def test_jobs_belong_to_the_owner_that_started_them():
    with running_server() as server, Client(server.endpoint) as alice, Client(server.endpoint) as bob:
        rid = alice.submit("count", {"n": 100_000, "delay_s": 0.01})
        job = wait_job(alice, rid)
        assert [j["job"] for j in alice.call("job.list").result["jobs"]] == [job]
        assert bob.call("job.list").result["jobs"] == []
        assert bob.call("train.status").result["jobs"] == []
        for op, args in [("job.status", {"job": job}), ("job.result", {"job": job}),
                         ("job.result", {"job": job, "wait": True}), ("cancel", {"job": job}),
                         ("cancel", {"request": rid}), ("train.start", {"resume": job})]:
            with pytest.raises(BackendError) as info:
                bob.call(op, args, timeout=10)
            assert info.value.code == "not_found", (op, info.value)
        assert server.jobs.get(job).state == "running"   # nothing bob did touched it
        # The owner secret, not the connection, is the identity: a new client (new routing id) with it
        # is alice; that is how the add-on re-attaches after a reconnect.
        with Client(server.endpoint, owner=alice.owner) as again:
            assert again.call("job.status", {"job": job}).result["state"] == "running"
            assert again.call("cancel", {"job": job}).result["job"] == job


def test_a_raw_client_without_a_secret_gets_one_and_needs_it():
    with running_server() as server:
        ctx = zmq.Context()
        try:
            sock = raw_socket(ctx, server.endpoint)
            queued = raw_call(sock, {"v": 1, "id": "a", "op": "count", "args": {"n": 100_000}}, first=True)
            job, secret = queued["job"], queued["info"]["owner"]
            anonymous = raw_call(sock, {"v": 1, "id": "b", "op": "job.status", "args": {"job": job}})
            assert anonymous["error"]["code"] == "not_found"
            owned = raw_call(sock, {"v": 1, "id": "c", "op": "job.status", "args": {"job": job},
                                    "owner": secret})
            assert owned["type"] == "ok" and owned["result"]["job"] == job
            record = json.dumps(server.jobs.get(job).record())
            assert secret not in record   # only a hash of it is kept (and written to disk)
            raw_call(sock, {"v": 1, "id": "d", "op": "cancel", "args": {"job": job}, "owner": secret})
        finally:
            ctx.destroy(linger=0)


def test_with_curve_keys_the_public_key_is_the_owner(tmp_path):
    from avatex_core.client import CurveKeys
    from backend.server.keys import write_keypair

    server_dir = tmp_path / "server"
    write_keypair(server_dir, "server")
    (server_dir / "authorized").mkdir()
    for name in ("alice", "bob"):
        write_keypair(tmp_path / name, name)
        public = (tmp_path / name / f"{name}.key").read_bytes()
        (server_dir / "authorized" / f"{name}.key").write_bytes(public)

    def keys(name: str) -> CurveKeys:
        return CurveKeys.from_files(server_dir / "server.key", tmp_path / name / f"{name}.key_secret")

    with running_server(bind="tcp://127.0.0.1:*", keys=server_dir) as server, \
            Client(server.endpoint, curve=keys("alice")) as alice, \
            Client(server.endpoint, curve=keys("bob"), owner=alice.owner) as bob:   # even with her secret
        job = wait_job(alice, alice.submit("count", {"n": 100_000, "delay_s": 0.01}))
        assert server.jobs.get(job).owner.startswith("key:")
        assert bob.call("job.list").result["jobs"] == []
        with pytest.raises(BackendError) as info:
            bob.call("cancel", {"job": job})
        assert info.value.code == "not_found"
        assert alice.call("cancel", {"job": job}).result["job"] == job


# -- paths named by files -------------------------------------------------------------------------------

def _dataset(root: Path, subject_dir: str) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    manifest = {"format": "avatex-dataset", "format_version": 1, "settings": {"resolution": 64},
                "levels": ["clear"], "views": [{"index": 0, "name": "v000", "yaw": 0, "pitch": 0}],
                "subjects": {"s1": {"dir": subject_dir, "split": "train"}}}
    (data / "manifest.json").write_text(json.dumps(manifest))
    return data


@pytest.mark.parametrize("subject_dir", ["../outside", "/etc", "subjects/../../outside", "link"])
def test_manifest_paths_that_leave_the_dataset_are_refused_naming_the_field(tmp_path, subject_dir):
    outside = tmp_path / "outside"
    (outside / "views").mkdir(parents=True)
    (outside / "subject.json").write_text("{}")
    data = _dataset(tmp_path, subject_dir)
    (data / "link").symlink_to(outside)
    with pytest.raises(DatasetError, match=r"subjects\['s1'\]\.dir") as info:
        Dataset(data).subjects()
    message = str(info.value)
    (outside / "subject.json").unlink()   # the answer is the same whether the outside file exists
    with pytest.raises(DatasetError) as again:
        Dataset(data).subjects()
    assert str(again.value) == message


def test_train_start_on_an_escaping_manifest_fails_naming_the_field(tmp_path):
    _dataset(tmp_path, "../../etc")
    with running_server(roots=[tmp_path]) as server, Client(server.endpoint) as client:
        config = {"data": "data", "out": "run", "steps": 1, "workers": 0, "progress_bar": False}
        with pytest.raises(BackendError) as info:
            client.call("train.start", {"config": config}, timeout=120)
    assert info.value.code == "bad_input" and "subjects['s1'].dir" in info.value.message
    assert "\n" not in info.value.message


# -- no silent overwrite ---------------------------------------------------------------------------------

def test_reconstruct_refuses_an_existing_out_and_keeps_its_bytes(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "gt.ply").write_bytes(b"the dataset's GT mesh")
    image = np.zeros((8, 8, 4), np.uint8)
    with running_server(roots=[tmp_path]) as server, Client(server.endpoint) as client:
        with pytest.raises(BackendError) as info:
            client.call("reconstruct", {"checkpoint": "model.pt", "out": "gt.ply"}, {"image": image})
        assert info.value.code == "bad_path" and "already exists" in info.value.message
        assert info.value.job is None   # refused before anything was queued
        with pytest.raises(BackendError) as info:   # asked to overwrite: it runs (and fails on the model)
            client.call("reconstruct", {"checkpoint": "model.pt", "out": "gt.ply", "overwrite": True},
                        {"image": image}, timeout=120)
        assert info.value.code == "bad_input" and info.value.job is not None
    assert (tmp_path / "gt.ply").read_bytes() == b"the dataset's GT mesh"


def test_a_file_that_appears_during_the_write_is_kept(tmp_path):
    out = tmp_path / "mesh.ply"

    def write(path: Path) -> None:
        out.write_bytes(b"someone else's")   # appears after the check, before the final link
        path.write_bytes(b"ours")

    with pytest.raises(PathError, match="appeared while"):
        write_output(out, write, overwrite=False)
    assert out.read_bytes() == b"someone else's" and list(tmp_path.iterdir()) == [out]
    write_output(out, lambda p: p.write_bytes(b"ours"), overwrite=True)
    assert out.read_bytes() == b"ours"


def test_cli_reconstruct_refuses_an_existing_out_before_any_work(tmp_path, capsys):
    from backend.cli import main as cli_main

    out = tmp_path / "out.ply"
    out.write_bytes(b"keep")
    code = cli_main(["reconstruct", str(tmp_path / "missing.png"), "--checkpoint", str(tmp_path / "none.pt"),
                     "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == b"keep"


# -- one-line errors for every input class -----------------------------------------------------------------

def _checkpoint(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "model.pt"
    save_checkpoint(path, __import__("backend.models.pifu", fromlist=["PIFu"]).PIFu(tiny_config()))
    obj = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if key.startswith("config."):
            obj["config"][key[7:]] = value
        else:
            obj[key] = value
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("changes, expected", [
    ({"config.hg_width": "wide"}, "field 'hg_width' must be an integer"),
    ({"config.hg_width": 1048576}, "field 'hg_width' must be an integer in [16, 1024]"),
    ({"config.num_stack": 4000}, "field 'num_stack' must be an integer in [1, 16]"),
    ({"config": [1, 2]}, "config must be an object"),
    ({"net_g": [1, 2]}, "net_g: expected a state_dict"),
    ({"version": "abc"}, "version must be an integer"),
    ({"config.mlp_dim": [1] * 17}, "field 'mlp_dim' must be a list"),
])
def test_hostile_checkpoints_fail_in_one_line_before_allocating(tmp_path, changes, expected):
    path = _checkpoint(tmp_path, **changes)
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert time.monotonic() - start < 30


def test_model_size_is_checked_within_the_bounds_too(tmp_path):
    big = {"load_size": 512, "num_stack": 16, "hg_width": 1024, "hourglass_dim": 1024, "hg_depth": 4,
           "mlp_dim": [1025, 4096, 4096, 1], "color_ngf": 512, "mlp_dim_color": [3073, 4096, 3]}
    path = _checkpoint(tmp_path, **{f"config.{k}": v for k, v in big.items()})
    with pytest.raises(InputError, match=r"GiB of weights, over the limit"):
        load_checkpoint(path)


def test_a_state_dict_with_an_int_key_is_one_line(tmp_path):
    torch.save({"image_filter.conv1.weight": torch.zeros(1), 7: torch.zeros(1)}, tmp_path / "net_G")
    with pytest.raises(InputError, match="entries that are not name → tensor: 7"):
        read_state_dict(tmp_path / "net_G")
    torch.save({"format": FORMAT, "version": 1}, tmp_path / "bare.pt")
    with pytest.raises(InputError, match="lacks 'config'"):
        load_checkpoint(tmp_path / "bare.pt")


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that claims ``width`` × ``height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")


def test_images_are_sized_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header(30000, 30000))
    with pytest.raises(InputError, match=r"image bomb.png.*(30000 × 30000|900000000) pixels"):
        read_image(tmp_path / "bomb.png")
    (tmp_path / "wide.png").write_bytes(_png_header(12000, 9000))   # PIL only warns; our limit refuses
    with pytest.raises(InputError, match="12000 × 9000 pixels; images must have between 1 and"):
        read_image(tmp_path / "wide.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read image junk.png"):
        read_image(tmp_path / "junk.png")


def test_gt_meshes_with_bad_face_indices_are_one_line(tmp_path):
    ply = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
           "property uchar red\nproperty uchar green\nproperty uchar blue\nelement face 1\n"
           "property list uchar int vertex_indices\nend_header\n0 0 0 255 0 0\n1 0 0 0 255 0\n"
           "0 1 0 0 0 255\n3 0 1 {}\n")
    for index in (-5, 99999):
        path = tmp_path / f"bad{index}.ply"
        path.write_text(ply.format(index))
        with pytest.raises(InputError, match="out-of-range vertex indices|could not read mesh"):
            load_mesh(path)


def test_hostile_requests_get_one_line_errors_and_the_server_keeps_serving(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    (tmp_path / "bomb.png").write_bytes(_png_header(30000, 30000))
    os.mkfifo(tmp_path / "fifo")
    with running_server(roots=[tmp_path]) as server:
        ctx = zmq.Context()
        try:
            sock = raw_socket(ctx, server.endpoint)
            cases = [
                ({"v": 1.0, "id": "a", "op": "ping"}, "bad_version"),
                ({"v": True, "id": "b", "op": "ping"}, "bad_version"),
                ({"v": 1, "id": "c", "op": "reconstruct", "args": {"checkpoint": "model.pt"},
                  "arrays": [{"name": "image", "dtype": "uint8", "shape": [0, 0, 4]}]}, "bad_input"),
                ({"v": 1, "id": "d", "op": "reconstruct",
                  "args": {"image": "bomb.png", "checkpoint": "x" * 300 + ".pt"}}, "bad_path"),
                ({"v": 1, "id": "e", "op": "reconstruct", "args": {"image": "bomb.png",
                                                                   "checkpoint": "model.pt"}}, "bad_input"),
                ({"v": 1, "id": "f", "op": "train.start", "args": {"config": {"data": ".", "out": "fifo"}}},
                 "bad_path"),
                ({"v": 1, "id": "g", "op": "train.start", "args": {"config": {"data": ".", "out": "r",
                                                                              "workers": 12}}}, "bad_args"),
                ({"v": 1, "id": "h", "op": "train.start", "args": {"config": {
                    "data": ".", "out": "r", "model_overrides": {"hg_width": 1048576}}}}, "bad_args"),
                ({"v": 1, "id": "i", "op": "train.start", "args": {"config": {
                    "data": ".", "out": "r", "dense_samples": 10**12}}}, "bad_args"),
                ({"v": 1, "id": "j", "op": "train.start", "args": {"config": {
                    "data": ".", "out": "r", "val_views": ["front"]}}}, "bad_args"),
                ({"v": 1, "id": "k", "op": "ping", "owner": "short"}, "bad_request"),
            ]
            for header, code in cases:
                frames = (b"",) if header.get("arrays") else ()
                reply = raw_call(sock, header, frames)
                assert reply["type"] == "error", (header, reply)
                message = reply["error"]["message"]
                assert reply["error"]["code"] == code, (header, reply)
                assert "\n" not in message and "Traceback" not in message, message
            assert raw_call(sock, {"v": 1, "id": "z", "op": "ping"})["type"] == "ok"
        finally:
            ctx.destroy(linger=0)
        # The bomb was refused in the job, by size, before the (invalid) model was even opened.
        failed = [j for j in server.jobs.jobs() if j.error]
        assert any("bomb.png" in j.error["message"] for j in failed)


def test_checkpoint_listing_is_bounded(tmp_path, monkeypatch):
    for i in range(300):
        folder = tmp_path / f"d{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"step-{i}.pt").write_bytes(b"")
    monkeypatch.setattr(ops_admin, "LIST_BUDGET_ENTRIES", 100)
    with running_server(roots=[tmp_path]) as server, Client(server.endpoint) as client:
        listed = client.call("checkpoints.list", {"limit": 10_000}).result
        assert listed["truncated"] is True and len(listed["checkpoints"]) < 300
        full = client.call("checkpoints.list", {"dir": "d3", "limit": 10_000}).result
        assert full["truncated"] is False and len(full["checkpoints"]) == 30


def test_every_client_settable_config_field_has_a_bounded_schema():
    import dataclasses

    from backend.models import ModelConfig
    from backend.train.config import TrainConfig

    assert {f.name for f in dataclasses.fields(TrainConfig)} | {"config"} == set(TRAIN_CONFIG)
    assert {f.name for f in dataclasses.fields(ModelConfig)} == set(MODEL_CONFIG)
    for name, arg in {**TRAIN_CONFIG, **MODEL_CONFIG}.items():
        kinds = arg.kind if isinstance(arg.kind, tuple) else (arg.kind,)
        if "int" in kinds or "float" in kinds:
            assert arg.maximum is not None and arg.minimum is not None, name
        if "str" in kinds or "list" in kinds:
            assert arg.max_len is not None, name


# -- a job killed before its first checkpoint ------------------------------------------------------------

@pytest.mark.slow
def test_a_training_job_killed_before_its_first_checkpoint_starts_again_and_finishes(tmp_path):
    import subprocess
    import sys

    from tests.conftest import FIXTURES, ROOT
    from tests.helpers.server import finish_after_restart, follow_training, spawn_avatex_serve
    from tests.helpers.tiny_models import TINY

    root, state, steps = tmp_path / "root", tmp_path / "state", 12
    subprocess.run([sys.executable, str(ROOT / "render_scripts" / "render_dataset.py"), "--meshes",
                    str(FIXTURES / "avatars" / "avatar_0001.ply"), "--out", str(root / "data"),
                    "--views", "1", "--levels", "clear", "--resolution", "64", "--samples", "2",
                    "--albedo-samples", "1", "--no-denoise", "--test-fraction", "0"],
                   check=True, capture_output=True, timeout=600)
    config = {"data": "data", "out": "run", "model": "small", "model_overrides": TINY, "stage": "color",
              "loss": "l1", "steps": steps, "batch": 1, "points_color": 200, "patches": 10,
              "dense_samples": 5000, "pool_surface": 2000, "pool_uniform": 500, "workers": 0,
              "checkpoint_every": 200, "val_every": 1000, "progress_bar": False, "seed": 0,
              "log_every": 1}
    owner = protocol.new_owner_secret()
    args = ("--state", str(state), "--root", str(root))
    server = spawn_avatex_serve(*args)
    try:
        with Client(server.endpoint, owner=owner) as client:
            job, _ = follow_training(client, client.submit("train.start", {"config": config}), 6)
            server.kill9()
    finally:
        server.close()
    assert not list((root / "run").glob("checkpoints/step-*.pt")), "the kill came after a checkpoint"

    result, status = finish_after_restart(args, owner, job)   # the server resumes it by itself
    assert status["state"] == "done" and status["attempts"] == 2
    assert result["step"] == steps


def test_an_obj_texture_outside_the_mesh_folder_is_not_read(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "secret.png")
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "m.mtl").write_text("newmtl a\nmap_Kd ../secret.png\n")
    (tmp_path / "inner" / "m.obj").write_text("mtllib m.mtl\nusemtl a\nv 0 0 0\nv 1 0 0\nv 0 1 0\n"
                                              "vt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n")
    assert not load_mesh(tmp_path / "inner" / "m.obj").has_texture
    (tmp_path / "inner" / "m.mtl").write_text("newmtl a\nmap_Kd secret.png\n")
    Image.new("RGB", (4, 4), (0, 0, 255)).save(tmp_path / "inner" / "secret.png")
    mesh = load_mesh(tmp_path / "inner" / "m.obj")   # the same file inside the folder is read
    assert mesh.has_texture and tuple(mesh.textures[0][0, 0]) == (0, 0, 255)


def test_cli_train_refuses_a_fifo_as_out_in_one_line(tmp_path, capsys):
    from backend.cli import main as cli_main

    os.mkfifo(tmp_path / "fifo")
    assert cli_main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "fifo")]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and "Traceback" not in err and err.count("\n") == 1


def test_the_owner_header_field_is_checked_and_carried():
    secret = protocol.new_owner_secret()
    request = protocol.decode_request(protocol.encode_request("a", "ping", owner=secret))
    assert request.owner == secret
    assert protocol.decode_request(protocol.encode_request("a", "ping")).owner is None
    for owner in (12345, "too-short", "x" * 129, "spaces are not allowed here at all"):
        header = {"v": 1, "id": "a", "op": "ping", "owner": owner}
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.decode_request([json.dumps(header).encode()])
        assert info.value.code == "bad_request" and info.value.request_id == "a"
    for version in (1.0, True, "1"):
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.decode_request([json.dumps({"v": version, "id": "a", "op": "ping"}).encode()])
        assert info.value.code == "bad_version"
    with pytest.raises(protocol.ProtocolError):
        Client("tcp://127.0.0.1:1", owner="short")
