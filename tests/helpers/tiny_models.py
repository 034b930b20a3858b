"""The small PIFu configurations the tests share (same structure as ``ModelConfig.small()``, narrower).

``TINY`` (64 px input) is for tests that train or serve a model end to end on CPU in seconds;
``tiny_config()`` is the same as a ``ModelConfig``; ``compact_config()`` (128 px, a five-layer MLP with the
official skip connections, depth scale 50) is for tests of the model code itself.
"""

from __future__ import annotations

from backend.models import ModelConfig

TINY: dict = {"load_size": 64, "hg_width": 32, "hourglass_dim": 32, "norm_groups": 8,
              "mlp_dim": [33, 32, 16, 1], "color_ngf": 8, "color_blocks": 2, "mlp_dim_color": [65, 32, 16, 3]}


def tiny_config(**overrides) -> ModelConfig:
    """``TINY`` as a model config; keyword arguments override its fields."""
    base = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
    base.update(overrides)
    return ModelConfig.small(**base)


def compact_config(**overrides) -> ModelConfig:
    """128 px input, official-shaped MLPs (skip connections) at a fraction of the width."""
    base = dict(load_size=128, hg_width=64, hourglass_dim=64, norm_groups=8, mlp_dim=(65, 96, 64, 32, 16, 1),
                color_ngf=16, color_blocks=2, mlp_dim_color=(129, 96, 64, 32, 16, 3), z_size=50.0)
    base.update(overrides)
    return ModelConfig.small(**base)
