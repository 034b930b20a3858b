"""Turn a subject's materials into a switchable lit / albedo pair, and say where their colour comes from.

Every material is rebuilt around its *colour socket* (what fed the Base Color of its BSDF: an image
texture, a colour attribute, a glTF factor mix, or a constant), which stays wired as it was, so
whatever the importer set up for colour spaces keeps working:

* lit: a Lambertian Diffuse BSDF (the calibration assumes it; no specular highlights), and
* albedo: an Emission shader of strength 1, so that with view transform Standard the render shows the
  sRGB colour itself (unlit, docs/dataset.md),

chosen by a Mix Shader whose factor is one shared value. Alpha (cut-out hair cards) is kept. A second
shared value swaps the emission colour for the camera-space normal encoded as ``0.5 * n + 0.5`` (the
optional normal maps of docs/dataset.md, which PIFuHD's normal nets learn from).

Vertex colours: an object without materials, or whose material has only a constant colour, reads its
colour attribute through an Attribute node. Blender stores FLOAT_COLOR attributes scene-linear and
BYTE_COLOR sRGB-encoded but hands both to shaders as linear (the PLY importer converts sRGB file colours
to linear FLOAT_COLOR), so the shader needs no conversion; the GT export converts back to sRGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy

from . import compat

SWITCH_NODE = "avatex_albedo_switch"
NORMAL_SWITCH_NODE = "avatex_normal_switch"


class MaterialError(ValueError):
    """A subject has nothing to take colours from."""


@dataclass
class ColorSource:
    """Where a material's albedo comes from (for the GT mesh export)."""

    kind: str  # "image" | "attribute" | "constant"
    image: object | None = None  # bpy.types.Image
    uv_map: str = ""  # "" = the mesh's active render UV map
    attribute: str = ""
    constant: tuple[float, float, float] = (0.8, 0.8, 0.8)  # linear RGB
    multiply: tuple[float, float, float] = (1.0, 1.0, 1.0)  # linear factor (glTF baseColorFactor)
    approximate: bool = False  # the socket mixes more than the image/attribute we export


@dataclass
class MaterialRig:
    """The rebuilt materials, their colour sources, and the lit/albedo switch."""

    materials: list = field(default_factory=list)
    sources: dict[str, ColorSource] = field(default_factory=dict)  # material name -> source
    albedo: bool = False
    normals: bool = False

    def set_normals(self, on: bool) -> None:
        """Emit camera-space normals instead of the albedo (with :meth:`set_albedo` on)."""
        if on == self.normals:
            return
        for mat in self.materials:
            mat.node_tree.nodes[NORMAL_SWITCH_NODE].outputs[0].default_value = 1.0 if on else 0.0
        self.normals = on

    def set_albedo(self, on: bool) -> None:
        if on == self.albedo:
            return
        for mat in self.materials:
            mat.node_tree.nodes[SWITCH_NODE].outputs[0].default_value = 1.0 if on else 0.0
        self.albedo = on


def _upstream(socket):
    return socket.links[0].from_socket if socket.is_linked else None


def _find_bsdf(nt, output_node):
    """The first node upstream of the surface output that has a colour input we understand."""
    start = output_node.inputs["Surface"]
    seen = set()
    stack = [start]
    while stack:
        sock = stack.pop(0)
        for link in sock.links:
            node = link.from_node
            if node.name in seen:
                continue
            seen.add(node.name)
            for name in ("Base Color", "Color"):
                if name in node.inputs and node.bl_idname in (
                        "ShaderNodeBsdfPrincipled", "ShaderNodeBsdfDiffuse", "ShaderNodeEmission",
                        "ShaderNodeBsdfToon", "ShaderNodeBsdfSheen", "ShaderNodeSubsurfaceScattering"):
                    return node, node.inputs[name]
            stack.extend(i for i in node.inputs if i.is_linked)
    return None, None


