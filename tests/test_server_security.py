"""Who gets in and what they may name: bind policy, CurveZMQ allow-list, local-only shutdown, paths."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest

from avatex_core.client import BackendError, Client, CurveKeys
from backend.errors import InputError
from backend.server import Server, ServerConfig
from backend.server.keys import load_key_file, load_server_keys, write_keypair
from backend.server.paths import PathError, PathPolicy
from backend.server.security import Endpoint, check_bind, is_local_peer, parse_endpoint
from tests.conftest import ROOT
from tests.helpers.server import running_server


def non_loopback_ipv4() -> str | None:
    """This machine's address on a real interface, if it has one (no packet is sent)."""
    for target in ("192.0.2.1", "10.255.255.255", "198.51.100.1"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                ip = s.getsockname()[0]
        except OSError:
            continue
        if not ip.startswith("127.") and ip != "0.0.0.0":
            return ip
    return None


# -- bind policy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5599", "tcp://*:5599", "tcp://192.0.2.2:5599",
                                      "tcp://eth0:5599", "tcp://example.org:5599", "tcp://[::]:5599",
                                      "tcp://[2001:db8::1]:5599"])
def test_non_loopback_bind_without_keys_is_refused(endpoint):
    with pytest.raises(InputError, match="refusing to bind .* without CurveZMQ keys.*avatex keys"):
        Server(ServerConfig(bind=endpoint))


@pytest.mark.parametrize("endpoint", ["udp://127.0.0.1:5", "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
                                      "pgm://eth0;239.192.1.1:5555", "127.0.0.1:5555", "ipc://"])
def test_unsupported_bind_addresses_are_refused(endpoint):
    with pytest.raises(InputError, match="not supported|out of range"):
        check_bind(endpoint, have_keys=True)


