"""Modules the add-on shares with the backend, defined once in ``backend/`` (design.md §2).

The built extension carries verbatim copies in ``_vendor/`` (written by ``scripts/build_addon.py``), so it
needs nothing outside its zip; a source checkout imports the originals. Both are pure Python + numpy.
"""

try:  # inside the built extension
    from ._vendor import atomic, canonical, protocol
except ImportError:  # source checkout, where the backend package is importable
    from backend import atomic, canonical, protocol

__all__ = ["atomic", "canonical", "protocol"]
