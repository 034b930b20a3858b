"""Device choice shared by the model and reconstruction code (brief: None = CUDA when available)."""

from __future__ import annotations

import torch

from backend.errors import InputError, NotAvailableError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a named CUDA device that is absent is a clear error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r} (use 'cpu' or 'cuda')") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NotAvailableError("CUDA was requested but this PyTorch build sees no GPU; use --device cpu")
    return dev
