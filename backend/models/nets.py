"""PIFu's two nets, state_dict-compatible with the official ``net_G`` and ``net_C``.

``HGPIFuNet`` (geometry) = stacked-hourglass ``image_filter`` + ``surface_classifier`` MLP ending in a
sigmoid; ``ResBlkPIFuNet`` (colour) = ResnetFilter ``image_filter`` + MLP ending in tanh, fed with the
geometry net's last-stack feature concatenated in front of its own (``attach``). The stateful
``filter`` / ``query`` / ``attach`` protocol is the official one (docs/models.md), which the
training code relies on: ``filter`` in train mode keeps every stack's feature for intermediate
supervision, in eval mode only the last.

Several views: ``filter`` takes the V calibrated images of each subject as consecutive rows
[B*V, 3, S, S] (view-major inside a subject, the official layout), ``query`` takes the points once per
subject [B, 3, N] and one calib per image [B*V, 4, 4]; V is their ratio. Each view projects the points
with its own calib, and the MLP averages the views where the official code does
(:mod:`backend.models.surface_classifier`).
"""

from __future__ import annotations

import torch
from torch import nn

from backend.models.blocks import index, init_weights, orthogonal
from backend.models.config import ModelConfig
from backend.models.hg_filter import HGFilter
from backend.models.resnet_filter import ResnetFilter
from backend.models.surface_classifier import ProjectedFeatures, SurfaceClassifier


def in_image(xy: torch.Tensor) -> torch.Tensor:
    """[B, 1, N] float mask of points projecting inside the image (|x|, |y| <= 1; z is not checked)."""
    inside = (xy[:, 0] >= -1.0) & (xy[:, 0] <= 1.0) & (xy[:, 1] >= -1.0) & (xy[:, 1] <= 1.0)
    return inside.unsqueeze(1).to(xy.dtype)


