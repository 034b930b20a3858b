"""avatex backend: PIFu models, training, reconstruction, metrics, datasets and the ZeroMQ server.

Importing this package is cheap and never imports torch or bpy; submodules import what they need.
The add-on shares two pure modules with it, `backend.canonical` and `backend.protocol`.
"""

__version__ = "0.1.0"