def _classify(color_socket_from, default_rgba) -> ColorSource:
    if color_socket_from is None:
        return ColorSource("constant", constant=tuple(float(c) for c in default_rgba[:3]))
    node = color_socket_from.node
    if node.bl_idname == "ShaderNodeTexImage" and node.image is not None:
        return ColorSource("image", image=node.image, uv_map=_uv_map_of(node))
    if node.bl_idname in ("ShaderNodeAttribute", "ShaderNodeVertexColor"):
        name = getattr(node, "attribute_name", "") or getattr(node, "layer_name", "")
        return ColorSource("attribute", attribute=name)
    factored = _image_times_constant(node)
    if factored is not None:
        return factored
    # Something mixed (glTF factor x texture, Kd x map): export the first image found upstream.
    stack, seen = [node], set()
    while stack:
        n = stack.pop(0)
        if n.name in seen:
            continue
        seen.add(n.name)
        if n.bl_idname == "ShaderNodeTexImage" and n.image is not None:
            return ColorSource("image", image=n.image, uv_map=_uv_map_of(n), approximate=True)
        if n.bl_idname in ("ShaderNodeAttribute", "ShaderNodeVertexColor"):
            name = getattr(n, "attribute_name", "") or getattr(n, "layer_name", "")
            return ColorSource("attribute", attribute=name, approximate=True)
        stack.extend(link.from_node for i in n.inputs for link in i.links)
    return ColorSource("constant", approximate=True)


def _image_times_constant(node) -> ColorSource | None:
    """An image multiplied by a constant colour (the glTF importer's baseColorFactor), exactly."""
    if node.bl_idname != "ShaderNodeMix" or node.data_type != "RGBA" or node.blend_type != "MULTIPLY":
        return None
    by_id = {sock.identifier: sock for sock in node.inputs}
    fac, a, b = by_id.get("Factor_Float"), by_id.get("A_Color"), by_id.get("B_Color")
    if fac is None or a is None or b is None:
        return None
    if fac.is_linked or a.is_linked == b.is_linked:
        return None
    image_in, const_in = (a, b) if a.is_linked else (b, a)
    tex = image_in.links[0].from_node
    if tex.bl_idname != "ShaderNodeTexImage" or tex.image is None:
        return None
    f = float(fac.default_value)
    factor = tuple(1.0 - f + f * float(c) for c in const_in.default_value[:3])
    return ColorSource("image", image=tex.image, uv_map=_uv_map_of(tex), multiply=factor)


def _uv_map_of(tex_node) -> str:
    vec = tex_node.inputs.get("Vector")
    if vec is not None and vec.is_linked:
        src = vec.links[0].from_node
        if src.bl_idname == "ShaderNodeUVMap":
            return src.uv_map
    return ""


def _attribute_material(name: str, attribute: str):
    mat = bpy.data.materials.new(name)
    nt = compat.node_tree(mat)
    nt.nodes.clear()
    attr = nt.nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = attribute
    bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
    nt.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(bsdf.outputs[0], out.inputs["Surface"])
    return mat


def _rebuild(mat, attribute: str) -> ColorSource:
    """Rewire ``mat`` in place into lit/albedo form; returns its colour source."""
    nt = compat.node_tree(mat)
    out = nt.get_output_node("CYCLES") or next(
        (n for n in nt.nodes if n.bl_idname == "ShaderNodeOutputMaterial"), None)
    bsdf, color_input = (None, None) if out is None else _find_bsdf(nt, out)
    color_from = _upstream(color_input) if color_input is not None else None
    default = (tuple(color_input.default_value) if color_input is not None
               else tuple(mat.diffuse_color))
    source = _classify(color_from, default)
    if source.kind == "constant" and attribute:
        attr = nt.nodes.new("ShaderNodeAttribute")
        attr.attribute_type = "GEOMETRY"
        attr.attribute_name = attribute
        color_from = attr.outputs["Color"]
        source = ColorSource("attribute", attribute=attribute)
    alpha_from = None
    alpha_value = 1.0
    if bsdf is not None and "Alpha" in bsdf.inputs:
        alpha_from = _upstream(bsdf.inputs["Alpha"])
        alpha_value = float(bsdf.inputs["Alpha"].default_value)

    nodes, links = nt.nodes, nt.links
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    diffuse.inputs["Roughness"].default_value = 0.0
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    pick = nodes.new("ShaderNodeMix")   # emission colour: albedo, or the encoded normal
    pick.data_type = "RGBA"
    if color_from is not None:
        links.new(color_from, diffuse.inputs["Color"])
        links.new(color_from, pick.inputs[6])
    else:
        rgba = (*source.constant, 1.0)
        diffuse.inputs["Color"].default_value = rgba
        pick.inputs[6].default_value = rgba
    links.new(_encoded_camera_normal(nodes, links), pick.inputs[7])
    normal_switch = nodes.new("ShaderNodeValue")
    normal_switch.name = NORMAL_SWITCH_NODE
    normal_switch.outputs[0].default_value = 0.0
    links.new(normal_switch.outputs[0], pick.inputs[0])
    links.new(pick.outputs[2], emission.inputs["Color"])
    switch = nodes.new("ShaderNodeValue")
    switch.name = SWITCH_NODE
    switch.outputs[0].default_value = 0.0
    mix = nodes.new("ShaderNodeMixShader")
    links.new(switch.outputs[0], mix.inputs["Fac"])
    links.new(diffuse.outputs[0], mix.inputs[1])
    links.new(emission.outputs[0], mix.inputs[2])
    surface = mix.outputs[0]
    if alpha_from is not None or alpha_value < 1.0:
        transparent = nodes.new("ShaderNodeBsdfTransparent")
        cut = nodes.new("ShaderNodeMixShader")
        if alpha_from is not None:
            links.new(alpha_from, cut.inputs["Fac"])
        else:
            cut.inputs["Fac"].default_value = alpha_value
        links.new(transparent.outputs[0], cut.inputs[1])
        links.new(surface, cut.inputs[2])
        surface = cut.outputs[0]
    new_out = nodes.new("ShaderNodeOutputMaterial")
    new_out.target = "ALL"
    links.new(surface, new_out.inputs["Surface"])
    for n in nodes:
        if n.bl_idname == "ShaderNodeOutputMaterial" and n != new_out:
            n.is_active_output = False
    new_out.is_active_output = True
    return source