def views_of(points: torch.Tensor, calibs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The points repeated for each of a subject's views ([B*V, 3, N], each view's rows next to each
    other) and V = calibs per subject; with one view the points themselves."""
    b = points.shape[0]
    if b == 0 or calibs.shape[0] % b:
        raise ValueError(f"{calibs.shape[0]} calibs do not split into views of {b} subjects")
    num_views = calibs.shape[0] // b
    if num_views == 1:
        return points, 1
    return points.repeat_interleave(num_views, dim=0), num_views


def fused_in_image(xy: torch.Tensor, num_views: int) -> torch.Tensor:
    """[B, 1, N]: 1 where a point projects inside every view's image (one view: :func:`in_image`).

    The official code multiplies its fused prediction by each view's mask in turn (a broadcast that only
    works for one subject per batch); requiring every view is that product taken once per subject.
    """
    mask = in_image(xy)
    if num_views == 1:
        return mask
    return mask.view(-1, num_views, 1, mask.shape[2]).amin(dim=1)


class HGPIFuNet(nn.Module):
    """Geometry net: occupancy in [0, 1] at 3D points given a calib; 0 for points outside the image."""

    def __init__(self, config: ModelConfig, init: bool = True) -> None:
        super().__init__()
        self.config = config
        self.image_filter = HGFilter(config)
        self.surface_classifier = SurfaceClassifier(config.mlp_dim, config.mlp_residual, nn.Sigmoid())
        self.im_feat_list: list[torch.Tensor] = []
        self.tmpx: torch.Tensor | None = None
        self.normx: torch.Tensor | None = None
        self.intermediate_preds_list: list[torch.Tensor] = []
        self.preds: torch.Tensor | None = None
        self._projected: ProjectedFeatures | None = None
        if init:
            init_weights(self)

    def train(self, mode: bool = True) -> HGPIFuNet:
        self._projected = None
        return super().train(mode)

    def filter(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Encode [B, 3, S, S] masked images; keeps all stack outputs in train mode, the last in eval."""
        feats, self.tmpx, self.normx = self.image_filter(images)
        self.im_feat_list = feats if self.training else [feats[-1]]
        self._projected = None
        return self.im_feat_list

    def get_im_feat(self) -> torch.Tensor:
        """The last stack's feature map, what the colour net attaches."""
        return self.im_feat_list[-1]

    def query(self, points: torch.Tensor, calibs: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """Occupancy [B, 1, N] of points [B, 3, N] seen by calibs [B*V, 4, 4] (module docstring);
        every stack's prediction lands in ``intermediate_preds_list`` (one entry in eval mode).

        ``fast=True`` uses the pre-projected MLP (eval mode only; same values up to float rounding).
        """
        if not self.im_feat_list:
            raise RuntimeError("query before filter: encode an image first")
        points, views = views_of(points, calibs)
        xyz = orthogonal(points, calibs)
        xy = xyz[:, :2, :]
        z_feat = xyz[:, 2:3, :] * self.config.depth_scale
        mask = fused_in_image(xy, views)
        classifier = self.surface_classifier
        if fast:
            if self.training:
                raise RuntimeError("the fast query path is for eval mode")
            if self._projected is None:
                self._projected = classifier.project(self.im_feat_list[-1])
            preds = [mask * classifier.forward_projected(self._projected, xy, z_feat, views)]
        else:
            preds = [mask * classifier(torch.cat([index(feat, xy), z_feat], 1), views)
                     for feat in self.im_feat_list]
        self.intermediate_preds_list = preds
        self.preds = preds[-1]
        return self.preds

    def get_error(self, labels: torch.Tensor) -> torch.Tensor:
        """The official loss: MSE against {0,1} labels [B, 1, N], averaged over the stacks."""
        loss = sum(nn.functional.mse_loss(p, labels) for p in self.intermediate_preds_list)
        return loss / len(self.intermediate_preds_list)

    def forward(self, images: torch.Tensor, points: torch.Tensor, calibs: torch.Tensor) -> torch.Tensor:
        self.filter(images)
        return self.query(points, calibs)


class ResBlkPIFuNet(nn.Module):
    """Colour net: RGB in [-1, 1] (tanh) at 3D points; input feature = [netG feature, own feature, z]."""

    def __init__(self, config: ModelConfig, init: bool = True) -> None:
        super().__init__()
        self.config = config
        self.image_filter = ResnetFilter(config.color_ngf, config.color_blocks, config.norm_color,
                                         config.norm_groups)
        self.surface_classifier = SurfaceClassifier(config.mlp_dim_color, config.mlp_residual, nn.Tanh())
        self.im_feat: torch.Tensor | None = None
        self.preds: torch.Tensor | None = None
        self._attached = False
        self._projected: ProjectedFeatures | None = None
        if init:
            init_weights(self)

    def train(self, mode: bool = True) -> ResBlkPIFuNet:
        self._projected = None
        return super().train(mode)

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        self.im_feat = self.image_filter(images)
        self._attached = False
        self._projected = None
        return self.im_feat

    def attach(self, im_feat: torch.Tensor) -> None:
        """Prepend the geometry net's last-stack feature (G first, as the official code)."""
        if self.im_feat is None:
            raise RuntimeError("attach before filter")
        self.im_feat = torch.cat([im_feat, self.im_feat], 1)
        self._attached = True
        self._projected = None

    def query(self, points: torch.Tensor, calibs: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """Colour [B, 3, N] in [-1, 1] of points [B, 3, N] seen by calibs [B*V, 4, 4]; there is no
        in-image mask (as in the official net)."""
        if not self._attached:
            raise RuntimeError("query before filter + attach: encode an image first")
        points, views = views_of(points, calibs)
        xyz = orthogonal(points, calibs)
        xy = xyz[:, :2, :]
        z_feat = xyz[:, 2:3, :] * self.config.depth_scale
        if fast:
            if self.training:
                raise RuntimeError("the fast query path is for eval mode")
            if self._projected is None:
                self._projected = self.surface_classifier.project(self.im_feat)
            self.preds = self.surface_classifier.forward_projected(self._projected, xy, z_feat, views)
        else:
            self.preds = self.surface_classifier(torch.cat([index(self.im_feat, xy), z_feat], 1), views)
        return self.preds

    def get_error(self, labels: torch.Tensor) -> torch.Tensor:
        """The official colour loss: L1 against RGB targets in [-1, 1], [B, 3, N]."""
        return nn.functional.l1_loss(self.preds, labels)

    def forward(self, images: torch.Tensor, im_feat: torch.Tensor, points: torch.Tensor,
                calibs: torch.Tensor) -> torch.Tensor:
        self.filter(images)
        self.attach(im_feat)
        return self.query(points, calibs)
