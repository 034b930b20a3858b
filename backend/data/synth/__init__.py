"""Sample avatars: real anny bodies wearing painted clothes, exported like raw scans.

anny (PyPI, MakeHuman-derived CC0 assets) gives realistic naked bodies but no colour at all. Texture
metrics need ground truth whose colours have *sharp, known* edges, so the clothes are painted by rules
evaluated at 3D surface points:

* every surface point belongs to a coarse body part (torso, upper arm, hand, ...), the argmax of the
  skinning weights of the part's bones, interpolated barycentrically (smooth, mesh-independent borders);
* garments are cut from the parts by planes through joints estimated from the same weights (sleeve hem
  across the arm, waist hem across the torso, shorts hem across the thigh), the hairline is a curve on
  the head;
* patterns are functions of the 3D position: stripes along the height, checks on a 3D grid, a logo patch
  (letters or a ring) projected onto the chest front.

Because the painting is a pure function of (points, normals, part weights, outfit), the same function
bakes the UV texture (evaluated at every texel's 3D point) and the vertex colours of the subdivided PLY,
so both exports show the same clothes, and tests can repaint a committed avatar without anny.

Output is what a scanner would give: metres, z up, facing -y, anny's rest A-pose. The renderer
normalises it into the canonical space (:mod:`avatex_core.canonical`).

Modules, in the order an avatar is made: :mod:`.outfits` (what to wear, as data), :mod:`.geometry`
(part weights, landmarks), :mod:`.paint` (painting points, baking the texture), :mod:`.bodies` (anny
bodies, one painted avatar) and :mod:`.files` (writing, :func:`synthesize`). Everything callers use is
importable from this package.
"""

from __future__ import annotations

from backend.data.synth.bodies import (  # noqa: F401
    ANNY_INSTALL_HINT,
    HEIGHT_LIMITS,
    LOCAL_CHANGE_LIMIT,
    LOCAL_CHANGE_SIGMA,
    PHENOTYPE_RANGES,
    STATURE,
    UV_DECIMALS,
    VERTEX_DECIMALS,
    AnnyBodies,
    Avatar,
    paint_avatar,
    quantize,
    random_identity,
)
from backend.data.synth.files import (  # noqa: F401
    FORMAT,
    anny_bodies,
    avatar_rng,
    check_options,
    make_avatar,
    mtl_text,
    obj_text,
    png_bytes,
    read_meta,
    synthesize,
    write_avatar,
)
from backend.data.synth.geometry import (  # noqa: F401
    Landmarks,
    landmarks,
    part_weights,
    subdivide_midpoint,
    vertex_normals,
)
from backend.data.synth.outfits import (  # noqa: F401
    BOTTOM_PATTERNS,
    BOTTOMS,
    EYES,
    FONT,
    GARMENT_COLORS,
    GARMENT_CONTRAST,
    HAIR,
    HAIR_COLORS,
    IRIS_COLORS,
    PART_BONES,
    PART_INDEX,
    PARTS,
    PATTERN_CONTRAST,
    PUPIL,
    REGIONS,
    RGB,
    SCLERA,
    SHIRT,
    SHIRT_PATTERNS,
    SHOE_COLORS,
    SHOES,
    SKIN,
    SKIN_TONES,
    Garment,
    Outfit,
    delta_e,
    random_outfit,
)
from backend.data.synth.paint import (  # noqa: F401
    bake_texture,
    interpolate_weights,
    paint,
    rasterize_uv,
)
