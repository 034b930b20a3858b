"""Training what the PIFuHD release does not ship: its fine level and its normal nets (docs/models.md).

* **Coarse level** (filter + MLP, fed the normal nets' predictions) for a model built from scratch.
* **Fine level** on top of a frozen coarse level (the official ``train_full_pifu=False`` mode): items
  of an avatex dataset at the fine input size, the coarse level fed the same image area-resized, and
  the paper's λ-weighted binary cross-entropy on PIFu's geometry samples (uniform plus
  Gaussian-perturbed surface points): ``-mean(λ y log p + (1 - λ)(1 - y) log(1 - p))`` with λ = 1 -
  the share of inside points, so the rare inside points weigh as much as the many outside ones.
* **Normal nets** (``netF``, ``netB``) from the optional normal maps of a dataset rendered with
  ``--normals``: masked L1 plus an L1 on the maps' finite-difference gradients. The paper adds a VGG
  perceptual loss; no pretrained VGG exists offline, and a randomly initialised one has features that
  nothing ties to perceived detail, so the gradient term takes its role: it penalises exactly the
  blurred creases and folds a plain L1 tolerates.

Budgets here are small (CPU); the functions take a step count and report each loss through
``progress`` (stage ``train``) so a caller can log or cancel.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatex_core.progress import NULL, Progress
from backend.data.dataset import Dataset
from backend.errors import InputError
from backend.models.pifuhd import PIFuHD
from backend.train.config import TrainConfig
from backend.train.data import TrainItems, image_tensors, train_items


@dataclass(frozen=True)
class HDTrainSettings:
    """One training run of a PIFuHD part: ``steps`` Adam steps of ``batch`` items at ``lr``."""

    steps: int = 100
    batch: int = 2
    lr: float = 1e-3
    points: int = 2000
    """Geometry samples per item (fine level)."""
    w_grad: float = 1.0
    """Weight of the gradient L1 in the normal loss (the perceptual-loss substitute)."""
    seed: int = 0
    levels: tuple[str, ...] | None = None
    dense_samples: int = 200_000
    """Per-subject inside/outside samples the geometry sampler is built from (as TrainConfig)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.points < 16 or not self.lr > 0:
            raise InputError("steps and batch must be >= 1, points >= 16 and lr > 0")


def weighted_bce(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The paper's occupancy loss on [B, 1, N] probabilities and {0, 1} labels, λ per item."""
    lam = 1.0 - labels.mean(dim=(1, 2), keepdim=True)
    p = pred.clamp(1e-6, 1 - 1e-6)
    return -(lam * labels * torch.log(p) + (1 - lam) * (1 - labels) * torch.log(1 - p)).mean()


def normal_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, w_grad: float = 1.0
                ) -> torch.Tensor:
    """Masked L1 of [B, 3, H, W] normal maps plus ``w_grad`` x the L1 of their x/y differences."""
    m = mask.expand_as(pred)
    area = m.sum().clamp_min(1.0)
    l1 = ((pred - target).abs() * m).sum() / area
    if w_grad == 0:
        return l1
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    gx = ((dx(pred) - dx(target)).abs() * (m[..., :, 1:] * m[..., :, :-1])).sum()
    gy = ((dy(pred) - dy(target)).abs() * (m[..., 1:, :] * m[..., :-1, :])).sum()
    return l1 + w_grad * (gx + gy) / area


def train_fine(model: PIFuHD, data: str | Path, settings: HDTrainSettings, *,
               cache_dir: str | Path | None = None, device: str | torch.device = "cpu",
               progress: Progress = NULL) -> list[float]:
    """Train the fine level (``image_filter`` + ``mlp``) with the coarse level frozen; returns the
    loss of every step. The model is left in eval mode on ``device``."""
    return _train_level(model, data, settings, "fine", cache_dir, device, progress)


def train_coarse(model: PIFuHD, data: str | Path, settings: HDTrainSettings, *,
                 cache_dir: str | Path | None = None, device: str | torch.device = "cpu",
                 progress: Progress = NULL) -> list[float]:
    """Train the coarse level's filter and MLP (the release ships it trained; a model built from
    scratch needs it before its fine level), fed the normal nets' predictions as at inference."""
    return _train_level(model, data, settings, "coarse", cache_dir, device, progress)


