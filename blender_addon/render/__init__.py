"""The Blender-side dataset renderer (design.md §3–4): relit multi-view renders of human meshes.

One module per concept:

* :mod:`.settings` – what a dataset is rendered with (views, levels, engine), pure Python.
* :mod:`.lighting` – lighting levels, their per-image sampling and the light calibration, pure numpy.
* :mod:`.layout` – the dataset's files on disk: names, records, manifest, resume, shards, pure Python.
* :mod:`.pngio` – a tiny PNG encoder (real Blender has no PIL), pure numpy + zlib.
* :mod:`.compat` – every difference between Blender 4.2, 4.5 and 5.0 that the renderer meets.
* :mod:`.subjects` – import a subject (files or a .blend), normalise it, extract its GT mesh.
* :mod:`.materials` – turn a subject's materials into lit / albedo pairs.
* :mod:`.scene` – render settings, the orthographic camera and the light rig.
* :mod:`.loop` – render one subject's views and levels, resumably.
* :mod:`.runner` – the headless entry used by ``render_scripts/render_dataset.py`` and the CLI.

This package imports nothing at import time, so the pure modules can be used (and tested) without
Blender; the bpy modules import ``bpy`` themselves.
"""
