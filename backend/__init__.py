"""avatex backend: PIFu models, training, reconstruction, metrics, datasets and the ZeroMQ server.

Importing this package is cheap and never imports torch or bpy; submodules import what they need.
What the backend shares with the Blender add-on (canonical space, protocol, dataset layout, ...) lives
in the separate pure package `avatex_core`; the backend never imports `blender_addon` (see
docs/architecture.md).
"""

__version__ = "0.1.0"
