"""PIFuHD behind the reconstruction pipeline's model interface, with colours from a PIFu colour net.

:func:`backend.recon.reconstruct` drives a model through ``config.load_size`` (the framing size),
``encode``, ``query_occupancy``, ``net_c`` / ``query_color`` and ``device``. :class:`PIFuHDRecon` gives
PIFuHD that interface: the subject is framed at the fine level's 1024² (the official framing, scaled),
the coarse level sees that image area-resized to 512², and geometry is the fine level's occupancy on
the usual coarse-to-fine grid. PIFuHD has no colour net, so colours come from an optional PIFu pair
encoding the same framed image at its own input size (its colour net reads its own geometry net's
features); without one they are the input image at each vertex's projection, as the official
``gen_mesh_imgColor`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from backend.errors import InputError, NotAvailableError
from backend.models.pifu import PIFu
from backend.models.pifuhd import PIFuHD, load_pifuhd
from backend.weights import pifuhd_checkpoint


@dataclass(frozen=True)
class ReconSizes:
    """What the pipeline reads from ``model.config``: the framing size and the colour features' side."""

    load_size: int
    feature_size: int


class PIFuHDRecon(nn.Module):
    """A :class:`PIFuHD` plus an optional :class:`PIFu` whose colour net colours the vertices."""

    def __init__(self, hd: PIFuHD, color: PIFu | None = None) -> None:
        super().__init__()
        if color is not None and not color.has_color:
            raise InputError("the colour checkpoint has no colour net (net_c)")
        self.hd = hd
        self.color = color
        feature = color.config.feature_size if color is not None else hd.opt.loadSizeBig // 2
        self.config = ReconSizes(load_size=hd.load_size, feature_size=feature)

    @property
    def device(self) -> torch.device:
        return self.hd.device

    @property
    def net_c(self) -> nn.Module | None:
        return None if self.color is None else self.color.net_c

    def encode(self, images: torch.Tensor, *, channels_last: bool | None = None) -> None:
        """Encode the framed [B, 3, 1024, 1024] network input for geometry and, resized to the colour
        model's size, for colour."""
        self.hd.encode(images)
        if self.color is not None:
            size = self.color.config.load_size
            small = images if images.shape[-1] == size else F.interpolate(images, size=(size, size),
                                                                          mode="area")
            self.color.encode(small, channels_last=channels_last)

    def query_occupancy(self, points: torch.Tensor, calibs: torch.Tensor, *, fast: bool = False
                        ) -> torch.Tensor:
        return self.hd.query(points, calibs)

    def query_color(self, points: torch.Tensor, calibs: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        if self.color is None:
            raise NotAvailableError("no colour model: pass a PIFu checkpoint with a colour net")
        return self.color.query_color(points, calibs, fast=fast)


def load_pifuhd_recon(checkpoint: str | Path | None, color_checkpoint: str | Path | None = None,
                      device: str | torch.device | None = None) -> PIFuHDRecon:
    """The PIFuHD release-layout file (default: the fetched weights) and an optional avatex PIFu
    checkpoint with a colour net, ready for :func:`backend.recon.reconstruct`."""
    from backend.models.checkpoint import load_checkpoint

    path = Path(checkpoint) if checkpoint is not None else pifuhd_checkpoint()
    hd, _ = load_pifuhd(path, device=device)
    color = None
    if color_checkpoint is not None:
        color, _ = load_checkpoint(color_checkpoint, device=device)
    return PIFuHDRecon(hd, color).to(hd.device)
