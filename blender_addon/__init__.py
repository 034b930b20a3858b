"""avatex Blender extension: relit datasets, reconstruction and texture audits from the 3D viewport.

The package imports cheaply: Blender classes live in submodules that ``register`` loads, so the pure
modules (the ZeroMQ client, the heatmap scale) can be imported and tested without a UI.
"""

from __future__ import annotations

import importlib

# Submodules with register()/unregister(), in registration order.
_MODULES: tuple[str, ...] = ()


def register() -> None:
    for name in _MODULES:
        importlib.import_module(f".{name}", __package__).register()


def unregister() -> None:
    for name in reversed(_MODULES):
        importlib.import_module(f".{name}", __package__).unregister()
