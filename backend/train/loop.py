"""The training loop: fine-tune or train PIFu's nets on a relit dataset (docs/training.md).

Read it top to bottom: :func:`run_training` resolves the configuration (a fresh run, or a resumed one
from the run folder's last checkpoint), then :func:`train` sets up the process group, model, data,
optimisers and logs, and runs ``steps`` optimiser steps, validating and checkpointing on the way.

Run folder layout::

    RUN/config.json                  the resolved configuration
    RUN/checkpoints/step-NNNNNNNN.pt avatex checkpoints with the full training state (last few kept)
    RUN/tensorboard/                 TensorBoard events
    RUN/history.json, training.png   loss and validation curves
    RUN/summary.json                 final metrics and checkpoint path (written at the end)
"""

from __future__ import annotations

import math
import random
import re
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avatex_core.atomic import remove_stale_temporaries, write_json
from avatex_core.progress import NULL, Progress
from backend.errors import CancelledError, InputError
from backend.models import ModelConfig, PIFu
from backend.models.checkpoint import load_checkpoint, load_official, save_checkpoint
from backend.train import distributed
from backend.train.cache import default_cache_dir
from backend.train.config import RESUMABLE_CHANGES, TrainConfig, toml_fields
from backend.train.data import StepSampler, TrainItems, load_subject, make_loader, train_items
from backend.train.logs import RunLog
from backend.train.losses import color_loss, occupancy_loss
from backend.train.source import open_source

CHECKPOINTS = "checkpoints"
_CKPT = re.compile(r"^step-(\d{8})\.pt$")


# -- entry point -------------------------------------------------------------------------------------

def run_training(config: dict, *, progress: Progress = NULL) -> dict:
    """Train as ``config`` (TrainConfig fields) says; what the server's ``train.start`` calls.

    With ``resume=True`` the run in ``out`` continues from its last checkpoint with its stored settings
    (only fields in ``RESUMABLE_CHANGES``, e.g. ``steps``, may be changed). Returns the final metrics
    and the last checkpoint's path. Raises :class:`CancelledError` (after checkpointing) when
    ``progress`` is cancelled; it reports stages prepare, train, validate, checkpoint and done.
    """
    cfg, resume_from = resolve_config(config)
    return train(cfg, resume_from=resume_from, progress=progress)


def resolve_config(config: dict) -> tuple[TrainConfig, Path | None]:
    """(configuration, checkpoint to resume from or None); paths made absolute."""
    if not isinstance(config, dict):
        raise InputError(f"training config must be a mapping, got {type(config).__name__}")
    config = dict(config)
    if config.get("config"):
        # a TOML file named inside the dict (the server passes it this way): its fields, then the dict's
        config = {**toml_fields(config.pop("config")), **config}
    else:
        config.pop("config", None)
    if isinstance(config.get("resume"), str | Path):
        # resume given as the run folder (the server's convention, like ``--resume RUN``)
        if config.get("out") and Path(config["out"]).resolve() != Path(config["resume"]).resolve():
            raise InputError("resume names the run folder to continue; do not also give a different out")
        config["out"] = str(config["resume"])
        config["resume"] = True
    config = _absolute_paths(config)
    if not config.get("resume"):
        cfg = TrainConfig.from_dict(config)
        existing = latest_checkpoint(Path(cfg.out))
        if existing is not None:
            raise InputError(f"{cfg.out} already holds a run ({existing.name}); resume it with --resume "
                             f"or choose another --out")
        return cfg, None
    if not config.get("out"):
        raise InputError("resume needs the run folder (out)")
    ckpt = latest_checkpoint(Path(config["out"]))
    if ckpt is None:
        raise InputError(f"nothing to resume: {config['out']} has no checkpoints/step-*.pt")
    stored = _stored_config(ckpt)
    changed = sorted(k for k, v in config.items()
                     if k not in RESUMABLE_CHANGES and k != "out" and stored.get(k) != v)
    if changed:
        raise InputError(f"cannot change {', '.join(changed)} when resuming {config['out']} "
                         f"(only {', '.join(sorted(RESUMABLE_CHANGES - {'resume'}))} may change)")
    merged = {**stored, **{k: v for k, v in config.items() if k in RESUMABLE_CHANGES}}
    merged.update(resume=True, out=config["out"])
    return TrainConfig.from_dict(merged), ckpt


