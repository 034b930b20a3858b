"""The loss options' names, as ``Literal`` types and tuples.

Kept apart from :mod:`backend.train.losses` (which needs torch) so that building a config or the CLI's
parser, which every ``avatex`` command does, never imports torch.
"""

from __future__ import annotations

from typing import Literal, get_args

SsimVariant = Literal["local", "seed"]
SsimRange = Literal["signed", "unit"]
SsimSpace = Literal["srgb", "lab"]
ColorLoss = Literal["l1", "ssim", "l1+ssim"]
OccupancyLoss = Literal["mse", "bce"]
SSIM_VARIANTS: tuple[str, ...] = get_args(SsimVariant)
SSIM_RANGES: tuple[str, ...] = get_args(SsimRange)
SSIM_SPACES: tuple[str, ...] = get_args(SsimSpace)
COLOR_LOSSES: tuple[str, ...] = get_args(ColorLoss)
OCCUPANCY_LOSSES: tuple[str, ...] = get_args(OccupancyLoss)
