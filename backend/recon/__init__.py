"""Single-image reconstruction with PIFu: framing, coarse-to-fine occupancy grid, marching cubes,
vertex colours (docs/api.md)."""

from backend.recon.pipeline import Reconstruction, reconstruct

__all__ = ["Reconstruction", "reconstruct"]
