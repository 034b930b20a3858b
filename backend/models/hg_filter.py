"""The stacked-hourglass image encoder of the geometry net (official ``lib/model/HGFilters.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.blocks import ConvBlock, group_norm
from backend.models.config import ModelConfig


class HourGlass(nn.Module):
    """Recursive hourglass of ConvBlocks: ``b1_L(x) + up(b3_L(inner(b2_L(avgpool(x)))))``.

    Sub-modules are registered in the official order (``b1_2, b2_2, b1_1, b2_1, b2_plus_1, b3_1, b3_2`` for
    depth 2) so the state_dict matches. ``upsample`` is the switch the official code comments on:
    ``bicubic`` (align_corners=True, as committed) or ``nearest``.
    """

    def __init__(self, depth: int, features: int, groups: int = 32, upsample: str = "bicubic") -> None:
        super().__init__()
        self.depth = depth
        self.features = features
        self.upsample = upsample
        self._generate(depth, groups)

    def _generate(self, level: int, groups: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(self.features, self.features, groups))
        self.add_module(f"b2_{level}", ConvBlock(self.features, self.features, groups))
        if level > 1:
            self._generate(level - 1, groups)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(self.features, self.features, groups))
        self.add_module(f"b3_{level}", ConvBlock(self.features, self.features, groups))

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up1 = self._modules[f"b1_{level}"](x)
        low1 = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        inner = (lambda t: self._forward(level - 1, t)) if level > 1 else self._modules[f"b2_plus_{level}"]
        low2 = inner(low1)
        low3 = self._modules[f"b3_{level}"](low2)
        if self.upsample == "nearest":
            up2 = F.interpolate(low3, scale_factor=2, mode="nearest")
        else:
            up2 = F.interpolate(low3, scale_factor=2, mode="bicubic", align_corners=True)
        return up1 + up2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.depth, x)


class HGFilter(nn.Module):
    """Stem (7x7/2 conv, ConvBlocks, avg-pool) and ``num_stack`` hourglasses with intermediate outputs.

    ``forward`` returns ``(outputs, tmpx, normx)`` like the official filter: one
    [B, hourglass_dim, load_size/4, load_size/4] feature per stack, the detached 1/2-resolution stem
    feature and the 1/4-resolution one. Only the ``ave_pool`` downsampling of the release is built.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        w, g = c.hg_width, c.norm_groups
        self.num_modules = c.num_stack
        self.conv1 = nn.Conv2d(3, w // 4, kernel_size=7, stride=2, padding=3)
        self.bn1 = group_norm(w // 4, g)
        self.conv2 = ConvBlock(w // 4, w // 2, g)
        self.conv3 = ConvBlock(w // 2, w // 2, g)
        self.conv4 = ConvBlock(w // 2, w, g)
        for i in range(c.num_stack):
            self.add_module(f"m{i}", HourGlass(c.hg_depth, w, g, c.upsample))
            self.add_module(f"top_m_{i}", ConvBlock(w, w, g))
            self.add_module(f"conv_last{i}", nn.Conv2d(w, w, kernel_size=1, stride=1, padding=0))
            self.add_module(f"bn_end{i}", group_norm(w, g))
            self.add_module(f"l{i}", nn.Conv2d(w, c.hourglass_dim, kernel_size=1, stride=1, padding=0))
            if i < c.num_stack - 1:
                self.add_module(f"bl{i}", nn.Conv2d(w, w, kernel_size=1, stride=1, padding=0))
                self.add_module(f"al{i}", nn.Conv2d(c.hourglass_dim, w, kernel_size=1, stride=1, padding=0))

    def set_upsample(self, mode: str) -> None:
        for i in range(self.num_modules):
            self._modules[f"m{i}"].upsample = mode

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)), True)
        tmpx = x
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        normx = x
        x = self.conv4(self.conv3(x))
        previous = x
        outputs = []
        for i in range(self.num_modules):
            hg = self._modules[f"m{i}"](previous)
            ll = self._modules[f"top_m_{i}"](hg)
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)), True)
            tmp_out = self._modules[f"l{i}"](ll)
            outputs.append(tmp_out)
            if i < self.num_modules - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](tmp_out)
        return outputs, tmpx.detach(), normx