def test_cli_refuses_a_public_bind_without_keys(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backend", "serve", "--bind", "tcp://0.0.0.0:5599",
                           "--state", str(tmp_path), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "refusing to bind tcp://0.0.0.0:5599 without CurveZMQ keys" in proc.stderr


def test_loopback_and_ipc_binds_serve(tmp_path):
    endpoints = ["tcp://127.0.0.1:*", "tcp://localhost:*", f"ipc://{tmp_path}/avatex.sock"]
    if socket.has_ipv6:
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
            endpoints.append("tcp://[::1]:*")
        except OSError:
            pass
    for endpoint in endpoints:
        with running_server(bind=endpoint) as server, Client(server.endpoint) as client:
            assert client.call("hello", timeout=10).result["curve"] is False


def test_endpoint_parsing_and_local_peers():
    assert parse_endpoint("tcp://127.0.0.1:5555") == Endpoint("tcp", "127.0.0.1", "5555")
    assert parse_endpoint("tcp://[::1]:*").ipv6 and parse_endpoint("tcp://[::1]:*").loopback
    assert parse_endpoint("tcp://127.3.2.1:1").loopback and not parse_endpoint("tcp://10.0.0.1:1").loopback
    tcp = parse_endpoint("tcp://0.0.0.0:5555")
    assert is_local_peer(tcp, "127.0.0.1") and is_local_peer(tcp, "::1")
    assert is_local_peer(tcp, "::ffff:127.0.0.1")
    assert not is_local_peer(tcp, "192.0.2.7") and not is_local_peer(tcp, None)
    assert not is_local_peer(tcp, "") and not is_local_peer(tcp, "localhost.evil.example")
    assert is_local_peer(parse_endpoint("ipc:///tmp/x.sock"), None)


# -- keys -------------------------------------------------------------------------------------------

def test_keys_command_writes_a_pair_with_a_private_secret(tmp_path):
    run = [sys.executable, "-m", "backend", "keys", "--out", str(tmp_path / "k"), "--name", "alice"]
    proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    public_file, secret_file = tmp_path / "k" / "alice.key", tmp_path / "k" / "alice.key_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_file.stat().st_mode) == 0o644
    public, none = load_key_file(public_file, secret=False)
    public2, secret = load_key_file(secret_file, secret=True)
    assert none is None and public == public2 and len(public) == len(secret) == 40
    assert public.decode() in proc.stdout and secret.decode() not in proc.stdout
    again = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--force" in again.stderr
    assert load_key_file(public_file, secret=False)[0] == public   # untouched
    assert subprocess.run(run + ["--force"], cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    assert load_key_file(public_file, secret=False)[0] != public
    with pytest.raises(InputError, match="key name"):
        write_keypair(tmp_path, "../escape")


def test_server_keys_need_a_private_secret_and_an_allow_list(tmp_path):
    with pytest.raises(InputError, match="avatex keys --out"):
        load_server_keys(tmp_path)
    write_keypair(tmp_path, "server")
    with pytest.raises(InputError, match="no client public keys"):
        load_server_keys(tmp_path)
    write_keypair(tmp_path / "authorized", "alice")
    (tmp_path / "authorized" / "alice.key_secret").unlink()
    assert len(load_server_keys(tmp_path).authorized) == 1
    os.chmod(tmp_path / "server.key_secret", 0o644)
    with pytest.raises(InputError, match="chmod 600"):
        load_server_keys(tmp_path)


@pytest.fixture
def curve_setup(tmp_path):
    server_dir = tmp_path / "server"
    write_keypair(server_dir, "server")
    write_keypair(tmp_path / "alice", "alice")
    write_keypair(tmp_path / "eve", "eve")
    (server_dir / "authorized").mkdir()
    (server_dir / "authorized" / "alice.key").write_bytes((tmp_path / "alice" / "alice.key").read_bytes())

    def keys(name):
        return CurveKeys.from_files(server_dir / "server.key", tmp_path / name / f"{name}.key_secret")
    return server_dir, keys


def test_curve_admits_allowed_keys_only(curve_setup):
    server_dir, keys = curve_setup
    with running_server(bind="tcp://0.0.0.0:*", keys=server_dir) as server:
        port = server.endpoint.rsplit(":", 1)[1]
        endpoint = f"tcp://127.0.0.1:{port}"
        with Client(endpoint, curve=keys("alice")) as alice:
            assert alice.call("hello", timeout=10).result["curve"] is True
            arr = np.arange(30_000, dtype=np.float32)
            np.testing.assert_array_equal(alice.call("echo", {}, {"a": arr}, timeout=10).arrays["a"], arr)
        served = server.stats["requests"]
        for client in (Client(endpoint, curve=keys("eve")), Client(endpoint)):
            with client, pytest.raises(BackendError) as info:
                client.call("hello", timeout=2)
            assert info.value.code in ("timeout", "not_connected", "connection_lost")   # no reply
            events = client.poll(0)
            assert any(e.type == "connection" and e.code in ("auth_failed", "handshake_failed")
                       for e in events), events
        assert server.stats["requests"] == served   # the refused clients never reached the loop


def test_shutdown_is_refused_from_a_non_loopback_peer(curve_setup):
    server_dir, keys = curve_setup
    ip = non_loopback_ipv4()
    with running_server(bind="tcp://0.0.0.0:*", keys=server_dir) as server:
        port = server.endpoint.rsplit(":", 1)[1]
        if ip is not None:
            with Client(f"tcp://{ip}:{port}", curve=keys("alice")) as remote:
                assert remote.call("ping", timeout=10).result["time"] > 0
                with pytest.raises(BackendError) as info:
                    remote.call("shutdown", timeout=10)
                assert info.value.code == "forbidden" and ip in info.value.message
        with Client(f"tcp://127.0.0.1:{port}", curve=keys("alice")) as local:
            assert local.call("shutdown", timeout=10).result["stopping"] is True
        server._stop.wait(5)
        assert server._stop.is_set()
    if ip is None:
        pytest.skip("no non-loopback interface here: only the loopback half ran")


# -- paths --------------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "ok.ply").write_text("inside")
    (outside / "secret.ply").write_text("outside")
    (root / "link-out.ply").symlink_to(outside / "secret.ply")
    (root / "dir-out").symlink_to(outside, target_is_directory=True)
    (root / "link-in.ply").symlink_to(root / "sub" / "ok.ply")
    return root, outside


def test_path_policy_rules(tree):
    root, outside = tree
    policy = PathPolicy([root])
    assert policy.resolve("sub/ok.ply") == root.resolve() / "sub" / "ok.ply"
    assert policy.resolve(str(root / "sub" / "ok.ply")) == root.resolve() / "sub" / "ok.ply"
    assert policy.resolve("link-in.ply") == root.resolve() / "sub" / "ok.ply"
    assert policy.resolve("new/out.ply", must_exist=False) == root.resolve() / "new" / "out.ply"
    cases = {"../outside/secret.ply": "'..' components",
             "sub/../sub/ok.ply": "'..' components",
             str(outside / "secret.ply"): "outside the server's roots",
             "/etc/passwd": "outside the server's roots",
             "link-out.ply": "through a symlink",
             "dir-out/secret.ply": "through a symlink",
             "dir-out/new.ply": "through a symlink",
             "sub/missing.ply": "does not exist",
             "": "non-empty",
             "a\x00b": "NUL"}
    for name, words in cases.items():
        with pytest.raises(PathError, match=words if words != "NUL" else "NUL byte"):
            policy.resolve(name, must_exist=name != "dir-out/new.ply")
    with pytest.raises(PathError, match="is not a directory"):
        policy.resolve("sub/ok.ply", kind="dir")
    with pytest.raises(PathError, match="without --root"):
        PathPolicy([]).resolve("sub/ok.ply")
    with pytest.raises(InputError, match="not an existing directory"):
        PathPolicy([root / "nope"])


def test_server_rejects_traversal_in_every_path_argument(tree):
    root, outside = tree
    verts = np.zeros((4, 3), np.float32)
    with running_server(roots=[root]) as server, Client(server.endpoint) as client:
        requests = [
            ("evaluate", {"gt": "../outside/secret.ply"}, {"vertices": verts, "colors": verts}, "'..'"),
            ("evaluate", {"gt": str(outside / "secret.ply")}, {"vertices": verts, "colors": verts},
             "outside the server's roots"),
            ("evaluate", {"gt": "link-out.ply"}, {"vertices": verts, "colors": verts}, "through a symlink"),
            ("reconstruct", {"image": "dir-out/secret.ply", "checkpoint": "sub/ok.ply"}, {},
             "through a symlink"),
            ("reconstruct", {"image": "sub/ok.ply", "checkpoint": "/etc/passwd"}, {},
             "outside the server's roots"),
            ("checkpoints.list", {"dir": "dir-out"}, {}, "through a symlink"),
            ("checkpoints.list", {"dir": "/"}, {}, "outside the server's roots"),
            ("count", {"out": "../escape"}, {}, "'..'"),
        ]
        for op, args, arrays, words in requests:
            if server.operations[op].missing():
                continue
            with pytest.raises(BackendError) as info:
                client.call(op, args, arrays, timeout=30)
            assert info.value.code == "bad_path" and words in info.value.message, (op, info.value)
        assert not (outside.parent / "escape").exists()


def test_checkpoints_list_skips_symlinks_out_of_the_roots(tree):
    root, outside = tree
    (root / "sub" / "a.safetensors").write_bytes(b"x" * 10)
    (root / "sub" / "net_G").write_bytes(b"y")
    (outside / "leak.safetensors").write_bytes(b"z")
    (root / "leak.safetensors").symlink_to(outside / "leak.safetensors")
    with running_server(roots=[root]) as server, Client(server.endpoint) as client:
        found = client.call("checkpoints.list", timeout=10).result
        assert sorted(c["relative"] for c in found["checkpoints"]) == ["sub/a.safetensors", "sub/net_G"]
        assert {c["kind"] for c in found["checkpoints"]} == {"safetensors", "official"}
        assert not found["truncated"]
        limited = client.call("checkpoints.list", {"limit": 1}, timeout=10).result
        assert len(limited["checkpoints"]) == 1 and limited["truncated"]
