"""Training: samplers' data pipeline, losses, the loop, DDP, logs (docs/training.md).

``run_training(config, *, progress=NULL) -> dict`` (``progress`` an :class:`avatex_core.progress.Progress`)
is the entry point the server and the CLI call; it is imported lazily so that ``import backend.train``
stays cheap.
"""

from __future__ import annotations

from typing import Any

from avatex_core.progress import NULL, Progress

__all__ = ["TrainConfig", "run_training"]


def run_training(config: dict, *, progress: Progress = NULL) -> dict[str, Any]:
    """Train as ``config`` (TrainConfig fields) says; see :func:`backend.train.loop.run_training`."""
    from backend.train.loop import run_training as _run

    return _run(config, progress=progress)


def __getattr__(name: str):
    if name == "TrainConfig":
        from backend.train.config import TrainConfig

        return TrainConfig
    raise AttributeError(name)