def _absolute_paths(config: dict) -> dict:
    for key in ("data", "out", "init", "init_g", "init_c", "cache_dir"):
        if config.get(key):
            config[key] = str(Path(config[key]).expanduser().resolve())
    return config


def _stored_config(ckpt: Path) -> dict:
    _, state = load_checkpoint(ckpt, device="cpu")
    stored = state.get("config")
    if not isinstance(stored, dict):
        raise InputError(f"{ckpt} holds no training configuration; it was not written by avatex train")
    return dict(stored)


def latest_checkpoint(out: Path) -> Path | None:
    """The highest-step ``checkpoints/step-*.pt`` of a run folder (complete files only: writes are
    atomic, so a killed save leaves only a temporary that this ignores)."""
    folder = Path(out) / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name)))
    return found[-1][1] if found else None


# -- the loop ----------------------------------------------------------------------------------------

def train(cfg: TrainConfig, *, resume_from: Path | None = None, progress: Progress = NULL) -> dict:
    ctx = distributed.setup(cfg.device)
    try:
        return _train(cfg, ctx, resume_from, progress)
    finally:
        distributed.shutdown(ctx)


def _train(cfg: TrainConfig, ctx: distributed.DistContext, resume_from: Path | None,
           progress: Progress) -> dict:
    out = Path(cfg.out)
    main = ctx.is_main
    device = ctx.device
    report = progress if main else NULL   # every rank polls progress.cancelled; only rank 0 reports

    # ---- model: resumed, initialised from checkpoints, or from scratch
    state: dict = {}
    if resume_from is not None:
        model, state = load_checkpoint(resume_from, device=device)
    else:
        model = build_model(cfg, device)
    if cfg.trains_color and not model.has_color:
        raise InputError("training colour needs a colour net: pass init_c (official net_C) or a checkpoint "
                         "with one, or train from scratch")
    configure_trainable(model, cfg)

    # ---- data: items, per-subject caches (built once, sharded over ranks), loader from this step
    source = open_source(cfg.data)
    items = train_items(source, cfg.levels)
    total = cfg.total_steps(len(items))
    start = int(state.get("step", 0))
    if start >= total:
        raise InputError(f"the run is already at step {start} of {total}; raise --steps to continue it")
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    sids = sorted({sid for sid, _, _ in items})
    for i, sid in enumerate(sids):
        if i % ctx.world_size == ctx.rank:
            load_subject(source, sid, cfg, cache_dir)
            report.report("prepare", (i + 1) / len(sids), subject=sid)
    distributed.barrier(ctx)
    dataset = TrainItems(cfg, items, model.config.load_size, cache_dir)
    sampler = StepSampler(start, total, cfg.batch, ctx.rank, ctx.world_size)
    loader = make_loader(dataset, sampler, cfg.workers, pin_memory=device.type == "cuda")

    # ---- optimisation: PIFu's optimisers, AMP on CUDA, DDP across ranks
    optimizers = make_optimizers(model, cfg)
    use_amp = bool(cfg.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if state:
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        restore_rng(state.get("rng") or {})
    objective: nn.Module = Objective(model, cfg)
    if ctx.distributed:
        # PIFu's ConvBlocks hold a downsample norm they use only when channels change: netG has
        # parameters that never get a gradient, which DDP must be told about.
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.trains_geometry)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast = (torch.autocast(device_type="cuda", dtype=torch.float16) if use_amp else nullcontext())

    # ---- logs (rank 0): config, TensorBoard, history, plot
    log = RunLog(out, enabled=main, history=state.get("history"), purge_step=start if state else None)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        write_json(out / "config.json", cfg.to_dict())
    val_items = _validation_items(source, cfg, model)
    val_subjects: dict = {}  # each validation subject's GT, prepared once for the run
    if main and not state and val_items:
        _run_validation(model, source, val_items, cfg, 0, log, report, val_subjects)
    distributed.barrier(ctx)

    bar = _progress_bar(cfg, main, start, total)
    elapsed_before = float(state.get("elapsed_s", 0.0))
    t0 = time.monotonic()
    acc: dict[str, torch.Tensor] = {}
    acc_n = 0
    last_ckpt: Path | None = resume_from
    last: dict[str, float] = {}
    step = start
    model.train()
    for batch in loader:
        # one optimiser step on this rank's share of the global batch
        lr = lr_at(cfg, step, total)
        for opt in optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            losses = objective(batch)
        scaler.scale(losses["loss"]).backward()
        if cfg.grad_clip is not None:
            for opt in optimizers.values():
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        for opt in optimizers.values():
            scaler.step(opt)
        scaler.update()
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        step += 1

        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + v.detach().float()
        acc_n += 1
        if step % cfg.log_every == 0 or step == total:
            last = distributed.mean_of(ctx, {k: float(v) / acc_n for k, v in acc.items()})
            last["lr"] = lr
            log.log_train(step, last)
            acc, acc_n = {}, 0
        elapsed = time.monotonic() - t0
        eta = elapsed / (step - start) * (total - step)
        if bar is not None:
            bar.update(1)
            if last:
                bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{lr:.1e}")
        report.report("train", step / total, step=step, steps=total, loss=last.get("loss"), lr=lr, eta_s=eta,
                      elapsed_s=elapsed)

        if main and val_items and (step % cfg.val_every == 0 or step == total):
            _run_validation(model, source, val_items, cfg, step, log, report, val_subjects)
            model.train()
        stop = distributed.any_rank(ctx, progress.cancelled)
        if step % cfg.checkpoint_every == 0 or step == total or stop:
            if main:
                last_ckpt = save_training_state(out, model, cfg, step, total, len(items), optimizers, scaler,
                                                log, elapsed_before + time.monotonic() - t0)
                log.flush()
                report.report("checkpoint", step / total, step=step, path=str(last_ckpt))
            distributed.barrier(ctx)
        if stop:
            if bar is not None:
                bar.close()
            log.close()
            raise CancelledError(f"training stopped at step {step} of {total}; checkpoint "
                                 f"{last_ckpt} (resume with --resume {out})")
    if bar is not None:
        bar.close()

    result = {
        "run": str(out), "checkpoint": str(last_ckpt) if last_ckpt else None, "step": step, "steps": total,
        "train": last, "val": log.val[-1] if log.val else {}, "val_initial": log.val[0] if log.val else {},
        "plot": str(out / "training.png"), "tensorboard": str(out / "tensorboard"),
        "elapsed_s": elapsed_before + time.monotonic() - t0, "loss_curve": log.loss_curve(),
    }
    if main:
        write_json(out / "summary.json", result)
        log.close()
        report.report("done", 1.0, step=step, checkpoint=result["checkpoint"], val=result["val"])
    return result


