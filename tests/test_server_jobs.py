"""Jobs on a real server: progress, cancel, device slots, busy queue, disconnects, retention, resume."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from avatex_core.client import BackendError, Client
from avatex_core.protocol import new_owner_secret
from tests.helpers.server import Events, running_server, spawn_avatex_serve, spawn_test_server

# Jobs belong to the owner secret that started them: the tests that come back with a new client (after a
# disconnect or a server restart) come back as the same owner, as the add-on does.
OWNER = new_owner_secret()




def wait_for(client: Client, rid: str, timeout: float = 30.0) -> list:
    return Events(client).wait(rid, timeout)


def wait_for_first(client: Client, rid: str):
    return Events(client).first(rid)


def test_count_operation_is_registered_beside_the_real_ones():
    from backend.server import OPERATIONS
    from tests.helpers.server import TEST_OPERATIONS

    assert set(OPERATIONS) < set(TEST_OPERATIONS)
    assert TEST_OPERATIONS["count"].resumable and not TEST_OPERATIONS["light"].device


def test_job_streams_progress_then_returns_result_and_arrays():
    with running_server() as server, Client(server.endpoint) as client:
        seen = []
        res = client.call("count", {"n": 20, "delay_s": 0.005}, timeout=30, on_progress=seen.append)
        assert res.result["count"] == 20 and res.job.startswith("j")
        np.testing.assert_array_equal(res.arrays["steps"], np.arange(20))
        assert seen[0].stage == "queued" and seen[0].job == res.job
        steps = [e.info["step"] for e in seen if e.stage == "count"]
        assert steps and steps == sorted(steps) and steps[-1] <= 20   # throttled, in order
        status = client.call("job.status", {"job": res.job}).result
        assert status["state"] == "done" and status["fraction"] == 1.0 and status["arrays"] == ["steps"]


def test_cancel_by_request_and_by_job_id():
    with running_server() as server, Client(server.endpoint) as client:
        rid = client.submit("count", {"n": 10_000, "delay_s": 0.01})
        events = []
        while not any(e.stage == "count" for e in events):
            events += [e for e in client.poll(0.05) if e.id == rid]
        client.cancel(rid)
        final = wait_for(client, rid)[-1]
        assert final.type == "cancelled" and "stopped at step" in final.message
        assert client.call("job.status", {"job": final.job}).result["state"] == "cancelled"

        rid = client.submit("count", {"n": 10_000, "delay_s": 0.01})
        first = wait_for_first(client, rid)
        assert client.call("cancel", {"job": first.job}).result["job"] == first.job
        assert wait_for(client, rid)[-1].type == "cancelled"
        with pytest.raises(BackendError) as info:
            client.call("cancel", {"job": "nope", "request": "x"})
        assert info.value.code == "bad_input" and "exactly one" in info.value.message


def test_one_job_per_device_and_parallel_on_two_devices():
    with running_server(workers=3) as server, Client(server.endpoint) as client:
        a = client.submit("count", {"n": 15, "delay_s": 0.01})
        b = client.submit("count", {"n": 15, "delay_s": 0.01})
        events = Events(client)
        ra, rb = events.wait(a)[-1].result, events.wait(b)[-1].result
        first, second = sorted((ra, rb), key=lambda r: r["t0"])
        assert second["t0"] >= first["t1"], "two jobs ran on one device at once"
    with running_server(workers=3, devices=["dev0", "dev1"]) as server, Client(server.endpoint) as client:
        a = client.submit("count", {"n": 30, "delay_s": 0.01})
        b = client.submit("count", {"n": 30, "delay_s": 0.01})
        events = Events(client)
        ra, rb = events.wait(a)[-1].result, events.wait(b)[-1].result
        assert {ra["device"], rb["device"]} == {"dev0", "dev1"}
        first, second = sorted((ra, rb), key=lambda r: r["t0"])
        assert second["t0"] < first["t1"], "two devices did not run in parallel"


def test_jobs_without_device_run_beside_a_device_job():
    with running_server(workers=2) as server, Client(server.endpoint) as client:
        heavy = client.submit("count", {"n": 40, "delay_s": 0.01})
        light = client.call("light", {"n": 3, "delay_s": 0.001}).result   # keeps heavy's events queued
        heavy_result = wait_for(client, heavy)[-1].result
        assert light["t1"] < heavy_result["t1"]


def test_full_queue_answers_busy_and_later_accepts_again():
    with running_server(max_queue=1, workers=1) as server, Client(server.endpoint) as client:
        events = Events(client)
        running = client.submit("count", {"n": 1000, "delay_s": 0.01})
        events.first(running, "started")
        queued = client.submit("count", {"n": 1})
        events.first(queued)
        with pytest.raises(BackendError) as info:
            client.call("count", {"n": 1}, timeout=10)
        assert info.value.code == "busy" and "queue holds at most 1" in info.value.message
        client.cancel(running)
        assert events.wait(running)[-1].type == "cancelled"
        assert events.wait(queued)[-1].type == "ok"
        assert client.call("count", {"n": 1}).result["count"] == 1


def test_several_clients_at_once_each_get_their_own_results():
    with running_server(workers=2, devices=["a", "b"]) as server:
        clients = [Client(server.endpoint) for _ in range(4)]
        try:
            rids = [c.submit("count", {"n": 5 + i, "delay_s": 0.002}) for i, c in enumerate(clients)]
            for i, (c, rid) in enumerate(zip(clients, rids, strict=True)):
                final = wait_for(c, rid)[-1]
                assert final.type == "ok" and final.result["count"] == 5 + i
                assert len(final.arrays["steps"]) == 5 + i
        finally:
            for c in clients:
                c.close()


def test_results_survive_a_client_disconnect_and_can_be_fetched_by_job_id():
    with running_server() as server:
        first = Client(server.endpoint, owner=OWNER)
        rid = first.submit("count", {"n": 30, "delay_s": 0.01})
        job = wait_for_first(first, rid).job
        first.close()   # gone mid-job
        with Client(server.endpoint, owner=OWNER) as second:
            res = second.call("job.result", {"job": job, "wait": True}, timeout=30)
            assert res.result["count"] == 30 and res.job == job
            np.testing.assert_array_equal(res.arrays["steps"], np.arange(30))
            again = second.call("job.result", {"job": job})   # kept for later fetch
            assert again.result == res.result
            listed = second.call("job.list", {"op": "count"}).result["jobs"]
            assert [j["job"] for j in listed] == [job]


def test_job_result_of_an_unfinished_job_without_wait_says_not_ready():
    with running_server() as server, Client(server.endpoint) as client:
        rid = client.submit("count", {"n": 1000, "delay_s": 0.01})
        job = wait_for_first(client, rid).job
        with pytest.raises(BackendError) as info:
            client.call("job.result", {"job": job})
        assert info.value.code == "not_ready" and "wait=true" in info.value.message
        client.cancel(rid)
        wait_for(client, rid)
        with pytest.raises(BackendError) as info:
            client.call("job.result", {"job": job})
        assert info.value.code == "cancelled"


def test_timeout_stops_a_job_with_a_timeout_error():
    with running_server() as server, Client(server.endpoint) as client:
        with pytest.raises(BackendError) as info:
            client.call("count", {"n": 10_000, "delay_s": 0.01, "timeout_s": 0.2}, timeout=30)
        assert info.value.code == "timeout" and "timeout_s" in info.value.message


def test_retention_forgets_the_oldest_finished_jobs(tmp_path):
    with running_server(retain_jobs=2, state_dir=tmp_path) as server, Client(server.endpoint) as client:
        jobs = [client.call("count", {"n": 1, "delay_s": 0}).job for _ in range(4)]
        server.jobs.evict()
        with pytest.raises(BackendError) as info:
            client.call("job.status", {"job": jobs[0]})
        assert info.value.code == "not_found"
        assert client.call("job.status", {"job": jobs[-1]}).result["state"] == "done"
        assert sorted(p.stem for p in (tmp_path / "jobs").glob("*.json")) == sorted(jobs[2:])


def test_failed_handler_is_an_error_reply_and_the_server_keeps_serving(tmp_path):
    with running_server(roots=[tmp_path]) as server, Client(server.endpoint) as client:
        (tmp_path / "out").write_text("a file where the job wants a folder")
        with pytest.raises(BackendError) as info:
            client.call("count", {"n": 20, "every": 1, "delay_s": 0, "out": "out"})
        assert info.value.code == "internal" and "count failed" in info.value.message
        assert client.call("ping").result["time"] > 0


def _state_and_root(tmp_path: Path) -> tuple[Path, Path, tuple[str, ...]]:
    """A state folder, a data root and the server options naming them, for a server restarted in a test."""
    state, root = tmp_path / "state", tmp_path / "root"
    root.mkdir()
    return state, root, ("--state", str(state), "--root", str(root))


@pytest.mark.slow
def test_kill9_during_a_resumable_job_then_restart_resumes_from_the_last_checkpoint(tmp_path):
    """The server-side mechanism (job records + resume) with the checkpointing ``count`` job; the same
    against a real training job is tests/test_server_training.py."""
    state, root, args = _state_and_root(tmp_path)
    server = spawn_test_server(*args)
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            rid = client.submit("count", {"n": 150, "delay_s": 0.02, "every": 10, "out": "run"})
            last_step, job = 0, None
            while last_step < 45:
                for event in client.poll(0.05):
                    if event.id == rid and event.stage == "count":
                        last_step, job = event.info["step"], event.job
            server.kill9()
        checkpoint = json.loads((root / "run" / "state.json").read_text())   # whole, never torn
        assert checkpoint["step"] % 10 == 0 and last_step - 10 <= checkpoint["step"] <= last_step + 10
        assert checkpoint["sum"] == checkpoint["step"] * (checkpoint["step"] - 1) // 2
        record = json.loads((state / "jobs" / f"{job}.json").read_text())
        assert record["state"] == "running" and record["resumable"]
        assert not list(state.rglob("*.tmp-*"))
    finally:
        server.close()

    server = spawn_test_server(*args)   # resumes the job by itself
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            res = client.call("job.result", {"job": job, "wait": True}, timeout=60)
            assert res.result["count"] == 150 and res.result["resumed"]
            assert res.result["resumed_from"] == checkpoint["step"]
            status = client.call("job.status", {"job": job}).result
            assert status["attempts"] == 2 and status["state"] == "done"
        assert json.loads((root / "run" / "state.json").read_text())["step"] == 150
    finally:
        server.close()


def _kill9_after(tmp_path: Path, start: Callable[[Client], str]) -> str:
    """Start a server on ``tmp_path``'s state, let ``start`` give a job id, then kill -9 the server."""
    server = spawn_test_server("--state", str(tmp_path))
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            job = start(client)
        server.kill9()
    finally:
        server.close()
    return job


