"""Installed-extension scenario: an audit through the panel's operator lands the backend's values."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy
import colour
import numpy as np

if TYPE_CHECKING:
    from extension import Extension


def lab(rgb) -> np.ndarray:
    return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(np.asarray(rgb, np.float64)))


def audit_lands_the_backends_values(ext: Extension, mesh: str) -> dict:
    import avatex_core.client as client_mod

    mi, runtime = ext.mi, ext.runtime
    endpoint, _ = ext.serve()
    ext.use(endpoint)
    with np.load(mesh) as m:
        verts, tris = m["vertices"], m["faces"]
    rng = np.random.default_rng(3)
    gt_rgb = rng.random((len(verts), 3)).astype(np.float32)
    pred_rgb = np.clip(gt_rgb + rng.normal(0, 0.05, gt_rgb.shape), 0, 1).astype(np.float32)
    # Three vertices with known errors: identical colour, a mid one, black against white.
    probes = [100, 450, 800]
    pred_rgb[100] = gt_rgb[100]
    pred_rgb[450], gt_rgb[450] = (0.5, 0.5, 0.5), (0.6, 0.45, 0.5)
    pred_rgb[800], gt_rgb[800] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    gt = mi.import_mesh("gt", verts, tris, gt_rgb)
    pred = mi.import_mesh("pred", verts, tris, pred_rgb)
    s = bpy.context.scene.avatex
    s.audit_object, s.gt_object, s.gt_source = pred, gt, "OBJECT"
    assert bpy.ops.avatex.audit() == {"FINISHED"}
    ticks = ext.tick_until(lambda: not runtime.RUNTIME.latest("audit").active, 120)
    task = runtime.RUNTIME.latest("audit")
    # The backend's own answer to the same request, through the bundled client.
    args, arrays = ext.operators.audit_request(pred, gt, s)
    with client_mod.Client(endpoint) as client:
        ref = client.call("evaluate", args, arrays, timeout=120)
    reference_de = [float(colour.delta_E(lab(pred_rgb[p]), lab(gt_rgb[p]), method="CIE 2000"))
                    for p in probes]
    data = pred.data
    return {"state": task.state, "message": task.message, "ticks": len(ticks),
            "patd": mi.read_point_floats(data, "patd").tolist(),
            "pipatd": mi.read_point_floats(data, "pipatd").tolist(),
            "ref_patd": ref.arrays["patd"].tolist(), "ref_pipatd": ref.arrays["pipatd"].tolist(),
            "ref_summary": ref.result, "summary": ext.audit.summary_of(pred),
            "heatmap": mi.read_point_colors(data, ext.audit.HEATMAP_ATTRIBUTE)[probes].tolist(),
            "probes": probes, "reference_de": reference_de,
            "active": data.color_attributes.active_color_name,
            "render": data.color_attributes.default_color_name,
            "domains": [data.attributes[k].domain + "/" + data.attributes[k].data_type
                        for k in ("patd", "pipatd")],
            "material": [m.name for m in data.materials]}
