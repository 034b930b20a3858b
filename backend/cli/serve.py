"""avatex serve: run the backend server (ZeroMQ ROUTER) in the foreground until Ctrl-C / SIGTERM.

Binds 127.0.0.1 unless --keys is given; clients may name files only under the --root folders. The
protocol is specified in docs/protocol.md. Ctrl-C (or SIGTERM) stops cleanly: running jobs are asked
to stop and get --grace seconds; training jobs stay resumable and resume on the next start. A second
Ctrl-C stops at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "run the backend server for Blender and scripts (ZeroMQ)"
PATHS = ("keys", "root", "state")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "avatex" / "server"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555",
                        help="address to listen on (default %(default)s; tcp://HOST:PORT or ipc://PATH; "
                             "a non-loopback address needs --keys)")
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="CurveZMQ keys: DIR/server.key_secret and DIR/authorized/*.key (clients "
                             "allowed in); make them with `avatex keys`")
    parser.add_argument("--root", type=Path, action="append", default=[], metavar="DIR",
                        help="folder clients may name files under (repeatable); without it, clients "
                             "send data as arrays only")
    parser.add_argument("--device", action="append", default=[], metavar="DEV",
                        help="compute device(s) for jobs, e.g. cpu, cuda, cuda:1 (repeatable; default: "
                             "every CUDA GPU, else cpu)")
    parser.add_argument("--device-jobs", type=int, default=1, metavar="N",
                        help="jobs that may share one device at a time (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="worker threads for jobs (default %(default)s)")
    parser.add_argument("--max-queue", type=int, default=16, metavar="N",
                        help="waiting jobs before new ones get a 'busy' reply (default %(default)s)")
    parser.add_argument("--state", type=Path, default=None, metavar="DIR",
                        help=f"where job records live, for resuming after a restart (default "
                             f"{default_state_dir()})")
    parser.add_argument("--no-resume", action="store_true",
                        help="do not resume interrupted training jobs at start-up")
    parser.add_argument("--max-message-mb", type=int, default=1024, metavar="MB",
                        help="largest frame accepted (default %(default)s MiB; libzmq applies it per "
                             "frame, see docs/protocol.md)")
    parser.add_argument("--max-queued-mb", type=int, default=1024, metavar="MB",
                        help="input arrays waiting and running jobs may hold before new jobs get "
                             "'busy' (default %(default)s MiB)")
    parser.add_argument("--reply-budget-mb", type=int, default=256, metavar="MB",
                        help="unsent reply bytes per client before its replies are dropped "
                             "(default %(default)s MiB; all clients together: 4×)")
    parser.add_argument("--retain-jobs", type=int, default=64, metavar="N",
                        help="finished jobs whose results are kept for later fetch (default %(default)s)")
    parser.add_argument("--grace", type=float, default=10.0, metavar="S",
                        help="seconds running jobs get to stop on shutdown (default %(default)s)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def resolve_devices(requested: list[str]) -> list[str]:
    """``--device`` values, or every CUDA GPU (one job each), or the CPU."""
    if requested and requested != ["auto"]:
        return list(dict.fromkeys(requested))
    try:
        import torch
    except ImportError:
        return ["cpu"]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


def run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from avatex_core.protocol import Limits
    from backend.errors import InputError
    from backend.server import Server, ServerConfig

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="avatex serve: %(levelname)s %(message)s")
    for name, value in (("--workers", args.workers), ("--device-jobs", args.device_jobs),
                        ("--max-queue", args.max_queue), ("--max-message-mb", args.max_message_mb),
                        ("--max-queued-mb", args.max_queued_mb), ("--reply-budget-mb", args.reply_budget_mb)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    config = ServerConfig(
        bind=args.bind, keys=args.keys, roots=list(args.root), devices=resolve_devices(args.device),
        device_jobs=args.device_jobs, workers=args.workers, max_queue=args.max_queue,
        state_dir=args.state or default_state_dir(), resume_jobs=not args.no_resume,
        limits=Limits(max_message_bytes=args.max_message_mb << 20), retain_jobs=args.retain_jobs,
        shutdown_grace_s=args.grace, max_queued_bytes=args.max_queued_mb << 20,
        reply_budget_bytes=args.reply_budget_mb << 20,
        reply_budget_total_bytes=(4 * args.reply_budget_mb) << 20)
    server = Server(config)
    endpoint = server.start()
    print(f"avatex serve: listening on {endpoint} (devices {', '.join(config.devices)}; "
          f"{'CurveZMQ' if args.keys else 'loopback only'}; Ctrl-C to stop)", flush=True)

    def on_signal(signum: int, frame: object) -> None:
        if server._stop.is_set():
            print("avatex serve: stopping now", file=sys.stderr, flush=True)
        else:
            print(f"avatex serve: stopping (waiting up to {config.shutdown_grace_s:g} s for jobs; "
                  "Ctrl-C again to stop now)", file=sys.stderr, flush=True)
        server.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
