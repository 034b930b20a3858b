"""PIFu's point MLP (official ``lib/model/SurfaceClassifier.py``) and its pre-projected fast path.

The MLP is a stack of 1x1 ``Conv1d`` layers ``conv0..convK``; with the official ``no_residual=False``
every layer after the first sees ``cat([y, input])``. Its input is ``cat([bilinear(feature_map, xy),
depth_scale * z])``.

Fast path (same maths, fewer multiply-adds per point). Every term of the MLP that touches the image
feature is linear in it: the first layer, and the skip-concat slice of every later layer. Bilinear
interpolation is linear too, and a 1x1 linear map commutes with it (zero padding included: an
out-of-image neighbour contributes ``W @ 0 = 0`` either way). So instead of sampling the C-channel
feature per point and multiplying by each layer's feature weights, :meth:`SurfaceClassifier.project`
multiplies the whole feature map by all those weights once (one [S x C] @ [C x H*W] product), and
:meth:`SurfaceClassifier.forward_projected` samples the S pre-projected channels per point and adds
only the depth and hidden-layer terms. For the official geometry MLP that is 688k instead of 1,182k
multiply-adds per point, after an 8 G multiply-add projection; it pays off beyond roughly 10^4 points
per encoded image, which reconstruction always exceeds.

Several views (PIFu's ``num_views``). The input then holds V consecutive rows per subject, one per
calibrated view (view-major inside a subject: row ``b * V + v``). Every view runs the layers up to
and including ``conv{K // 2}`` (K layers) on its own features; right after that layer's activation the
V activations are averaged, and so is the input that later layers see through the skip-concat; the
remaining layers run once per subject. That is the official ``SurfaceClassifier.forward``'s placement,
and the official weights carry no per-view parameter, so the same checkpoints serve any V. With V = 1
nothing is averaged and the computation is the single-view one, operation for operation. The fast path
averages the same two things: the hidden activations and, because the skip-concat terms are linear in
the input, the per-view pre-projected columns of the later layers (depth term included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.blocks import bilinear_rows


@dataclass
class ProjectedFeatures:
    """A feature map multiplied by every feature-facing weight slice of an MLP, biases folded in.

    ``table`` [B, H*W, S] holds, per pixel, ``W_feat . f + b`` for every layer's outputs side by side
    (channels-last rows, what :func:`bilinear_rows` reads); ``z_weight`` [S] is each output's weight on
    the depth feature and ``bias`` [S] the bias already in the table (needed where the bilinear weights
    do not sum to 1, i.e. outside the image); ``offsets[l]`` is layer l's first column.
    """

    table: torch.Tensor
    height: int
    width: int
    z_weight: torch.Tensor
    bias: torch.Tensor
    offsets: list[int]


class SurfaceClassifier(nn.Module):
    """1x1-conv MLP on [B, C, N] with optional skip-concat of the input, LeakyReLU(0.01) between layers
    and ``last_op`` (Sigmoid for geometry, Tanh for colour) at the end."""

    def __init__(self, filter_channels: tuple[int, ...], residual: bool = True,
                 last_op: nn.Module | None = None) -> None:
        super().__init__()
        self.filter_channels = tuple(filter_channels)
        self.residual = residual
        self.last_op = last_op
        self.num_layers = len(filter_channels) - 1
        for layer in range(self.num_layers):
            in_ch = filter_channels[layer]
            if layer > 0 and residual:
                in_ch += filter_channels[0]
            self.add_module(f"conv{layer}", nn.Conv1d(in_ch, filter_channels[layer + 1], 1))

    @property
    def fusion_layer(self) -> int:
        """The layer after whose activation several views are averaged (official: ``K // 2``)."""
        return self.num_layers // 2

    def forward(self, feature: torch.Tensor, num_views: int = 1) -> torch.Tensor:
        """[B*V, C, N] per-view inputs -> [B, out, N]; V = ``num_views`` views per subject (module
        docstring)."""
        y = feature
        skip = feature
        for layer in range(self.num_layers):
            conv = self._modules[f"conv{layer}"]
            y = conv(y if layer == 0 or not self.residual else torch.cat([y, skip], 1))
            if layer != self.num_layers - 1:
                y = F.leaky_relu(y)
            if num_views > 1 and layer == self.fusion_layer:
                y = _view_mean(y, num_views)
                skip = _view_mean(feature, num_views)
        if self.last_op is not None:
            y = self.last_op(y)
        return y

    # -- pre-projected path --------------------------------------------------------------------------
    def _layout(self) -> list[tuple[slice | None, slice, int]]:
        """Per layer: (hidden columns or None, image-feature columns, depth column or -1) of its weight."""
        c0 = self.filter_channels[0]
        feat = c0 - 1  # the last input channel is the depth feature
        out = []
        for layer in range(self.num_layers):
            if layer == 0:
                out.append((None, slice(0, feat), feat))
            elif self.residual:
                h = self.filter_channels[layer]
                out.append((slice(0, h), slice(h, h + feat), h + feat))
            else:
                out.append((slice(0, self.filter_channels[layer]), slice(0, 0), -1))
        return out

    def projected_width(self) -> int:
        """S: how many pre-projected channels the fast path samples per point (every layer's outputs)."""
        return sum(self.filter_channels[1:])

    def project(self, feature_map: torch.Tensor) -> ProjectedFeatures:
        """Multiply a [B, C, H, W] feature map (C = input channels - 1) by all feature-facing weights."""
        b, c, h, w = feature_map.shape
        if c != self.filter_channels[0] - 1:
            raise ValueError(f"feature map has {c} channels, the MLP expects {self.filter_channels[0] - 1}")
        w_feat, z_weight, bias, offsets = [], [], [], []
        offset = 0
        for layer, (_, cols, zcol) in enumerate(self._layout()):
            conv = self._modules[f"conv{layer}"]
            wmat = conv.weight[:, :, 0]
            n_out = wmat.shape[0]
            w_feat.append(wmat[:, cols] if cols.stop > cols.start else wmat.new_zeros(n_out, c))
            z_weight.append(wmat[:, zcol] if zcol >= 0 else wmat.new_zeros(n_out))
            bias.append(conv.bias)
            offsets.append(offset)
            offset += n_out
        rows = feature_map.reshape(b, c, h * w).transpose(1, 2)  # [B, HW, C]
        bias_all = torch.cat(bias)
        table = torch.baddbmm(bias_all.expand(b, h * w, -1), rows, torch.cat(w_feat, 0).t().expand(b, -1, -1))
        return ProjectedFeatures(table=table.contiguous(), height=h, width=w, z_weight=torch.cat(z_weight),
                                 bias=bias_all, offsets=offsets)

    def forward_projected(self, proj: ProjectedFeatures, uv: torch.Tensor,
                          z_feat: torch.Tensor, num_views: int = 1) -> torch.Tensor:
        """MLP output [B, out, N] at points with per-view image coordinates uv [B*V, 2, N] and depth
        features z_feat [B*V, 1, N], equal to ``forward(cat([index(feature_map, uv), z_feat]),
        num_views)`` up to float rounding.

        Per point: sample the S pre-projected channels (bias included), add ``z * z_weight`` once for
        all layers, then each layer is one GEMM on the previous activations accumulated onto its slice,
        with in-place LeakyReLU: no per-layer concatenation and few passes over memory.
        """
        outs = []
        fuse = self.fusion_layer if num_views > 1 else -1
        for b in range(uv.shape[0] // num_views):
            views = []
            for row in range(b * num_views, (b + 1) * num_views):
                g = _sample_runs(proj, row, uv[row].t())  # [N, S], owned: modified in place below
                g.addcmul_(z_feat[row, 0].unsqueeze(1), proj.z_weight.unsqueeze(0))
                views.append((g, self._layers_projected(proj, g, None, 0, fuse)))
            if fuse < 0:
                g, y = views[0]
            else:
                # Later layers read the averaged activations and the averaged input (module docstring).
                tail = proj.offsets[fuse + 1] if fuse + 1 < self.num_layers else proj.table.shape[2]
                g = torch.stack([v[0][:, tail:] for v in views]).mean(0)
                y = self._layers_projected(proj, g, torch.stack([v[1] for v in views]).mean(0), fuse + 1,
                                           self.num_layers - 1, shift=tail)
            if self.last_op is not None:
                y = self.last_op(y)
            outs.append(y.t())
        return torch.stack(outs, 0)

    def _layers_projected(self, proj: ProjectedFeatures, g: torch.Tensor, y: torch.Tensor | None,
                          first: int, last: int, shift: int = 0) -> torch.Tensor:
        """Layers ``first..last`` (all of them when ``last`` < 0) of the fast path on sampled rows ``g``
        whose column 0 is the table's column ``shift``; ``y`` = the activations entering ``first``."""
        layout = self._layout()
        last = self.num_layers - 1 if last < 0 else last
        for layer in range(first, last + 1):
            hid = layout[layer][0]
            conv = self._modules[f"conv{layer}"]
            start = proj.offsets[layer] - shift
            part = g[:, start:start + conv.weight.shape[0]]
            y = part if hid is None else part.addmm_(y, conv.weight[:, hid, 0].t())
            if layer != self.num_layers - 1:
                y = F.leaky_relu(y, inplace=True)
        return y


def _view_mean(t: torch.Tensor, num_views: int) -> torch.Tensor:
    """[B*V, C, N] -> [B, C, N]: the mean over each subject's V consecutive view rows."""
    return t.view(-1, num_views, t.shape[1], t.shape[2]).mean(dim=1)


def _sample_runs(proj: ProjectedFeatures, b: int, uv: torch.Tensor) -> torch.Tensor:
    """Sample the projected table at uv [N, 2] (bias exact also outside the image), interpolating each
    run of repeated uv only once.

    Reconstruction grids send whole columns of points that differ only in z (the eval calib projects
    along z), so consecutive points often share their image position; sampling 1,900+ channels is then
    the cost worth sharing, and expanding the shared rows is a plain copy.
    """
    n = uv.shape[0]
    inverse = None
    if n > 1:
        starts = torch.ones(n, dtype=torch.bool, device=uv.device)
        starts[1:] = (uv[1:] != uv[:-1]).any(1)
        if int(starts.sum()) * 2 <= n:
            inverse = torch.cumsum(starts, 0) - 1
            uv = uv[starts]
    rows, wsum = bilinear_rows(proj.table[b], proj.height, proj.width, uv)
    short = (wsum - 1.0).abs() > 1e-6  # outside the image: the folded bias was scaled down with the weights
    if bool(short.any()):
        rows[short] += (1.0 - wsum[short]).unsqueeze(1) * proj.bias.unsqueeze(0)
    return rows if inverse is None else rows.index_select(0, inverse)