def _encoded_camera_normal(nodes, links):
    """Socket of ``0.5 * n + 0.5`` with n the shading normal in camera space (x right, y up, z toward
    the camera), the encoding of the normal maps."""
    geometry = nodes.new("ShaderNodeNewGeometry")
    to_camera = nodes.new("ShaderNodeVectorTransform")
    to_camera.vector_type = "NORMAL"
    to_camera.convert_from = "WORLD"
    to_camera.convert_to = "CAMERA"
    links.new(geometry.outputs["Normal"], to_camera.inputs[0])
    encode = nodes.new("ShaderNodeVectorMath")
    encode.operation = "MULTIPLY_ADD"
    links.new(to_camera.outputs[0], encode.inputs[0])
    encode.inputs[1].default_value = (0.5, 0.5, -0.5)   # Cycles camera space has z forward: flip it
    encode.inputs[2].default_value = (0.5, 0.5, 0.5)
    return encode.outputs[0]


def _color_attribute(mesh) -> str:
    attrs = mesh.color_attributes
    if not len(attrs):
        return ""
    name = attrs.default_color_name or attrs.active_color_name
    return name if name in attrs else attrs[0].name


def prepare(objects) -> MaterialRig:
    """Rebuild the materials of ``objects`` (mesh objects) in place; raises when nothing has colour."""
    rig = MaterialRig()
    meshes = [ob for ob in objects if ob.type == "MESH"]
    # Pass 1: which (material, colour attribute) pairs occur. A material used by objects with different
    # colour attributes gets one copy per attribute, taken before anything is rewired.
    users: dict[str, list[str]] = {}
    for ob in meshes:
        attribute = _color_attribute(ob.data)
        for slot in ob.material_slots:
            if slot.material is not None:
                keys = users.setdefault(slot.material.name, [])
                if attribute not in keys:
                    keys.append(attribute)
    built: dict[tuple[str, str], object] = {}
    for name, attributes in users.items():
        original = bpy.data.materials[name]
        variants = [original] + [original.copy() for _ in attributes[1:]]
        for attribute, mat in zip(attributes, variants, strict=True):
            rig.sources[mat.name] = _rebuild(mat, attribute)
            rig.materials.append(mat)
            built[(name, attribute)] = mat
    # Pass 2: assign, and give material-less objects an attribute material.
    for ob in meshes:
        attribute = _color_attribute(ob.data)
        if not any(s.material is not None for s in ob.material_slots):
            if not attribute:
                raise MaterialError(f"object {ob.name!r} has no material and no colour attribute "
                                    "(vertex colours), so it has no colours to render")
            mat = built.get(("", attribute))
            if mat is None:
                mat = _attribute_material(f"avatex_vc_{attribute}", attribute)
                rig.sources[mat.name] = _rebuild(mat, attribute)
                rig.materials.append(mat)
                built[("", attribute)] = mat
            ob.data.materials.clear()
            ob.data.materials.append(mat)
            continue
        for index, slot in enumerate(ob.material_slots):
            if slot.material is None:
                continue
            mat = built.get((slot.material.name, attribute))
            if mat is None or mat == slot.material:
                continue
            if slot.link == "OBJECT":
                slot.material = mat
            else:
                ob.data.materials[index] = mat
    if not rig.materials:
        raise MaterialError("the subject has no mesh objects to render")
    return rig
