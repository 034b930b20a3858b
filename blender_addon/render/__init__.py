"""The Blender-side dataset renderer: relit multi-view renders of human meshes (docs/dataset.md).

What a dataset is rendered with, its lighting levels and its layout on disk are pure Python shared with
the backend (``avatex_core.render_settings``, ``.lighting``, ``.dataset_layout``); the worker pool that
runs this renderer is ``avatex_core.render_jobs``. Here, one module per concept:

* :mod:`.pngio` – a tiny PNG encoder (real Blender has no PIL), pure numpy + zlib.
* :mod:`.compat` – every difference between Blender 4.2, 4.5 and 5.0 that the renderer meets.
* :mod:`.subjects` – import a subject (files or a .blend), normalise it, extract its GT mesh.
* :mod:`.materials` – turn a subject's materials into lit / albedo pairs.
* :mod:`.scene` – render settings, the orthographic camera and the light rig.
* :mod:`.gtmesh` – write the normalised GT mesh (PLY with colours, or OBJ + textures).
* :mod:`.loop` – render one subject's views and levels, resumably.
* :mod:`.views` – unlit renders of coloured meshes from dataset cameras (the image metrics).
* :mod:`.runner` – the headless entry (``render_scripts/render_dataset.py``, the render API's workers).

This package imports nothing at import time, so the pure modules can be used (and tested) without
Blender; the bpy modules import ``bpy`` themselves.
"""
