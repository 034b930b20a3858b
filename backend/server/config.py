"""What ``avatex serve`` configures: :class:`ServerConfig`, apart from the loop that uses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avatex_core import protocol


@dataclass
class ServerConfig:
    """Everything ``avatex serve`` configures. Defaults are safe: loopback, no paths, one job per device."""

    bind: str = "tcp://127.0.0.1:5555"
    keys: Path | None = None
    roots: list[Path] = field(default_factory=list)
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    device_jobs: int = 1
    workers: int = 2
    max_queue: int = 16
    state_dir: Path | None = None
    resume_jobs: bool = True
    limits: protocol.Limits = field(default_factory=protocol.Limits)
    heartbeat_ivl_ms: int = 2000
    heartbeat_timeout_ms: int = 10000
    handshake_timeout_ms: int = 10000
    retain_jobs: int = 64
    retain_s: float = 3600.0
    retain_bytes: int = 2 << 30
    shutdown_grace_s: float = 10.0
    max_queued_bytes: int = 1 << 30          # input arrays of waiting and running jobs
    reply_budget_bytes: int = 256 << 20      # unsent reply bytes per client
    reply_budget_total_bytes: int = 1 << 30  # unsent reply bytes, all clients together
    send_hwm: int = 256                      # queued replies per client (libzmq counts messages)
    recv_hwm: int = 16                       # received messages per client waiting for the loop
