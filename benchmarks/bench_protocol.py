"""Protocol benchmark: a 1M-vertex coloured mesh round trip and small-request throughput, vs raw pyzmq.

    .venv/bin/python benchmarks/bench_protocol.py [--repeats 5] [--seconds 3]

1. Mesh round trip: vertices float32 (1M, 3), faces int32 (2M, 3), colours float32 (1M, 3) and uint8
   (1M, 3) — 51 MB — from the add-on's client through the server's ``echo`` operation (full header and
   array validation on both ends) and back, against a raw DEALER/ROUTER echo of the same buffers as
   plain frames (no JSON, no checks), both with zero-copy sends, in the same process and run. Also the
   client's Blender-safe default (``zero_copy_send=False``: one memcpy per outgoing array).
2. Small requests: ``ping`` round trips per second with 8 concurrent clients (threads, one socket
   each) against ``avatex serve`` in a subprocess, vs the same clients doing raw send/recv against a
   raw ROUTER echo subprocess.

The machine is shared with other work: every figure is the best of N runs. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatex_core import protocol  # noqa: E402
from avatex_core.client import Client  # noqa: E402
from backend.server import Server, ServerConfig  # noqa: E402

RAW_ECHO_SERVER = r"""
import sys, zmq
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(f"listening on tcp://127.0.0.1:{port}", flush=True)
while True:
    frames = sock.recv_multipart(copy=False)
    if frames[1].bytes == b"stop":
        break
    sock.send_multipart(frames, copy=False)
"""


def make_mesh(n: int = 1_000_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"vertices": rng.random((n, 3), dtype=np.float32),
            "faces": rng.integers(0, n, size=(2 * n, 3), dtype=np.int32),
            "colors": rng.random((n, 3), dtype=np.float32),
            "colors_u8": rng.integers(0, 256, size=(n, 3), dtype=np.uint8)}


def raw_echo_thread() -> tuple[str, threading.Thread]:
    """A raw ROUTER echo on its own context (own I/O thread), like the avatex server's."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    def loop() -> None:
        while True:
            frames = sock.recv_multipart(copy=False)
            if frames[1].bytes == b"stop":
                break
            sock.send_multipart(frames, copy=False)
        sock.close(0)
        ctx.term()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return f"tcp://127.0.0.1:{port}", thread


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_mesh(repeats: int) -> dict:
    mesh = make_mesh()
    nbytes = sum(a.nbytes for a in mesh.values())
    ctx = zmq.Context()
    raw_endpoint, raw_thread = raw_echo_thread()
    raw = ctx.socket(zmq.DEALER)
    raw.connect(raw_endpoint)
    buffers = [memoryview(a.reshape(-1)).cast("B") for a in mesh.values()]

    def raw_round_trip() -> None:
        raw.send_multipart([b"mesh", *buffers], copy=False)
        frames = raw.recv_multipart(copy=False)
        assert sum(len(f.buffer) for f in frames[1:]) == nbytes

    server = Server(ServerConfig(bind="tcp://127.0.0.1:*", devices=["cpu"]), context=None)
    server_thread = server.start_thread()
    clients = {}
    try:
        raw_round_trip()   # warm up connections and allocators
        for label, zero_copy in (("avatex", True), ("avatex_copying_client", False)):
            clients[label] = Client(server.endpoint, zero_copy_send=zero_copy, context=ctx)

        def avatex_round_trip(client: Client) -> None:
            res = client.call("echo", {"data": "mesh"}, mesh, timeout=120)
            assert res.arrays["faces"].shape == mesh["faces"].shape

        runs: dict[str, list[float]] = {"raw": [], **{label: [] for label in clients}}
        for _ in range(repeats + 1):   # interleaved, so drifting load hits all three alike
            runs["raw"].append(best_of(raw_round_trip, 1))
            for label, client in clients.items():
                runs[label].append(best_of(lambda c=client: avatex_round_trip(c), 1))
        results = {label: min(times[1:]) for label, times in runs.items()}   # first run: warm-up
        # correctness of what was timed, checked once outside the timing
        with Client(server.endpoint, zero_copy_send=True, context=ctx) as client:
            back = client.call("echo", {}, mesh, timeout=120).arrays
            assert all(np.array_equal(back[k], v) for k, v in mesh.items())
    finally:
        for client in clients.values():
            client.close()
        raw.send_multipart([b"stop", b""])
        raw_thread.join(10)
        raw.close(0)
        server.stop(force=True)
        server_thread.join(10)
        ctx.term()
    mb = nbytes / 1e6
    return {
        "bytes_each_way": nbytes,
        "avatex_round_trip_s": round(results["avatex"], 4),
        "raw_pyzmq_round_trip_s": round(results["raw"], 4),
        "avatex_MB_per_s": round(2 * mb / results["avatex"], 1),
        "raw_MB_per_s": round(2 * mb / results["raw"], 1),
        "ratio_vs_raw": round(results["raw"] / results["avatex"], 3),
        "copying_client_round_trip_s": round(results["avatex_copying_client"], 4),
        "copying_client_ratio_vs_raw": round(results["raw"] / results["avatex_copying_client"], 3),
    }


def _spawn(argv: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]


def _run_clients(n: int, seconds: float, make_worker) -> float:
    counts = [0] * n
    start = threading.Barrier(n + 1)
    stop_at = [0.0]

    def body(i: int) -> None:
        step = make_worker()
        start.wait()
        while time.perf_counter() < stop_at[0]:
            step()
            counts[i] += 1

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds + 1e9   # placeholder until all are ready
    start.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join(seconds + 30)
    return sum(counts) / (time.perf_counter() - t0)


def bench_small(clients: int, seconds: float, repeats: int, state_dir: Path) -> dict:
    ctx = zmq.Context()
    serve, endpoint = _spawn([sys.executable, "-m", "backend", "serve", "--bind", "tcp://127.0.0.1:*",
                              "--device", "cpu", "--state", str(state_dir), "--log-level", "error"])
    raw_proc, raw_endpoint = _spawn([sys.executable, "-c", RAW_ECHO_SERVER])
    live: list = []
    try:
        def avatex_worker():
            client = Client(endpoint, context=ctx)
            live.append(client)
            return lambda: client.call("ping", timeout=30)

        def raw_worker():
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(raw_endpoint)
            live.append(sock)
            ping = protocol.encode_request("r", "ping")

            def step() -> None:
                sock.send_multipart(ping)
                sock.recv_multipart()
            return step

        avatex = max(_run_clients(clients, seconds, avatex_worker) for _ in range(repeats))
        raw = max(_run_clients(clients, seconds, raw_worker) for _ in range(repeats))
    finally:
        for item in live:
            item.close()
        stopper = ctx.socket(zmq.DEALER)
        stopper.connect(raw_endpoint)
        stopper.send_multipart([b"stop", b""])
        stopper.close(linger=1000)
        serve.terminate()
        serve.wait(30)
        raw_proc.wait(10)
        ctx.term()
    return {"clients": clients, "op": "ping", "avatex_requests_per_s": round(avatex),
            "raw_pyzmq_requests_per_s": round(raw), "ratio_vs_raw": round(avatex / raw, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as state:
        report = {
            "benchmark": "protocol",
            "mesh_round_trip": bench_mesh(args.repeats),
            "small_requests": bench_small(args.clients, args.seconds, max(1, args.repeats // 2 + 1),
                                          Path(state)),
            "method": f"best of {args.repeats} (mesh) / {max(1, args.repeats // 2 + 1)} (ping) runs; "
                      "loopback TCP; shared machine, timings are noisy",
            "cpu_count": os.cpu_count(),
            "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
