"""The colour net's image encoder: the encoder half of CycleGAN's ResnetGenerator (official
``ResBlkPIFuNet.py``), as one ``nn.Sequential`` named ``model`` so indices match the checkpoints."""

from __future__ import annotations

import math

import torch
from torch import nn


def color_norm(kind: str, channels: int, groups: int = 32) -> nn.Module:
    """``group``: GroupNorm(32, C), affine (the release). ``instance``: InstanceNorm2d without affine
    parameters or running stats (the code's default), which is why its convs carry biases instead."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"unknown colour norm {kind!r}")


class ResnetBlock(nn.Module):
    """``x + [pad, conv3, norm, ReLU, pad, conv3, norm]`` with reflect padding; the last block of the
    encoder omits its final norm (official ``last=True``)."""

    def __init__(self, dim: int, norm: str, use_bias: bool, last: bool = False, groups: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
            color_norm(norm, dim, groups),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
        ]
        if not last:
            layers.append(color_norm(norm, dim, groups))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetFilter(nn.Module):
    """7x7 stem, two stride-2 convs (ngf -> 4 ngf channels at 1/4 resolution), ``n_blocks`` ResnetBlocks."""

    def __init__(self, ngf: int = 64, n_blocks: int = 6, norm: str = "group", groups: int = 32,
                 use_tanh: bool = False) -> None:
        super().__init__()
        use_bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, kernel_size=7, padding=0, bias=use_bias),
            color_norm(norm, ngf, groups),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2 ** i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                color_norm(norm, ngf * mult * 2, groups),
                nn.ReLU(True),
            ]
        for i in range(n_blocks):
            layers.append(ResnetBlock(ngf * 4, norm, use_bias, last=(i == n_blocks - 1), groups=groups))
        if use_tanh:
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