# -- pieces ------------------------------------------------------------------------------------------

class Objective(nn.Module):
    """One training forward pass: encode the batch's images, query the sampled points, return losses.

    While colour is trained alone the geometry net is frozen as in PIFu and the paper: its filter runs in
    eval mode under ``no_grad``. When both are trained, the colour net still reads a detached geometry
    feature, so the colour loss never reaches netG (the same gradients as PIFu's two stages).
    """

    def __init__(self, model: PIFu, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, net_g, net_c = self.cfg, self.model.net_g, self.model.net_c
        images, calibs = batch["image"], batch["calib"]
        if images.dim() == 5:   # several views per item: [B, V, ...] -> the nets' [B*V, ...]
            images, calibs = images.flatten(0, 1), calibs.flatten(0, 1)
        out: dict[str, torch.Tensor] = {}
        if cfg.trains_geometry:
            net_g.filter(images)
            preds = self.model.query_occupancy_stacks(batch["geo_points"], calibs)
            out["occupancy"] = occupancy_loss(preds, batch["geo_labels"], cfg.occupancy_loss)
        else:
            with torch.no_grad():
                net_g.filter(images)
        if cfg.trains_color:
            net_c.filter(images)
            net_c.attach(net_g.get_im_feat().detach())
            if cfg.uses_patches:
                b, m, p = batch["patch_weights"].shape
                pred = net_c.query(batch["patch_points"], calibs).transpose(1, 2).reshape(b, m, p, 3)
                target = batch["patch_targets"].transpose(1, 2).reshape(b, m, p, 3)
                parts = color_loss(cfg.loss, pred, target, batch["patch_weights"], w_l1=cfg.w_l1,
                                   w_ssim=cfg.w_ssim, ssim_variant=cfg.ssim_variant,
                                   ssim_range=cfg.ssim_range, ssim_space=cfg.ssim_space,
                                   min_std=cfg.patch_min_std)
            else:
                pred = net_c.query(batch["color_points"], calibs)
                parts = color_loss("l1", pred, batch["color_targets"])
            out["color"] = parts.pop("loss")
            out.update(parts)
        out["loss"] = out.get("occupancy", 0.0) + out.get("color", 0.0)
        return out


def build_model(cfg: TrainConfig, device: torch.device) -> PIFu:
    """A fresh run's model: a project checkpoint, official nets, or new nets (seeded initialisation)."""
    torch.manual_seed(cfg.seed)
    if cfg.init:
        model, _ = load_checkpoint(cfg.init, device="cpu")
    else:
        preset = ModelConfig.small if cfg.model_preset == "small" else ModelConfig.official
        config = preset(**cfg.model_overrides)
        if cfg.init_g:
            model = load_official(cfg.init_g, cfg.init_c, config=config, device="cpu")
        else:
            model = PIFu(config, with_color=cfg.trains_color)
    if cfg.trains_color and not model.has_color and not cfg.init_c:
        # A geometry-only checkpoint: add a new colour net (PIFu's colour stage starts this way).
        torch.manual_seed(cfg.seed)
        fresh = PIFu(model.config, with_color=True)
        fresh.net_g.load_state_dict(model.net_g.state_dict())
        model = fresh
    return model.to(device)


def configure_trainable(model: PIFu, cfg: TrainConfig) -> None:
    """Gradients only where the stage trains: netG frozen (eval, no grad) while training colour alone."""
    model.freeze_geometry(not cfg.trains_geometry)
    if model.net_c is not None:
        model.net_c.requires_grad_(cfg.trains_color)


def make_optimizers(model: PIFu, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """PIFu's choices: RMSprop for the geometry net (train_shape.py), Adam for the colour net."""
    opts: dict[str, torch.optim.Optimizer] = {}
    if cfg.trains_geometry:
        opts["geometry"] = torch.optim.RMSprop(model.net_g.parameters(), lr=cfg.lr, momentum=0,
                                               weight_decay=0)
    if cfg.trains_color:
        opts["color"] = torch.optim.Adam(model.net_c.parameters(), lr=cfg.lr)
    return opts


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Step decay: ``lr * gamma^k`` after the k-th fraction in ``lr_decay_at`` (PIFu: 0.6, 0.8)."""
    passed = sum(1 for f in cfg.lr_decay_at if step >= math.floor(f * total))
    return cfg.lr * cfg.lr_gamma ** passed


def capture_rng() -> dict:
    """Global RNG states. Sampling never touches them (its generators derive from (seed, g)), and the
    nets have no dropout, so they only matter to user extensions; they are saved for completeness."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "python": _plain(random.getstate()),
    }


def restore_rng(rng: dict) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if "python" in rng:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))


