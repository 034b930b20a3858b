"""The PIFu pair: geometry net + colour net behind one encode/query interface.

``encode`` runs both image filters and attaches the geometry feature to the colour net (G first, 513
MLP input channels officially); ``query_occupancy`` / ``query_color`` evaluate points with a calib. The
nets keep the official stateful protocol, so training code can also reach ``net_g`` / ``net_c``
directly (all-stack predictions, official losses).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from backend.errors import InputError, NotAvailableError
from backend.models.config import ModelConfig
from backend.models.nets import HGPIFuNet, ResBlkPIFuNet


class PIFu(nn.Module):
    """Geometry (``net_g``) and optional colour (``net_c``) nets built from one :class:`ModelConfig`.

    Shapes: images [B, 3, S, S] in [-1, 1], already masked (``backend.recon.framing.network_image``),
    with S = ``config.load_size``; points [B, 3, N] in canonical space, calibs [B, 4, 4]
    (``avatex_core.canonical``). Occupancy comes back as [B, 1, N] in [0, 1], colour as [B, 3, N] in
    [-1, 1] (sRGB = 0.5 * c + 0.5).

    Several calibrated views (PIFu's ``num_views``): encode the V images of each subject as consecutive
    rows [B*V, 3, S, S] and query with their calibs [B*V, 4, 4]; points stay [B, 3, N] and the
    results [B, ., N], the views fused inside the MLPs (``backend.models.nets``). V is read from the
    shapes, so one model (and any official checkpoint) serves every number of views.
    """

    def __init__(self, config: ModelConfig | None = None, with_color: bool = True, init: bool = True) -> None:
        """``init=False`` leaves the weights uninitialised (allocated, not filled): for loaders, which
        overwrite every tensor; building on the meta device first skips PyTorch's default init."""
        super().__init__()
        self.config = config if config is not None else ModelConfig.official()
        build = contextlib.nullcontext() if init else torch.device("meta")
        with build:
            self.net_g = HGPIFuNet(self.config, init=init)
            self.net_c = ResBlkPIFuNet(self.config, init=init) if with_color else None
        if not init:
            self.to_empty(device="cpu")
        self.geometry_frozen = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def has_color(self) -> bool:
        return self.net_c is not None

    def freeze_geometry(self, frozen: bool = True) -> None:
        """Colour training mode of the official code: netG stays in eval mode, takes no gradients, and
        its filter runs under ``no_grad`` inside :meth:`encode`."""
        self.geometry_frozen = frozen
        self.net_g.requires_grad_(not frozen)
        if frozen:
            self.net_g.eval()

    def train(self, mode: bool = True) -> PIFu:
        super().train(mode)
        if self.geometry_frozen:
            self.net_g.eval()
        return self

    def encode(self, images: torch.Tensor, *, channels_last: bool | None = None) -> None:
        """Run the image filters on ``images``, the masked network input as training feeds it
        (``backend.recon.framing.network_image``); nothing here masks again.

        The features stay on the nets until the next ``encode``; queries read them. ``channels_last``
        feeds the filters NHWC images (None = for inference on the CPU): oneDNN's convolutions then
        run in that layout throughout, a few percent faster for the full-size filters (2-6% measured on
        a 2-core CPU), same values up to float rounding. Training and CUDA keep NCHW, where the gain was
        not measured.
        """
        size = self.config.load_size
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2:] != (size, size):
            raise InputError(f"images must be [B, 3, {size}, {size}], got {list(images.shape)}")
        if channels_last is None:
            channels_last = images.device.type == "cpu" and not torch.is_grad_enabled()
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        grad_off = torch.no_grad() if self.geometry_frozen else contextlib.nullcontext()
        with grad_off:
            self.net_g.filter(images)
        if self.net_c is not None:
            self.net_c.filter(images)
            self.net_c.attach(self.net_g.get_im_feat())

    def query_occupancy(self, points: torch.Tensor, calibs: torch.Tensor, *,
                        fast: bool = False) -> torch.Tensor:
        """Occupancy [B, 1, N] in [0, 1] (last stack). ``fast`` selects the pre-projected MLP path
        (eval mode; equal up to float rounding, cheaper beyond ~10^4 points per encoded image)."""
        _check_points(points, calibs, self._encoded())
        return self.net_g.query(points, calibs, fast=fast)

    def query_occupancy_stacks(self, points: torch.Tensor, calibs: torch.Tensor) -> list[torch.Tensor]:
        """Every stack's occupancy (all stacks in train mode, for the intermediate-supervision loss)."""
        _check_points(points, calibs, self._encoded())
        self.net_g.query(points, calibs)
        return list(self.net_g.intermediate_preds_list)

    def query_color(self, points: torch.Tensor, calibs: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        """Colour [B, 3, N] in [-1, 1] at the points."""
        if self.net_c is None:
            raise NotAvailableError("this model has no colour net (load a net_C or a full checkpoint)")
        _check_points(points, calibs, self._encoded())
        return self.net_c.query(points, calibs, fast=fast)

    def _encoded(self) -> int | None:
        """How many images the last ``encode`` held (None before any)."""
        feats = self.net_g.im_feat_list
        return int(feats[-1].shape[0]) if feats else None

    def forward(self, images: torch.Tensor, points: torch.Tensor, calibs: torch.Tensor) -> torch.Tensor:
        """Encode and return occupancy; mostly for tracing and quick checks."""
        self.encode(images)
        return self.query_occupancy(points, calibs)


def _check_points(points: torch.Tensor, calibs: torch.Tensor, encoded: int | None) -> None:
    """Points [B, 3, N] and one calib per encoded image: [B*V, 4, 4] for V views per subject."""
    if points.dim() != 3 or points.shape[1] != 3 or points.shape[0] == 0:
        raise InputError(f"points must be [B, 3, N], got {list(points.shape)}")
    b = points.shape[0]
    if calibs.dim() != 3 or calibs.shape[1:] != (4, 4) or calibs.shape[0] % b or not calibs.shape[0]:
        raise InputError(f"calibs must be [B*V, 4, 4] (V views of each of the B = {b} subjects), got "
                         f"{list(calibs.shape)}")
    if encoded is not None and calibs.shape[0] != encoded:
        raise InputError(f"{calibs.shape[0]} calibs for {encoded} encoded images: give one calib per image")
