"""Reconstruction with PIFu from one image or several calibrated views: framing, coarse-to-fine
occupancy grid, marching cubes, vertex colours (docs/api.md)."""

from backend.recon.pipeline import Reconstruction, View, reconstruct, reconstruct_views

__all__ = ["Reconstruction", "View", "reconstruct", "reconstruct_views"]
