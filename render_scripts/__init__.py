"""Headless entry points around the add-on's renderer (``blender -b -P`` or the ``bpy`` module)."""
