"""torchrun / DDP set-up: one process per device, gloo on CPU, nccl on CUDA.

A training command started plainly runs as one process (rank 0 of 1); the same command under
``torchrun --nproc-per-node N [--nnodes M ...]`` finds RANK / WORLD_SIZE / LOCAL_RANK in the
environment and joins the process group. Only rank 0 writes checkpoints, logs and plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from backend.errors import InputError
from backend.models.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | torch.device | None = None) -> DistContext:
    """Join the process group if launched by torchrun (WORLD_SIZE > 1); pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        if dev.index is not None and dev.index != local_rank and torch.cuda.device_count() > 1:
            raise InputError("under torchrun, pass --device cuda (each rank takes cuda:LOCAL_RANK)")
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        # Rank 0 validates and checkpoints while the others wait in a collective: allow it an hour.
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                timeout=timedelta(hours=1))
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def mean_of(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Average scalar logs over ranks (one all-reduce); identity when not distributed."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    t /= ctx.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True if ``flag`` is true on any rank (so every rank stops at the same step)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
