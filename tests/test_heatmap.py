"""avatex_core.heatmap / .color, blender_addon.loss_plot: the fixed ΔE00 scale and the pure-numpy helpers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from avatex_core import color, heatmap
from blender_addon import loss_plot

# The scale as docs/addon.md documents it (stop every 2.5 ΔE00, viridis), written out independently of
# the module so that a change to either shows up here.
DOC_STOPS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30",
             "#fde725"]


def _hex(h: str) -> np.ndarray:
    return np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) / 255.0


def _expected(delta_e: float) -> np.ndarray:
    stops = np.array([_hex(h) for h in DOC_STOPS])
    d = min(max(delta_e, 0.0), 20.0)
    i = min(int(d // 2.5), 7)
    t = (d - 2.5 * i) / 2.5
    return stops[i] * (1 - t) + stops[i + 1] * t


@pytest.mark.parametrize("delta_e", [0.0, 1.0, 6.3, 10.0, 17.5, 19.99, 20.0, 35.0, 1e6])
def test_heatmap_matches_documented_stops(delta_e):
    got = heatmap.heatmap_srgb(np.array([delta_e]))[0]
    np.testing.assert_allclose(got, _expected(delta_e), atol=1.0 / 255)


def test_docstring_and_docs_table_agree_with_the_stops():
    documented = re.findall(r"#[0-9a-f]{6}", heatmap.__doc__)
    assert documented == DOC_STOPS
    got = ["#" + "".join(f"{round(c * 255):02x}" for c in stop) for stop in heatmap.STOPS_SRGB]
    assert got == DOC_STOPS


def test_heatmap_is_perceptually_ordered():
    # Viridis' lightness rises monotonically: larger error never looks darker.
    from backend.metrics.color import srgb_to_lab

    lab = srgb_to_lab(heatmap.heatmap_srgb(np.linspace(0, 20, 200)))
    assert np.all(np.diff(lab[:, 0]) > 0)


def test_missing_values_are_grey_and_negative_clips_to_zero():
    out = heatmap.heatmap_srgb(np.array([np.nan, np.inf, -3.0], dtype=np.float32))
    np.testing.assert_array_equal(out[0], heatmap.MISSING_SRGB)
    np.testing.assert_array_equal(out[1], heatmap.MISSING_SRGB)
    np.testing.assert_allclose(out[2], heatmap.STOPS_SRGB[0])


def test_linear_rgba_round_trips_through_srgb():
    d = np.linspace(0, 25, 1000)
    linear = heatmap.heatmap_linear_rgba(d)
    assert linear.shape == (1000, 4) and linear.dtype == np.float32 and linear.flags.c_contiguous
    np.testing.assert_array_equal(linear[:, 3], 1.0)
    np.testing.assert_allclose(color.linear_to_srgb(linear[:, :3]), heatmap.heatmap_srgb(d), atol=2e-6)


def test_srgb_transfer_function_known_points():
    # IEC 61966-2-1: 0.5 sRGB is 0.2140 linear; the linear segment below 0.04045.
    np.testing.assert_allclose(color.srgb_to_linear(np.array([0.0, 0.5, 1.0, 0.04])),
                               [0.0, 0.21404114, 1.0, 0.04 / 12.92], rtol=1e-6)


def test_srgb_transfer_function_clips_or_extends_and_its_pieces_meet():
    x = np.array([-0.1, 0.5, 1.5])
    clipped = color.srgb_to_linear(x)
    assert clipped.dtype == np.float32
    np.testing.assert_allclose(clipped, [0.0, 0.21404114, 1.0], rtol=1e-6)
    extended = color.srgb_to_linear(x, clip=False, dtype=np.float64)
    assert extended.dtype == np.float64
    above = ((1.5 + 0.055) / 1.055) ** 2.4   # the power law goes on above 1 (over-bright levels)
    np.testing.assert_allclose(extended, [-0.1 / 12.92, 0.21404114, above], rtol=1e-6)
    assert above > 1.9
    np.testing.assert_allclose(color.linear_to_srgb(extended, clip=False, dtype=np.float64), x, atol=1e-12)
    # The decode threshold is the encode threshold's image under the power law (as colour-science has
    # it); the standard's two pieces miss each other there by about 2e-9.
    t = color.SRGB_DECODE_LIMIT
    assert t == pytest.approx(0.0404499, abs=1e-7)
    assert ((t + 0.055) / 1.055) ** 2.4 == pytest.approx(0.0031308, abs=1e-15)
    assert 0 < ((t + 0.055) / 1.055) ** 2.4 - t / 12.92 < 3e-9


def test_legend_labels_and_colours():
    legend = heatmap.legend()
    assert [label for label, _ in legend] == ["0", "5", "10", "15", "20+"]
    np.testing.assert_allclose(legend[2][1], _hex(DOC_STOPS[4]), atol=1 / 255)


def test_summarize_ignores_nan():
    s = heatmap.summarize(np.array([1.0, 2.0, 3.0, np.nan]))
    assert s["count"] == 3 and s["mean"] == pytest.approx(2.0) and s["median"] == pytest.approx(2.0)
    assert np.isnan(heatmap.summarize(np.array([np.nan]))["mean"])


def test_loss_curve_image_draws_the_curve_where_the_data_is():
    steps = np.arange(100)
    losses = np.linspace(1.0, 0.1, 100)  # falling: starts top-left, ends bottom-right
    img = loss_plot.render_curve(steps, losses, width=200, height=100)
    assert img.shape == (100, 200, 4) and img.dtype == np.float32
    top_down = img[::-1]
    curve = np.all(np.isclose(top_down, loss_plot.SMOOTH), axis=2)
    rows, cols = np.nonzero(curve)
    assert cols.min() <= loss_plot.MARGIN + 2 and cols.max() >= 200 - loss_plot.MARGIN - 3
    left, right = rows[cols < 20].mean(), rows[cols > 180].mean()
    assert left < 30 and right > 70   # high loss near the top on the left, low near the bottom on the right


def test_loss_curve_handles_empty_and_single_points():
    assert loss_plot.render_curve([], []).shape == (160, 320, 4)
    one = loss_plot.render_curve([5], [0.3])
    assert np.any(np.all(np.isclose(one, loss_plot.SMOOTH), axis=2))
