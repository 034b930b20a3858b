"""avatex_core.client against real servers: bounded polls, big meshes, lost/reconnected backends."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import zmq

from avatex_core.client import BackendError, Client, CurveKeys
from tests.helpers.server import Events, running_server, spawn_test_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_of(arr: np.ndarray):
    while isinstance(arr, np.ndarray) and arr.base is not None:
        arr = arr.base
    return arr


def test_poll_never_waits_longer_than_its_budget_without_a_backend():
    with Client(f"tcp://127.0.0.1:{free_port()}", heartbeat_s=0.05, timeout_s=0.2) as client:
        rid = client.submit("hello")
        longest, events = 0.0, []
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            t0 = time.perf_counter()
            events += client.poll(budget_s=0.01)
            longest = max(longest, time.perf_counter() - t0)
        assert longest < 0.01 + 0.5, longest   # a bound on blocking, not a speed measurement
        lost = [e for e in events if e.type == "connection"]
        assert lost and "no reply from the backend" in lost[0].message and "avatex serve" in lost[0].message
        assert client.state in ("lost", "reconnecting")
        failed = [e for e in events if e.id == rid]
        assert failed and failed[0].code == "connection_lost"


def test_million_vertex_mesh_round_trips_and_arrives_zero_copy():
    rng = np.random.default_rng(0)
    mesh = {"vertices": rng.random((1_000_000, 3), dtype=np.float32),
            "faces": rng.integers(0, 1_000_000, size=(2_000_000, 3), dtype=np.int32),
            "colors": rng.random((1_000_000, 3), dtype=np.float32),
            "rgb8": rng.integers(0, 256, size=(1_000_000, 3), dtype=np.uint8)}
    with running_server() as server, Client(server.endpoint, zero_copy_send=True) as client:
        res = client.call("echo", {"data": "mesh"}, mesh, timeout=60)
        assert res.result["arrays"]["faces"] == ["int32", [2_000_000, 3]]
        for name, arr in mesh.items():
            got = res.arrays[name]
            assert got.dtype == arr.dtype and got.shape == arr.shape
            np.testing.assert_array_equal(got, arr)
            assert not got.flags.writeable and isinstance(base_of(got), memoryview)


def test_timer_ticks_stay_bounded_while_a_large_result_streams_in():
    big = np.zeros((3_000_000, 3), np.float32)
    with running_server() as server, Client(server.endpoint) as client:
        rid = client.submit("echo", {}, {"a": big})
        longest, done = 0.0, None
        end = time.monotonic() + 60
        while done is None and time.monotonic() < end:
            t0 = time.perf_counter()
            for event in client.poll(budget_s=0.004):
                if event.id == rid and event.final:
                    done = event
            longest = max(longest, time.perf_counter() - t0)
        assert done is not None and done.arrays["a"].shape == big.shape
        assert longest < 0.004 + 0.5, longest


def test_errors_surface_as_backend_errors_with_codes():
    with running_server() as server, Client(server.endpoint) as client:
        with pytest.raises(BackendError) as info:
            client.call("no.such.op")
        assert info.value.code == "unknown_op" and "hello" in info.value.message
        with pytest.raises(BackendError) as info:
            client.call("checkpoints.list", {"limit": "many"})
        assert info.value.code == "bad_args" and "'limit'" in info.value.message
        with pytest.raises(BackendError) as info:
            client.call("evaluate", {}, {"vertices": np.zeros((3, 2), np.float32)})
        assert info.value.code in ("bad_array", "not_available")
        client.cancel("not-a-request")   # unknown ids are ignored
        assert client.call("ping").result["time"] > 0


def test_request_timeout_gives_a_timeout_event_and_cancels_the_job():
    with running_server() as server, Client(server.endpoint) as client:
        rid = client.submit("count", {"n": 100_000, "delay_s": 0.01}, timeout_s=0.5)
        final = Events(client).wait(rid)[-1]
        assert final.type == "error" and final.code == "timeout"
        deadline = time.monotonic() + 10
        while server.jobs.get(final.job).state != "cancelled" and time.monotonic() < deadline:
            client.poll(0.05)
        assert server.jobs.get(final.job).state == "cancelled"


def test_call_timeout_raises_and_cancels():
    with running_server() as server, Client(server.endpoint) as client:
        with pytest.raises(BackendError) as info:
            client.call("count", {"n": 100_000, "delay_s": 0.01}, timeout=0.5)
        assert info.value.code == "timeout"
        assert client.pending == []


def test_lost_backend_is_reported_then_reconnected_and_running_jobs_are_reattached(tmp_path):
    port = free_port()
    args = ("--bind", f"tcp://127.0.0.1:{port}", "--state", str(tmp_path))
    server = spawn_test_server(*args)
    try:
        client = Client(server.endpoint, heartbeat_s=0.2, timeout_s=1.0)
        events = Events(client)
        assert client.call("ping", timeout=10).result["time"] > 0
        assert client.state == "connected"
        rid = client.submit("light", {"n": 100_000, "delay_s": 0.01})   # a job that will be lost
        job = events.first(rid).job
        server.kill9()
        deadline = time.monotonic() + 15
        while client.state == "connected" and time.monotonic() < deadline:
            events._pump()
        lost = [e for e in events.by_id.get(None, []) if e.type == "connection"]
        assert lost and lost[-1].info["state"] == "lost" and "reconnecting" in lost[-1].message
        server.close()

        server = spawn_test_server(*args)   # same port, same state folder
        final = events.wait(rid, timeout=30)[-1]
        assert final.type == "error" and final.code == "interrupted" and final.job == job
        back = [e for e in events.by_id.get(None, []) if e.info.get("state") == "connected"]
        assert back and back[-1].info["reconnected"] is True and client.state == "connected"
        assert client.call("ping", timeout=10).result["time"] > 0
        client.close()
    finally:
        server.close()


def test_a_reconnect_to_the_same_server_keeps_a_running_job_s_events(tmp_path):
    """A socket re-created mid-job (what the client does after a loss) still gets the job's result."""
    with running_server() as server, Client(server.endpoint) as client:
        events = Events(client)
        rid = client.submit("count", {"n": 80, "delay_s": 0.01})
        events.first(rid, "count")
        client._reconnect([])   # what a lost connection triggers
        final = events.wait(rid)[-1]
        assert final.type == "ok" and final.result["count"] == 80


