"""Scene subjects as files the renderer can read: the selected objects, or each child collection,
written to a .blend of their own in a temporary folder (the render runs in a background Blender)."""

from __future__ import annotations

from pathlib import Path

import bpy


def subject_groups(props, context) -> list[tuple[str, list]]:
    """(subject name, mesh objects) per subject of the Dataset settings' scene source."""
    if props.source == "SELECTED":
        objects = [ob for ob in context.selected_objects if ob.type == "MESH"]
        if not objects:
            raise ValueError("select at least one mesh object to render")
        return [((context.active_object or objects[0]).name, objects)]
    coll = props.collection
    if coll is None:
        raise ValueError("choose a collection to render")
    children = [c for c in coll.children if any(o.type == "MESH" for o in c.all_objects)]
    groups = [(c.name, [o for o in c.all_objects if o.type == "MESH"]) for c in children or [coll]]
    groups = [g for g in groups if g[1]]
    if not groups:
        raise ValueError(f"collection {coll.name!r} holds no mesh objects")
    return groups


def write_subject_blends(groups: list[tuple[str, list]], folder: Path) -> list[Path]:
    """One .blend per subject, named after it (the name becomes the subject id)."""
    paths = []
    for name, objects in groups:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "subject"
        path = folder / f"{safe}.blend"
        bpy.data.libraries.write(str(path), set(objects), path_remap="ABSOLUTE", compress=False)
        paths.append(path)
    return paths