def test_non_resumable_jobs_are_reported_interrupted_after_a_restart(tmp_path):
    def running_job(client: Client) -> str:
        job = wait_for_first(client, client.submit("light", {"n": 10_000, "delay_s": 0.01})).job
        time.sleep(0.2)
        return job

    job = _kill9_after(tmp_path, running_job)
    server = spawn_test_server("--state", str(tmp_path))
    try:
        with Client(server.endpoint, owner=OWNER) as client, pytest.raises(BackendError) as info:
            client.call("job.result", {"job": job})
        assert info.value.code == "interrupted" and "restart" in info.value.message
    finally:
        server.close()


def test_cancelled_resumable_job_resumes_on_request(tmp_path):
    with running_server(roots=[tmp_path]) as server, Client(server.endpoint) as client:
        rid = client.submit("count", {"n": 60, "delay_s": 0.01, "every": 5, "out": "run"})
        while not (tmp_path / "run" / "state.json").exists():
            client.poll(0.02)
        client.cancel(rid)
        final = wait_for(client, rid)[-1]
        assert final.type == "cancelled"
        done = json.loads((tmp_path / "run" / "state.json").read_text())["step"]
        # train.start --resume re-queues a training job; the job machinery is the same for count:
        job = server.jobs.resubmit(server.jobs.get(final.job), None)
        res = client.call("job.result", {"job": job.id, "wait": True}, timeout=30)
        assert res.result["resumed_from"] == done and res.result["count"] == 60


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_avatex_serve_stops_cleanly_on_signals(tmp_path, sig):
    server = spawn_avatex_serve("--bind", "tcp://127.0.0.1:*", "--state", str(tmp_path), "--device", "cpu")
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            hello = client.call("hello", {"client": "test"}, timeout=30).result
            assert hello["protocol"] == 1 and hello["devices"] == ["cpu"]
        assert server.terminate(sig) == 0
        assert "stopping" in server.proc.stderr.read()
    finally:
        server.close()


