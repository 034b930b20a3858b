"""Building blocks shared by the PIFu nets: normalisation, PIFu's ConvBlock, projection and sampling.

Module names and registration order reproduce the official ``lib/net_util.py`` / ``lib/geometry.py`` so
that ``state_dict()`` keys are exactly the released checkpoints' keys (docs/models.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups (32 officially), reduced to a divisor for narrow layers."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """PIFu's pre-activation block: three (norm, ReLU, 3x3 conv) branches of C/2, C/4, C/4 channels,
    concatenated, plus a residual.

    ``bn4`` is always created, as in the official code, so it appears in the state_dict even where it is
    unused (in == out); where the residual needs a projection, ``downsample`` is ``Sequential(bn4, ReLU,
    1x1 conv)`` holding the *same* ``bn4`` module, so its parameters appear twice (``bn4.*`` and
    ``downsample.0.*``). Keeping that aliasing is what makes the official checkpoints load strictly.
    """

    def __init__(self, in_planes: int, out_planes: int, groups: int = 32) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, out_planes // 2)
        self.conv2 = conv3x3(out_planes // 2, out_planes // 4)
        self.conv3 = conv3x3(out_planes // 4, out_planes // 4)
        self.bn1 = group_norm(in_planes, groups)
        self.bn2 = group_norm(out_planes // 2, groups)
        self.bn3 = group_norm(out_planes // 4, groups)
        self.bn4 = group_norm(in_planes, groups)
        if in_planes != out_planes:
            self.downsample: nn.Module | None = nn.Sequential(
                self.bn4, nn.ReLU(True), nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, bias=False)
            )
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        out = torch.cat([out1, out2, out3], 1)
        residual = x if self.downsample is None else self.downsample(x)
        return out + residual


def orthogonal(points: torch.Tensor, calibs: torch.Tensor) -> torch.Tensor:
    """PIFu's orthographic projection: ``calib[:, :3, :3] @ p + calib[:, :3, 3]`` for points [B, 3, N]."""
    return torch.baddbmm(calibs[:, :3, 3:4], calibs[:, :3, :3], points)


def index(feat: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear feature lookup at normalised image coordinates uv [B, 2, N] -> [B, C, N].

    ``align_corners=True`` (uv = +-1 are the centres of the border pixels) and zero padding, exactly the
    official ``index``.
    """
    grid = uv.transpose(1, 2).unsqueeze(2)  # [B, N, 1, 2]
    samples = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return samples[:, :, :, 0]


def bilinear_rows(table: torch.Tensor, height: int, width: int, uv: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same lookup as :func:`index` on a row table: ``table`` [H*W, S] (channels-last), uv [N, 2]
    -> ([N, S] samples, [N] sum of the weights of in-image neighbours).

    Written as a weighted sum of the four neighbouring rows (one fused ``embedding_bag``), which reads
    whole contiguous rows instead of striding over channels: the fast query path samples 1,900+ channels
    per point. Out-of-image neighbours get weight 0, as with ``grid_sample``'s zero padding; the weight
    sum is 1 inside the image and smaller outside it.
    """
    px = (uv[:, 0] + 1.0) * (0.5 * (width - 1))
    py = (uv[:, 1] + 1.0) * (0.5 * (height - 1))
    x0f = torch.floor(px)
    y0f = torch.floor(py)
    fx = px - x0f
    fy = py - y0f
    x0 = x0f.long()
    y0 = y0f.long()
    idx = []
    wts = []
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        yc = y0 + dy
        vy = (yc >= 0) & (yc < height)
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xc = x0 + dx
            valid = vy & (xc >= 0) & (xc < width)
            idx.append(yc.clamp(0, height - 1) * width + xc.clamp(0, width - 1))
            wts.append(wy * wx * valid.to(uv.dtype))
    index_ = torch.stack(idx, 1)
    weight = torch.stack(wts, 1).to(table.dtype)
    rows = F.embedding_bag(index_, table, per_sample_weights=weight, mode="sum")
    return rows, weight.sum(1)


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """The official ``init_net``: normal(0, gain) conv/linear weights, zero biases; BatchNorm (1, gain)."""
    for m in net.modules():
        name = type(m).__name__
        if ("Conv" in name or "Linear" in name) and hasattr(m, "weight"):
            nn.init.normal_(m.weight, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
