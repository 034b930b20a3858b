"""PIFu models: the official geometry/colour nets, their configuration and checkpoint I/O.

Public surface (docs/models.md, docs/api.md): :class:`ModelConfig`, :class:`HGPIFuNet`,
:class:`ResBlkPIFuNet`, :class:`PIFu`; checkpoint functions live in :mod:`backend.models.checkpoint`.
"""

from backend.models.config import ModelConfig
from backend.models.nets import HGPIFuNet, ResBlkPIFuNet
from backend.models.pifu import PIFu

__all__ = ["HGPIFuNet", "ModelConfig", "PIFu", "ResBlkPIFuNet"]
