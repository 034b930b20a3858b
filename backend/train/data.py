"""Training data: (subject, view, level) items of a relit dataset with their sampled points and targets.

Determinism is by construction, not by seeding workers: global sample number ``g = step * B + j`` (B the
global batch, j its slot in the batch) fully decides the item (``g``'s place in the permutation of
epoch ``g // items``) and its random points (``numpy.random.default_rng([seed, g])``). So

* a resumed run that restarts at step s sees exactly the samples the uninterrupted run saw,
* N ranks taking slots ``[r*B/N, (r+1)*B/N)`` of each step see the single-process global batch, and
* the number of DataLoader workers changes nothing but speed.

Workers are persistent and keep each subject's sampling state (:class:`~backend.train.cache.SubjectSampling`)
in memory once loaded from the disk cache, so an item costs an image decode plus index draws. The memory
is bounded in bytes (``SUBJECT_MEMORY`` per worker, least recently used out first), not in subjects: a
count sized for small meshes thrashes on a population of textured avatars, and every reload re-reads the
GT mesh and rebuilds its k-d tree (about a third of a second on a CPU core).
"""

from __future__ import annotations

import signal
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from backend.data import sampling
from backend.errors import InputError
from backend.recon.framing import network_image
from backend.train.cache import SubjectSampling
from backend.train.config import TrainConfig
from backend.train.source import DataSource, open_source

Item = tuple[str, int, str]
"""(subject id, view index, lighting level)."""


def train_items(source: DataSource, levels: Sequence[str] | None, split: str = "train") -> list[Item]:
    """Every (subject, view, level) of a split, in a fixed order."""
    available = source.levels()
    levels = list(levels) if levels else list(available)
    unknown = [lv for lv in levels if lv not in available]
    if unknown:
        raise InputError(f"level(s) {', '.join(unknown)} not in the dataset (it has {', '.join(available)})")
    subjects = source.subjects(split)
    if not subjects:
        raise InputError(f"the dataset has no {split!r} subjects")
    return [(sid, v, lv) for sid in subjects for v in source.views(sid) for lv in levels]


def image_tensors(rgba: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGBA (H, W, 4) -> (image [3, S, S] in [-1, 1] times the mask, mask [1, S, S] in [0, 1]).

    PIFu's preprocessing, :func:`backend.recon.framing.network_image` (the definition reconstruction
    shares): RGB to [-1, 1], then multiplied by the mask (background 0). A render of a different size is
    resized (bilinear, antialiased); calibs are resolution-free.
    """
    if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise InputError(f"expected an RGB(A) image, got shape {rgba.shape}")
    t = torch.from_numpy(np.array(rgba, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    rgb = t[:3]
    mask = t[3:4] if t.shape[0] == 4 else torch.ones_like(t[:1])
    if rgb.shape[1:] != (size, size):
        both = torch.cat([rgb, mask]).unsqueeze(0)
        both = torch.nn.functional.interpolate(both, size=(size, size), mode="bilinear",
                                               align_corners=False, antialias=True)[0]
        rgb, mask = both[:3], both[3:4].clamp(0, 1)
    return network_image(rgb, mask), mask


@dataclass(frozen=True)
class Layout:
    """What one item holds (derived from the config): point counts and which parts are present."""

    geometry: bool
    color_points: bool
    patches: bool

    @classmethod
    def of(cls, cfg: TrainConfig) -> Layout:
        return cls(geometry=cfg.trains_geometry, color_points=cfg.trains_color and not cfg.uses_patches,
                   patches=cfg.uses_patches)


SUBJECT_MEMORY = 2 << 30
"""Bytes of subject sampling state one data worker keeps (about 24 MB per textured 1024² avatar at the
default 200k dense samples: the 60-avatar library fits)."""


class TrainItems(torch.utils.data.Dataset):
    """Map-style dataset indexed by the global sample number ``g`` (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, items: list[Item], image_size: int, cache_dir: Path,
                 memory_bytes: int = SUBJECT_MEMORY) -> None:
        self.cfg = cfg
        self.items = items
        self.image_size = image_size
        self.cache_dir = Path(cache_dir)
        self.layout = Layout.of(cfg)
        self.memory_bytes = int(memory_bytes)
        self._source: DataSource | None = None
        self._subjects: OrderedDict[str, SubjectSampling] = OrderedDict()
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 2 ** 62  # indexed by global sample number, not by item

    # -- state held per worker process ------------------------------------------------------------
    @property
    def source(self) -> DataSource:
        if self._source is None:
            self._source = open_source(self.cfg.data)
        return self._source

    def subject(self, sid: str) -> SubjectSampling:
        if sid in self._subjects:
            self._subjects.move_to_end(sid)
            return self._subjects[sid]
        return self.remember(sid, load_subject(self.source, sid, self.cfg, self.cache_dir))

    def remember(self, sid: str, state: SubjectSampling) -> SubjectSampling:
        """Keep ``state`` as the most recent subject; drop the least recent ones over the byte budget
        (the newest always stays)."""
        self._subjects[sid] = state
        self._subjects.move_to_end(sid)
        while len(self._subjects) > 1 and self.held_bytes() > self.memory_bytes:
            self._subjects.popitem(last=False)
        return state

    def held_bytes(self) -> int:
        return sum(s.nbytes for s in self._subjects.values())

    def item_of(self, g: int) -> Item:
        epoch, pos = divmod(int(g), len(self.items))
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.cfg.seed, 0x5EED, epoch])
            self._perm = (epoch, rng.permutation(len(self.items)))
        return self.items[int(self._perm[1][pos])]

    # -- one sample ------------------------------------------------------------------------------------
    def __getitem__(self, g: int) -> dict[str, torch.Tensor]:
        sid, view, level = self.item_of(g)
        rng = np.random.default_rng([self.cfg.seed, int(g)])
        if self.cfg.num_views == 1:
            image, mask = image_tensors(self.source.rgba(sid, view, level), self.image_size)
            calib = torch.as_tensor(self.source.calib(sid, view), dtype=torch.float32)
        else:
            # [V, ...] per item; the objective flattens the batch to the nets' [B*V, ...] layout.
            ks = spread_views(self.source.views(sid), view, self.cfg.num_views, sid)
            views = [image_tensors(self.source.rgba(sid, k, level), self.image_size) for k in ks]
            image, mask = torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views])
            calib = torch.stack([torch.as_tensor(self.source.calib(sid, k), dtype=torch.float32) for k in ks])
        out: dict[str, torch.Tensor] = {"image": image, "mask": mask, "calib": calib,
                                        "index": torch.tensor(int(g))}
        subj = self.subject(sid)
        out.update(sample_points(subj, self.cfg, self.layout, rng))
        return out


