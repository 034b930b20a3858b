"""What it takes to rebuild a PIFu pair: the architecture options, stored inside every checkpoint.

The field names follow the official ``lib/options.py`` where one exists (``num_stack``, ``hg_depth`` is
its ``num_hourglass``, ``hourglass_dim``, ``mlp_dim``, ``mlp_dim_color``, ``norm_color``, ``z_size``,
``load_size``), so a user who knows PIFu's options recognises them. Two fields have no official
counterpart because the official code hard-codes them: ``hg_width`` (256, the hourglass trunk) and
``color_ngf`` (64, the ResnetFilter base width); they exist so that :meth:`ModelConfig.small` can shrink
the nets for CPU work. ``norm_groups`` is the GroupNorm group count (official: 32); a layer with fewer
channels than that uses ``gcd(norm_groups, channels)`` groups, which never happens in the official sizes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from backend.errors import InputError

Upsample = Literal["bicubic", "nearest"]
ColorNorm = Literal["group", "instance"]
UPSAMPLE_MODES: tuple[str, ...] = get_args(Upsample)
COLOR_NORMS: tuple[str, ...] = get_args(ColorNorm)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the geometry net (HGPIFuNet) and the colour net (ResBlkPIFuNet).

    ``official()`` reproduces the released checkpoints' options (``scripts/test.sh``); ``small()`` is a
    CPU-sized variant with the same structure.
    """

    # Field lists like TrainConfig's in shape only: each config declares its own settings.
    load_size: int = 512
    """Network input size (square). Feature maps are ``load_size / 4``."""
    num_stack: int = 4
    hg_depth: int = 2
    """Recursion depth of each hourglass (official ``num_hourglass``)."""
    hg_width: int = 256
    """Channels of the hourglass trunk; the stem is hg_width/4 -> /2 -> /2 -> hg_width."""
    hourglass_dim: int = 256
    """Channels of each stack's output feature (the geometry MLP sees these plus z)."""
    norm_groups: int = 32
    upsample: Upsample = "bicubic"
    """Hourglass upsampling: ``bicubic`` (align_corners=True, as committed) or ``nearest``."""
    mlp_dim: tuple[int, ...] = (257, 1024, 512, 256, 128, 1)
    mlp_residual: bool = True
    """Skip-concat of the MLP input into every later layer (official ``no_residual=False``)."""
    color_ngf: int = 64
    color_blocks: int = 6
    norm_color: ColorNorm = "group"
    """``group`` as released, or ``instance`` (the code's default; different checkpoint keys)."""
    mlp_dim_color: tuple[int, ...] = (513, 1024, 512, 256, 128, 3)
    z_size: float = 200.0
    """Depth normalisation: the depth feature is ``z * (load_size // 2) / z_size`` (1.28 z officially)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form notes carried through checkpoints (never used to build the nets)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp_dim", tuple(int(d) for d in self.mlp_dim))
        object.__setattr__(self, "mlp_dim_color", tuple(int(d) for d in self.mlp_dim_color))
        problems = self.problems()
        if problems:
            raise InputError("invalid model config: " + "; ".join(problems))

    # -- derived sizes ---------------------------------------------------------------------------
    @property
    def feature_size(self) -> int:
        """Side of the image feature maps (128 for a 512 input)."""
        return self.load_size // 4

    @property
    def color_feature_dim(self) -> int:
        """Channels of the ResnetFilter output (4 * ngf)."""
        return 4 * self.color_ngf

    @property
    def depth_scale(self) -> float:
        """Multiplier of projected z in the point feature (official DepthNormalizer)."""
        return (self.load_size // 2) / self.z_size

    def problems(self) -> list[str]:
        out = []
        if self.load_size < 16 or self.load_size % 4:
            out.append(f"load_size must be a multiple of 4 and >= 16, got {self.load_size}")
        if self.num_stack < 1:
            out.append(f"num_stack must be >= 1, got {self.num_stack}")
        if self.hg_depth < 1:
            out.append(f"hg_depth must be >= 1, got {self.hg_depth}")
        elif self.feature_size % (2 ** self.hg_depth):
            out.append(f"feature size {self.feature_size} is not divisible by 2**hg_depth")
        if self.hg_width < 16 or self.hg_width % 16:
            out.append(f"hg_width must be a positive multiple of 16, got {self.hg_width}")
        if self.upsample not in UPSAMPLE_MODES:
            out.append(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.norm_color not in COLOR_NORMS:
            out.append(f"norm_color must be one of {COLOR_NORMS}, got {self.norm_color!r}")
        if self.norm_groups < 1:
            out.append(f"norm_groups must be >= 1, got {self.norm_groups}")
        if self.color_ngf < 1 or self.color_blocks < 1:
            out.append("color_ngf and color_blocks must be >= 1")
        if self.z_size <= 0:
            out.append(f"z_size must be > 0, got {self.z_size}")
        if len(self.mlp_dim) < 2 or self.mlp_dim[0] != self.hourglass_dim + 1 or self.mlp_dim[-1] != 1:
            out.append(f"mlp_dim must run from hourglass_dim+1={self.hourglass_dim + 1} to 1, got "
                       f"{list(self.mlp_dim)}")
        expect_c = self.hourglass_dim + self.color_feature_dim + 1
        if len(self.mlp_dim_color) < 2 or self.mlp_dim_color[0] != expect_c or self.mlp_dim_color[-1] != 3:
            out.append(f"mlp_dim_color must run from hourglass_dim+4*color_ngf+1={expect_c} to 3, got "
                       f"{list(self.mlp_dim_color)}")
        if any(d < 1 for d in self.mlp_dim + self.mlp_dim_color):
            out.append("MLP widths must be >= 1")
        return out

    # -- presets ---------------------------------------------------------------------------------
    @classmethod
    def official(cls, **overrides: Any) -> ModelConfig:
        """The released checkpoints' options: 4 stacks, depth 2, 256 ch, group norm in both nets."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides: Any) -> ModelConfig:
        """A CPU-sized pair (about 1/20 of the official compute): 256 input, 2 stacks, 128-ch trunk,
        quarter-width MLPs, a 32-ch colour encoder with 4 blocks. z_size is halved so the depth feature
        keeps the official scale of 1.28 z."""
        base: dict[str, Any] = dict(
            load_size=256, num_stack=2, hg_depth=2, hg_width=128, hourglass_dim=128, norm_groups=16,
            mlp_dim=(129, 256, 128, 64, 32, 1), color_ngf=32, color_blocks=4,
            mlp_dim_color=(257, 256, 128, 64, 32, 3), z_size=100.0,
        )
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mlp_dim"] = list(self.mlp_dim)
        d["mlp_dim_color"] = list(self.mlp_dim_color)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        if not isinstance(d, dict):
            raise InputError(f"model config must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**d)
