"""Ready-made materials that show a colour attribute in Material Preview and Rendered mode.

Solid mode shows the *active* colour attribute by itself (shading colour "Attribute"); the other two
viewport modes and renders need a material that reads the attribute by name. One small node tree does
both jobs: Attribute (geometry) -> Principled BSDF base colour -> output, so the reconstruction's colours
and the audit heatmap look alike in every mode, shaded by the scene's lights like Solid mode's studio
light shades them.
"""

from __future__ import annotations

import bpy

HEATMAP_MATERIAL = "avatex heatmap"
COLORS_MATERIAL = "avatex vertex colours"


def attribute_material(name: str, attribute: str) -> bpy.types.Material:
    """The material ``name`` showing colour attribute ``attribute``; created or repaired, then returned.

    Reusing one material per attribute name keeps the file tidy when many meshes are audited: every
    mesh carries its own attribute values, the material only names the attribute.
    """
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    attr = _principled(mat, "ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = attribute
    # Solid mode with "Material" colouring uses the diffuse colour: keep it neutral.
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat


def texture_material(name: str, image: bpy.types.Image) -> bpy.types.Material:
    """A new material ``name``: Image Texture (the mesh's UV map) -> Principled BSDF base colour.

    One per textured mesh, unlike :func:`attribute_material`: the image is the mesh's own.
    """
    mat = bpy.data.materials.new(name)
    _principled(mat, "ShaderNodeTexImage").image = image
    return mat


def _principled(mat: bpy.types.Material, source: str) -> bpy.types.ShaderNode:
    """Rebuild ``mat`` as node ``source``'s Color -> Principled BSDF base colour -> output; returns the
    source node for the caller to configure."""
    if bpy.app.version < (5, 0, 0):  # 5.0 deprecates use_nodes: node trees always exist there
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    src = nodes.new(source)
    src.location = (-400, 0)
    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.location = (-100, 0)
    bsdf.inputs["Roughness"].default_value = 0.7
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (250, 0)
    links.new(src.outputs["Color"], bsdf.inputs["Base Color"])
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return src


def assign_single_material(obj: bpy.types.Object, mat: bpy.types.Material) -> None:
    """Make ``mat`` the object's only material (data-linked, like an imported mesh's)."""
    mesh = obj.data
    mesh.materials.clear()
    mesh.materials.append(mat)