def test_shutdown_from_a_local_client_stops_the_server(tmp_path):
    server = spawn_avatex_serve("--bind", "tcp://127.0.0.1:*", "--state", str(tmp_path), "--device", "cpu")
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            assert client.call("shutdown", timeout=30).result["stopping"] is True
        assert server.proc.wait(30) == 0
    finally:
        server.close()


def test_hello_describes_the_server_and_every_operation():
    with running_server(devices=["cpu"], max_queue=3) as server, Client(server.endpoint) as client:
        hello = client.call("hello", {"client": "tests"}).result
        assert hello["protocol"] == 1 and hello["server"].startswith("avatex ")
        assert hello["max_queue"] == 3 and hello["devices"] == ["cpu"] and "float32" in hello["dtypes"]
        ops = hello["operations"]
        assert {"hello", "reconstruct", "evaluate", "train.start", "train.status", "train.cancel",
                "job.status", "job.result", "cancel", "checkpoints.list", "shutdown"} <= set(ops)
        assert ops["reconstruct"]["kind"] == "job" and ops["ping"]["kind"] == "inline"
        assert ops["reconstruct"]["args"]["resolution"]["default"] == 256
        assert ops["evaluate"]["arrays"]["vertices"]["required"] is True
        assert ops["shutdown"]["local_only"] is True and ops["echo"]["arrays"] is None