def test_close_is_immediate_even_with_unsent_messages():
    ctx = zmq.Context()
    client = Client(f"tcp://127.0.0.1:{free_port()}", context=ctx)
    client.submit("echo", {}, {"a": np.zeros(5_000_000, np.uint8)})
    client.close()
    assert client.state == "closed" and client.poll(0) == []
    with pytest.raises(BackendError):
        client.submit("ping")
    terminated = threading.Thread(target=ctx.term, daemon=True)
    terminated.start()
    terminated.join(5)
    assert not terminated.is_alive(), "context.term() hung: a socket lingered"


def test_curve_keys_need_a_secret_file(tmp_path):
    from backend.server.keys import write_keypair

    public, secret = write_keypair(tmp_path, "alice")
    keys = CurveKeys.from_files(public, secret)
    assert len(keys.public) == len(keys.secret) == len(keys.server_public) == 40
    with pytest.raises(ValueError, match="secret"):
        CurveKeys.from_files(public, public)


def test_first_contact_is_a_hello_that_fills_server_info():
    with running_server(devices=["cpu"]) as server, \
            Client(server.endpoint, client_name="tests 1.0") as client:
        deadline = time.monotonic() + 10
        while not client.server_info and time.monotonic() < deadline:
            client.poll(0.05)
        assert client.server_info["protocol"] == 1 and client.server_info["devices"] == ["cpu"]
        assert client.state == "connected"


def test_a_reply_over_the_client_s_limits_ends_its_request_with_an_error():
    from avatex_core.protocol import Limits

    small = Limits(max_message_bytes=1 << 20)
    with running_server() as server, Client(server.endpoint, limits=small) as client:
        with pytest.raises(BackendError) as info:
            client.call("echo", {}, {"a": np.zeros(900_000, np.uint8), "b": np.zeros(900_000, np.uint8)},
                        timeout=10)
        assert info.value.code == "too_large" and "echo" in info.value.message
        assert client.call("ping").result["time"] > 0


def test_a_request_over_the_backend_s_limit_is_refused_before_sending():
    from avatex_core.protocol import Limits

    small = Limits(max_message_bytes=1 << 20)
    with running_server(limits=small) as server, Client(server.endpoint) as client:
        client.call("ping")
        assert client.server_info["limits"]["max_message_bytes"] == 1 << 20
        with pytest.raises(BackendError) as info:
            client.submit("echo", {}, {"a": np.zeros(2 << 20, np.uint8)})
        assert info.value.code == "too_large" and "--max-message-mb" in info.value.message
        assert client.pending == [] and client.call("ping").result["time"] > 0


def test_the_client_runs_no_python_threads_by_default(tmp_path):
    """Blender forbids Python threads: the default client must not start any (not even pyzmq's gc)."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.helpers.scenarios import SCENARIOS

    server = spawn_test_server("--state", str(tmp_path))
    try:
        script = SCENARIOS / "scenario_client_threads.py"
        proc = subprocess.run([sys.executable, str(script), server.endpoint], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "['MainThread']"
    finally:
        server.close()
