"""avatex_core: the pure Python + numpy code that the backend and the Blender add-on both use.

One definition of everything the two sides must agree on: the canonical space and cameras
(:mod:`.canonical`), the wire protocol and its client (:mod:`.protocol`, :mod:`.client`), atomic file
writes (:mod:`.atomic`), the dataset's layout on disk (:mod:`.dataset_layout`), lighting levels
(:mod:`.lighting`), render settings and options (:mod:`.render_settings`, :mod:`.render_options`), the
dataset render's worker pool and its event stream (:mod:`.render_jobs`), sRGB transfer functions
(:mod:`.color`), the audit heatmap's scale (:mod:`.heatmap`), the repairs of imported meshes
(:mod:`.mesh_hygiene`) and the one progress-and-cancellation object of long operations (:mod:`.progress`).

Rules (checked by ``tests/test_import_boundaries.py``; see docs/architecture.md): this package imports
only the standard library, numpy and (for the client) pyzmq: never torch, bpy, ``backend`` or
``blender_addon``. The Blender extension bundles it as a pure-Python wheel, the same way it bundles
pyzmq, so the installed add-on needs nothing outside its zip. Licence: Apache-2.0 (``LICENSE`` at the
repository root), which the GPL-3.0-or-later add-on may include.
"""

__version__ = "0.1.0"
