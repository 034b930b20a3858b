"""Server memory under careless clients: byte budgets vs the count-only limits they replaced.

    .venv/bin/python benchmarks/bench_server_memory.py [--echoes 60] [--images 20] [--image-mb 150]

Two server subprocesses per case, in the same run: ``budgeted`` (the defaults: reply and input byte
budgets, SNDHWM 256) and ``counts only`` (the byte budgets off, SNDHWM 10,000 — the limits before).
The growth of the server's resident memory (VmRSS, peak minus before) is measured for

1. a client that sends ``--echoes`` ``echo`` requests of 20 MiB and does not read (RCVHWM 1, a 64 KiB
   kernel buffer);
2. ``--images`` ``reconstruct`` requests with an image of ``--image-mb`` MB each, queued behind a job
   that holds the only device slot.

Prints one JSON object: MiB per configuration, how the requests were answered, and the ratio
counts-only / budgeted (higher = the budget saves more).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatex_core import protocol  # noqa: E402

MiB = 1 << 20
SERVER = r"""
import sys, time
from backend.server import OPERATIONS, Operation, Server, ServerConfig
from backend.server.schema import Arg

def hold(args, arrays, ctx):   # keeps the device slot until cancelled
    while not ctx.should_stop():
        time.sleep(0.05)
    return {}, {}

unbounded = sys.argv[2] == "counts-only"
config = ServerConfig(bind="tcp://127.0.0.1:*", roots=[sys.argv[1]], state_dir=sys.argv[1] + "/state",
                      **(dict(reply_budget_bytes=1 << 50, reply_budget_total_bytes=1 << 50,
                              max_queued_bytes=1 << 50, send_hwm=10_000) if unbounded else {}))
ops = {**OPERATIONS, "hold": Operation("hold", hold, "hold the device", job=True, device=True)}
server = Server(config, operations=ops)
print("listening on", server.start(), flush=True)
server.serve_forever()
"""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(kind: str, config: str, folder: Path, args: argparse.Namespace) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt").write_bytes(b"never loaded")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(folder), config], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    endpoint = proc.stdout.readline().split()[-1]
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        for option, value in ((zmq.LINGER, 0), (zmq.RCVHWM, 1), (zmq.RCVBUF, 1 << 16), (zmq.SNDHWM, 1000)):
            sock.setsockopt(option, value)
        sock.connect(endpoint)
        owner = protocol.new_owner_secret()
        sock.send_multipart(protocol.encode_request("h", "hold" if kind == "images" else "ping", owner=owner))
        assert sock.poll(30_000)
        sock.recv_multipart()
        time.sleep(0.5)
        before = peak = rss(proc.pid)
        if kind == "echo":
            payload, count, op, args_ = np.ones(20 * MiB, np.uint8), args.echoes, "echo", {}
            arrays = {"a": payload}
        else:
            side = int((args.image_mb * 1e6 / 3) ** 0.5)
            count, op, args_ = args.images, "reconstruct", {"checkpoint": "model.pt"}
            arrays = {"image": np.full((side, side, 3), 7, np.uint8)}
        for i in range(count):
            sock.send_multipart(protocol.encode_request(f"r{i}", op, args_, arrays, owner=owner), copy=False)
        answers: dict[str, int] = {}
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            peak = max(peak, rss(proc.pid))
            if kind == "images" and sum(answers.values()) >= count:
                break
            if kind == "images" and sock.poll(100):
                header = json.loads(sock.recv_multipart()[0])
                if header["id"] == "h":
                    continue   # the holding job's own progress
                key = header["type"] if header["type"] != "error" else header["error"]["code"]
                answers[key] = answers.get(key, 0) + 1
            elif kind == "echo":
                time.sleep(0.1)
        return {"rss_growth_mib": round((peak - before) / MiB), "answers": answers}
    finally:
        ctx.destroy(linger=0)
        proc.kill()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--echoes", type=int, default=60)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--image-mb", type=float, default=150.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each case is watched")
    parser.add_argument("--work", type=Path, default=Path("/tmp/avatex_bench_server_memory"))
    args = parser.parse_args()
    out: dict = {"settings": {"echoes": args.echoes, "echo_mib": 20, "images": args.images,
                              "image_mb": args.image_mb}}
    for kind in ("echo", "images"):
        results = {config: run_case(kind, config, args.work / f"{kind}-{config}", args)
                   for config in ("budgeted", "counts-only")}
        results["ratio"] = round(results["counts-only"]["rss_growth_mib"]
                                 / max(1, results["budgeted"]["rss_growth_mib"]), 2)
        out["non_reading_client" if kind == "echo" else "queued_inputs"] = results
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
