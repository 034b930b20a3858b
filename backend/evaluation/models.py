"""The models of an evaluation: checkpoints resolved and loaded, grouped by identical geometry.

Colour fine-tuning freezes the geometry net, so a baseline and its L1 / patch-SSIM fine-tunes usually
share ``net_g`` bit for bit. Their reconstructions of an image then have the same occupancy field and the
same mesh: only the colours differ. :func:`geometry_key` hashes what decides the mesh (the geometry
net's weights and the configuration fields that shape its input and query), so the evaluation
reconstructs once per group and only re-queries colours for the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.errors import InputError
from backend.models import PIFu

GEOMETRY_CONFIG_FIELDS = ("load_size", "num_stack", "hg_depth", "hg_width", "hourglass_dim", "norm_groups",
                          "upsample", "mlp_dim", "mlp_residual", "z_size")
"""ModelConfig fields that change what the geometry net computes (the colour fields do not)."""

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class LoadedModel:
    """One evaluated model: display name, checkpoint file, the PIFu, and its geometry group key."""

    name: str
    checkpoint: Path
    model: PIFu
    geometry: str


def slug(name: str) -> str:
    """A file-name-safe form of a model name (folder of its meshes)."""
    text = _SAFE.sub("_", str(name)).strip("._")
    return text or "model"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder meaning its last checkpoint (``RUN/checkpoints/step-*.pt``)."""
    from backend.train.loop import latest_checkpoint

    p = Path(path)
    if p.is_dir():
        found = latest_checkpoint(p)
        if found is None:
            raise InputError(f"{p} is a folder without checkpoints (expected {p}/checkpoints/step-*.pt "
                             "from avatex train)")
        return found
    if not p.is_file():
        raise InputError(f"checkpoint not found: {p}")
    return p


def load_model(name: str, path: str | Path, device: torch.device) -> LoadedModel:
    """Load a project checkpoint (``load_checkpoint``) and key its geometry."""
    from backend.models.checkpoint import load_checkpoint

    ckpt = resolve_checkpoint(path)
    try:
        model, _ = load_checkpoint(ckpt, device=device)
    except InputError as exc:
        raise InputError(f"model {name!r}: {exc}") from None
    except Exception as exc:  # torch.load's own errors on files that are not even zip/pickle archives
        raise InputError(f"model {name!r}: {ckpt} is not a readable checkpoint "
                         f"({type(exc).__name__}: {exc})") from exc
    if model.net_c is None:
        raise InputError(f"model {name!r} ({ckpt}) has no colour net: a texture evaluation needs one")
    return LoadedModel(name=str(name), checkpoint=ckpt, model=model.eval(), geometry=geometry_key(model))


def geometry_key(model: PIFu) -> str:
    """SHA-256 (16 hex digits) of the geometry net's state_dict (names, dtypes, shapes, bytes) and the
    geometry-relevant configuration."""
    h = hashlib.sha256()
    cfg = model.config.to_dict()
    h.update(json.dumps({k: cfg.get(k) for k in GEOMETRY_CONFIG_FIELDS}, sort_keys=True).encode())
    for key, tensor in model.net_g.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def group_by_geometry(models: list[LoadedModel]) -> list[list[LoadedModel]]:
    """Models grouped by geometry key, groups and members in the given order."""
    groups: dict[str, list[LoadedModel]] = {}
    for m in models:
        groups.setdefault(m.geometry, []).append(m)
    return list(groups.values())


def unique_slugs(names: list[str]) -> dict[str, str]:
    """name -> folder name, made unique (``a``, ``a_2``) where two names collapse to the same slug."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = slug(name)
        s, i = base, 2
        while s in used:
            s, i = f"{base}_{i}", i + 1
        used.add(s)
        out[name] = s
    return out