def test_train_status_and_cancel_address_training_jobs_only():
    with running_server() as server, Client(server.endpoint) as client:
        assert client.call("train.status").result == {"jobs": []}
        rid = client.submit("count", {"n": 1000, "delay_s": 0.01})
        job = wait_for_first(client, rid).job
        with pytest.raises(BackendError) as info:
            client.call("train.cancel", {"job": job})
        assert info.value.code == "bad_input" and "not training" in info.value.message
        assert client.call("train.status", {"job": job}).result["op"] == "count"
        assert client.call("cancel", {"request": rid}).result["job"] == job
        assert wait_for(client, rid)[-1].type == "cancelled"
        with pytest.raises(BackendError) as info:
            client.call("cancel", {"request": rid})   # finished: nothing left to cancel
        assert info.value.code == "not_found"


def test_one_server_per_state_folder(tmp_path):
    from backend.errors import InputError
    from backend.server import Server, ServerConfig

    with running_server(state_dir=tmp_path), \
            pytest.raises(InputError, match="another avatex server is using the state folder"):
        Server(ServerConfig(bind="tcp://127.0.0.1:*", state_dir=tmp_path))
    with running_server(state_dir=tmp_path) as server:   # released when the first one stopped
        assert server.endpoint


@pytest.mark.slow
def test_clean_shutdown_interrupts_a_resumable_job_and_the_next_start_resumes_it(tmp_path):
    state, root, args = _state_and_root(tmp_path)
    server = spawn_test_server(*args)
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            events = Events(client)
            rid = client.submit("count", {"n": 100, "delay_s": 0.02, "every": 5, "out": "run"})
            job = events.first(rid, "count").job
            while not (root / "run" / "state.json").exists():
                events._pump()
            assert server.terminate(signal.SIGTERM) == 0
            final = events.wait(rid)[-1]
            assert final.type == "cancelled" and "interrupted" in final.message
        record = json.loads((state / "jobs" / f"{job}.json").read_text())
        assert record["state"] == "interrupted"
    finally:
        server.close()
    server = spawn_test_server(*args)
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            res = client.call("job.result", {"job": job, "wait": True}, timeout=60)
            assert res.result["resumed"] and res.result["resumed_from"] > 0 and res.result["count"] == 100
    finally:
        server.close()


def test_a_handler_returning_unsendable_arrays_fails_its_job_not_the_server():
    from backend.server import Operation, Server, ServerConfig
    from tests.helpers.server import TEST_OPERATIONS

    def bad(args, arrays, ctx):
        return {}, {"strings": np.array(["not", "numbers"])}

    ops = {**TEST_OPERATIONS, "bad": Operation("bad", bad, "returns a string array", job=True)}
    server = Server(ServerConfig(bind="tcp://127.0.0.1:*"), operations=ops)
    thread = server.start_thread()
    try:
        with Client(server.endpoint, owner=OWNER) as client:
            with pytest.raises(BackendError) as info:
                client.call("bad", timeout=30)
            assert info.value.code == "bad_array" and "cannot be sent" in info.value.message
            assert client.call("ping").result["time"] > 0
    finally:
        server.stop(force=True)
        thread.join(10)


def test_after_a_restart_finished_results_without_their_arrays_say_so(tmp_path):
    job = _kill9_after(tmp_path, lambda client: client.call("light", {"n": 3, "delay_s": 0}, timeout=30).job)
    server = spawn_test_server("--state", str(tmp_path))
    try:
        with Client(server.endpoint, owner=OWNER) as client, pytest.raises(BackendError) as info:
            client.call("job.result", {"job": job}, timeout=30)
        assert info.value.code == "result_lost" and "run it again" in info.value.message
    finally:
        server.close()