def _train_level(model: PIFuHD, data: str | Path, settings: HDTrainSettings, level: str,
                 cache_dir: str | Path | None, device: str | torch.device, progress: Progress) -> list[float]:
    dev = torch.device(device)
    model.to(dev)
    coarse = level == "coarse"
    trained = [model.netG.image_filter, model.netG.mlp] if coarse else [model.image_filter, model.mlp]
    model.requires_grad_(False)
    for m in trained:
        m.requires_grad_(True)
    opt = torch.optim.Adam([p for m in trained for p in m.parameters()], lr=settings.lr)
    size = model.opt_netG.loadSize if coarse else model.load_size
    small = model.opt_netG.loadSize
    losses = []
    with tempfile.TemporaryDirectory() as tmp:
        # nothing is written to "out": TrainItems only reads the dataset (and caches under cache_dir)
        cfg = TrainConfig.from_dict({"data": str(data), "out": str(Path(tmp) / "run"), "stage": "geometry",
                                     "seed": settings.seed, "points_geometry": settings.points,
                                     "dense_samples": settings.dense_samples, "progress_bar": False})
        ds = TrainItems(cfg, train_items(_source(data), settings.levels), size,
                        Path(cache_dir) if cache_dir else Path(tmp))
        for step in range(settings.steps):
            progress.check("PIFuHD training cancelled")
            batch = [ds[step * settings.batch + j] for j in range(settings.batch)]
            img = torch.stack([b["image"] for b in batch]).to(dev)
            pts = torch.stack([b["geo_points"] for b in batch]).to(dev)
            lab = torch.stack([b["geo_labels"] for b in batch]).to(dev)
            calib = torch.stack([b["calib"] for b in batch]).to(dev)
            if coarse:
                model.netG.train()
                model.netG.filter(img)
                model.netG.query(pts, calib)
                preds = model.netG.preds_list
            else:
                model.train()
                model.encode(img, F.interpolate(img, size=(small, small), mode="area"))
                model.query(pts, calib)
                preds = model.preds_list
            loss = sum(weighted_bce(p, lab) for p in preds) / len(preds)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            progress.report("train", (step + 1) / settings.steps, step=step + 1, loss=losses[-1])
    model.requires_grad_(True)
    model.eval()
    return losses


def normal_items(data: str | Path, levels: tuple[str, ...] | None = None, split: str = "train"
                 ) -> list[tuple[str, int, str]]:
    """The (subject, view, level) items of ``split`` whose view has normal maps; an error if none do."""
    ds = Dataset(data)
    items = [(i.subject, i.view, i.level) for i in ds.items(split, list(levels) if levels else None)
             if ds.normal_maps(i.subject, i.view) is not None]
    if not items:
        raise InputError(f"{data}: no {split} view has normal maps; render the dataset with --normals")
    return items


def normal_batch(ds: Dataset, items: list[tuple[str, int, str]], size: int) -> dict[str, torch.Tensor]:
    """Images [B, 3, S, S] (network input), front/back targets [B, 3, S, S] and masks [B, 1, S, S]."""
    imgs, fronts, backs, masks = [], [], [], []
    for sid, view, level in items:
        image, mask = image_tensors(ds.image(sid, view, level), size)
        front, back = ds.normal_maps(sid, view)
        imgs.append(image)
        masks.append(mask)
        for maps, n in ((fronts, front), (backs, back)):
            t = torch.from_numpy(np.ascontiguousarray(n.transpose(2, 0, 1)))[None]
            maps.append(F.interpolate(t, size=(size, size), mode="area")[0] if t.shape[-1] != size else t[0])
    return {"image": torch.stack(imgs), "front": torch.stack(fronts), "back": torch.stack(backs),
            "mask": (torch.stack(masks) > 0.5).float()}


def train_normals(model: PIFuHD, data: str | Path, settings: HDTrainSettings, *,
                  device: str | torch.device = "cpu", progress: Progress = NULL) -> list[float]:
    """Train ``netF`` and ``netB`` on the dataset's normal maps at the coarse input size; returns the
    summed front + back loss of every step."""
    nets = [n for n in (model.netG.netF, model.netG.netB) if n is not None]
    if len(nets) != 2:
        raise InputError("this PIFuHD has no front and back normal nets (use_front/back_normal off)")
    dev = torch.device(device)
    model.to(dev)
    for n in nets:
        n.train()
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=settings.lr, betas=(0.5, 0.999))
    ds = Dataset(data)
    items = normal_items(data, settings.levels)
    rng = np.random.default_rng(settings.seed)
    size = model.opt_netG.loadSize
    losses = []
    for step in range(settings.steps):
        progress.check("PIFuHD training cancelled")
        pick = [items[int(k)] for k in rng.integers(0, len(items), settings.batch)]
        b = {k: v.to(dev) for k, v in normal_batch(ds, pick, size).items()}
        loss = (normal_loss(model.netG.netF(b["image"]), b["front"], b["mask"], settings.w_grad)
                + normal_loss(model.netG.netB(b["image"]), b["back"], b["mask"], settings.w_grad))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        progress.report("train", (step + 1) / settings.steps, step=step + 1, loss=losses[-1])
    model.eval()
    return losses


def _source(data: str | Path):
    from backend.train.source import open_source

    return open_source(str(data))
