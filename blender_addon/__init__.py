"""avatex Blender extension: relit datasets, reconstruction and texture audits from the 3D viewport.

The package imports cheaply: Blender classes live in submodules that ``register`` loads, so the pure
modules (the ZeroMQ client, the heatmap scale) can be imported and tested without a UI.

Sidebar (3D viewport > N > avatex): Dataset (:mod:`.dataset_panel`), Train, Reconstruct, Audit
(:mod:`.panels`). Preferences hold the backend address, CurveZMQ keys and the local-backend launcher.
One timer (:mod:`.runtime`) drives every job: the backend's (:mod:`.tasks`) and the dataset render
(:mod:`.dataset_job`).
"""

from __future__ import annotations

import importlib

# Submodules with register()/unregister(), in registration order (panels after what they draw).
_MODULES: tuple[str, ...] = ("preferences", "properties", "dataset_properties", "operators",
                              "dataset_operators", "runtime", "dataset_panel", "panels")
_registered: list[str] = []


def register() -> None:
    for name in _MODULES:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            print(f"avatex: {name} is not part of this build; skipping it")
            continue
        module.register()
        _registered.append(name)


def unregister() -> None:
    while _registered:
        importlib.import_module(f".{_registered.pop()}", __package__).unregister()