def spread_views(available: Sequence[int], view: int, num_views: int, sid: str = "") -> list[int]:
    """``view`` and ``num_views - 1`` more of the subject's views, evenly spaced around its list, as the
    official multi-view training picks them (offsets of ``len // num_views`` positions)."""
    available = list(available)
    if num_views > len(available):
        raise InputError(f"num_views = {num_views} but subject {sid} has {len(available)} rendered view(s)")
    start = available.index(view)
    step = len(available) // num_views
    return [available[(start + step * k) % len(available)] for k in range(num_views)]


def sample_points(subj: SubjectSampling, cfg: TrainConfig, layout: Layout, rng: np.random.Generator
                  ) -> dict[str, torch.Tensor]:
    """The sampled points and targets of one item, channels-first as the nets take them:
    ``geo_points`` [3, N] + ``geo_labels`` [1, N]; ``color_points`` [3, N] + ``color_targets`` [3, N]
    in [-1, 1]; ``patch_points`` [3, M*P] + ``patch_targets`` [3, M*P] + ``patch_weights`` [M, P]."""
    out: dict[str, torch.Tensor] = {}
    if layout.geometry:
        if subj.pool is None:
            raise RuntimeError("geometry sampling needs the subject's geometry pool")
        pts, lab = sampling.geometry_points(subj.pool, cfg.points_geometry, rng)
        out["geo_points"] = torch.from_numpy(pts.T.copy())
        out["geo_labels"] = torch.from_numpy(lab[None].copy())
    if layout.color_points:
        pts, col = sampling.color_points(subj.surface, cfg.points_color, rng, cfg.sigma_color)
        out["color_points"] = torch.from_numpy(pts.T.copy())
        out["color_targets"] = torch.from_numpy((col * 2.0 - 1.0).T.copy())
    if layout.patches:
        pat = sampling.patches(subj.mesh, subj.surface, cfg.patches, cfg.patch_k, cfg.patch_spacing, rng,
                               sigma=cfg.sigma_patch, mode=cfg.patch_mode, weighting=cfg.patch_weighting,
                               vnormals=subj.vnormals, kdtree=subj.kdtree, ring=subj.ring)
        m, p = pat.weights.shape
        out["patch_points"] = torch.from_numpy(pat.points.reshape(m * p, 3).T.copy())
        out["patch_targets"] = torch.from_numpy((pat.colors.reshape(m * p, 3) * 2.0 - 1.0).T.copy())
        out["patch_weights"] = torch.from_numpy(pat.weights)
    return out


def load_subject(source: DataSource, sid: str, cfg: TrainConfig, cache_dir: Path) -> SubjectSampling:
    """A subject's sampling state: GT mesh from the dataset, heavy parts from the disk cache."""
    return SubjectSampling.build(
        source.mesh(sid), dense_samples=cfg.dense_samples, geometry=cfg.trains_geometry,
        pool_surface=cfg.pool_surface, pool_uniform=cfg.pool_uniform, sigma_geometry=cfg.sigma_geometry,
        cache_dir=cache_dir)


class StepSampler(Sampler[int]):
    """Global sample numbers of this rank's share of each step, from ``start_step`` to ``total_steps``."""

    def __init__(self, start_step: int, total_steps: int, global_batch: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if global_batch % world_size:
            raise InputError(f"the global batch ({global_batch}) must be divisible by the number of "
                             f"processes ({world_size})")
        self.start, self.total = start_step, total_steps
        self.global_batch = global_batch
        self.local = global_batch // world_size
        self.offset = rank * self.local

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.total):
            base = step * self.global_batch + self.offset
            yield from range(base, base + self.local)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.local


def make_loader(dataset: TrainItems, sampler: StepSampler, workers: int, pin_memory: bool) -> DataLoader:
    """Batches of this rank's share of each step; worker processes prefetch so the device never waits.

    Workers ignore SIGINT, so a first Ctrl-C reaches only the training loop (which checkpoints and
    stops). They fork from the main process, except when other threads run in it (the server): then
    they are spawned, since forking a multi-threaded process is unsafe.
    """
    kwargs: dict = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=2, worker_init_fn=_ignore_sigint,
                      multiprocessing_context=None if threading.active_count() == 1 else "spawn")
    return DataLoader(dataset, batch_size=sampler.local, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=False, **kwargs)



def _ignore_sigint(worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
