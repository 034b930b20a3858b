"""Evaluation: PATD/PIPATD texture distances, geometry and image metrics, and the results table.

Import-light: numpy and scipy only; torch is imported inside the functions that use it.
docs/metrics.md has the definitions and conventions.
"""

from backend.metrics.color import ciede2000, ciede2000_torch, srgb_to_lab, srgb_to_lab_torch
from backend.metrics.evaluate import evaluate_meshes, format_report, write_per_vertex
from backend.metrics.geometry import (
    GeometryMetrics,
    cm_per_canonical_unit,
    cm_per_unit_from_normalization,
    geometry_metrics,
    point_to_surface,
)
from backend.metrics.patd import DEFAULT_K, TextureDistance, texture_distance

__all__ = [
    "DEFAULT_K",
    "GeometryMetrics",
    "TextureDistance",
    "ciede2000",
    "ciede2000_torch",
    "cm_per_canonical_unit",
    "cm_per_unit_from_normalization",
    "evaluate_meshes",
    "format_report",
    "geometry_metrics",
    "point_to_surface",
    "srgb_to_lab",
    "srgb_to_lab_torch",
    "texture_distance",
    "write_per_vertex",
]