def _plain(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        return [_plain(x) for x in obj]
    return obj


def save_training_state(out: Path, model: PIFu, cfg: TrainConfig, step: int, total: int, items: int,
                        optimizers: dict[str, torch.optim.Optimizer], scaler: torch.amp.GradScaler,
                        log: RunLog, elapsed_s: float) -> Path:
    """Atomic checkpoint of everything exact resume needs; keeps the last ``keep_checkpoints``."""
    samples = step * cfg.batch
    train_state = {
        "step": step,
        "total_steps": total,
        "data": {"samples_seen": samples, "items": items, "epoch": samples / items,
                 "global_batch": cfg.batch, "seed": cfg.seed},
        "config": cfg.to_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "rng": capture_rng(),
        "history": log.state(),
        "elapsed_s": float(elapsed_s),
    }
    path = Path(out) / CHECKPOINTS / f"step-{step:08d}.pt"
    save_checkpoint(path, model, train_state)
    found = sorted((int(m.group(1)), p) for p in path.parent.iterdir() if (m := _CKPT.match(p.name)))
    for _, old in found[:-cfg.keep_checkpoints]:
        old.unlink(missing_ok=True)
    return path


def _validation_items(source, cfg: TrainConfig, model: PIFu) -> list:
    if not cfg.trains_color or not model.has_color:
        return []
    from backend.train.validate import validation_items

    return validation_items(source, cfg)


def _run_validation(model: PIFu, source, items: list, cfg: TrainConfig, step: int, log: RunLog,
                    report: Progress, subjects: dict) -> None:
    from backend.train.validate import validate

    report.report("validate", 0.0, step=step, items=len(items))
    metrics = validate(model, source, items, cfg, subjects)
    if metrics:
        log.log_val(step, metrics)
    report.report("validate", 1.0, step=step, val=metrics)


def _progress_bar(cfg: TrainConfig, main: bool, start: int, total: int):
    if not (main and cfg.progress_bar):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
