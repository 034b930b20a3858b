"""The training operation: ``train.start``'s checks on the socket loop and its job handler.

Handlers as in :mod:`.ops` (which holds the table). The trainer is imported inside the handler, so a
server without ``backend.train`` still starts and answers ``not_available``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from backend.errors import InputError, NotAvailableError
from backend.server.jobs import Context, Job
from backend.server.paths import PathError
from backend.server.schema import TRAIN_CONFIG, validate_fields

log = logging.getLogger("avatex.server")

# Keys of a training config that name paths (resolved under the roots); everything else passes through.
# Every TrainConfig field that names a file or folder must be listed here.
TRAIN_PATH_KEYS = ("data", "out", "config", "init_g", "init_c", "init", "resume", "cache_dir")


def _training_entry() -> Callable[..., dict]:
    try:
        module = importlib.import_module("backend.train")
    except ImportError as exc:
        raise NotAvailableError(f"training is not available on this server: {exc}") from None
    run = getattr(module, "run_training", None)
    if run is None:
        raise NotAvailableError("training is not available on this server: backend.train has no "
                                "run_training(config, *, progress)")
    return run


def _resolve_train_paths(config: dict, ctx: Context, what: str = "train.start: config") -> dict:
    """``config`` typed and bounded (:data:`TRAIN_CONFIG`), with every path field resolved under the
    roots (``out`` and ``cache_dir`` may not exist yet, but if they do they must be folders)."""
    config = validate_fields(what, TRAIN_CONFIG, config)
    for key in TRAIN_PATH_KEYS:
        value = config.get(key)
        if value is None or (key == "resume" and isinstance(value, bool)):
            continue
        path = ctx.resolve_path(value, must_exist=key not in ("out", "cache_dir"))
        if key in ("out", "cache_dir", "data") and path.exists() and not path.is_dir():
            raise PathError(f"{what}: {key!r} {value!r} must be a folder, and it is not")
        config[key] = str(path)
    return config


def prepare_train(args: dict, arrays: dict, ctx: Context) -> dict | Job:
    if args["resume"] is not None:
        if args["config"]:
            raise InputError("train.start: give either 'config' (a new run) or 'resume' (a job id)")
        job = ctx.server.jobs.owned(args["resume"], ctx.owner)
        if job.op != "train.start":
            raise InputError(f"train.start: job {job.id} is a {job.op} job, not training")
        return ctx.server.jobs.resubmit(job, ctx.request)
    config = args["config"]
    if not config:
        raise InputError("train.start: 'config' is required (at least 'data' and 'out'), or 'resume'")
    if "device" in config:
        raise InputError("train.start: the server chooses the device (avatex serve --device); remove "
                         "'device' from config")
    if not config.get("out"):
        raise InputError("train.start: config['out'] (the run folder, under a root) is required: "
                         "checkpoints go there, and resuming needs it")
    return {**args, "config": _resolve_train_paths(config, ctx)}


def op_train(args: dict, arrays: dict, ctx: Context) -> tuple[dict, dict]:
    """Run ``backend.train.run_training(config, *, progress) -> dict``.

    A TOML file named by ``config['config']`` is read here and merged under the request's fields, so
    its paths are confined to the roots like the others. ``device`` is the device the server gave the
    job. On a resumed job ``resume`` is the run folder (``out``), as ``avatex train --resume RUN``.
    """
    run_training = _training_entry()
    config = dict(args["config"])
    what = "train.start: config"
    if config.get("config"):
        from backend.train.config import toml_fields

        toml = ctx.resolve_path(config.pop("config"), kind="file")
        what = f"train.start: config file {toml.name}"
        config = {**validate_fields(what, TRAIN_CONFIG, toml_fields(toml)), **config}
    config = _resolve_train_paths(config, ctx, what)   # again: roots may differ after a restart
    _check_model_size(config)
    config["device"] = ctx.device
    if ctx.resume and _has_checkpoint(config["out"]):
        config["resume"] = config["out"]
    elif ctx.resume:   # killed before its first checkpoint: nothing to resume, so start again at step 0
        log.info("job %s has no checkpoint yet; starting it again from step 0", ctx.job_id)
    result = run_training(config, progress=ctx.job_progress)
    return dict(result or {}), {}


def _has_checkpoint(out: str) -> bool:
    from backend.train.loop import latest_checkpoint

    return latest_checkpoint(Path(out)) is not None


def _check_model_size(config: dict) -> None:
    """Refuse a run whose model would be too large, before the trainer allocates it."""
    from backend.models import ModelConfig
    from backend.models.checkpoint import check_model_size

    overrides = config.get("model_overrides") or {}
    preset = config.get("model") or ("official" if config.get("init_g") else "small")
    if preset not in ("small", "official"):
        return   # TrainConfig names the allowed presets
    build = ModelConfig.official if preset == "official" else ModelConfig.small
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        model_config = build(**overrides)
    except TypeError as exc:
        raise InputError(f"train.start: model_overrides: {exc}") from None
    check_model_size(model_config, "train.start: the model")
