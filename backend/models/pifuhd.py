"""PIFuHD: the multi-level pixel-aligned implicit function, state_dict-compatible with the release.

Two levels (docs/models.md, "PIFuHD"):

* the **coarse level** (``netG``, the official ``HGPIFuNetwNML``) sees the image at 512² together with
  front and back normal maps predicted from it by two pix2pixHD generators (``netF``, ``netB``), encodes
  the 9-channel input with stacked hourglasses to 128² features, and runs the MLP 257 → 1024 → 512 →
  256 → 128 → 1 on [feature, scaled depth];
* the **fine level** (``image_filter`` + ``mlp``, the official ``HGPIFuMRNet``) sees the 1024² image
  with the normal maps upsampled to it, encodes it without downsampling to 512² features, and runs the
  MLP 272 → 512 → 256 → 128 → 1 on [fine feature, Ω], where Ω is the coarse MLP's activation after its
  ``merge_layer`` (256 channels) standing in for the depth.

Architecture values come from the two option sets stored in a checkpoint (``opt`` for the fine level,
``opt_netG`` for the coarse one), because the released values differ from the code's defaults in
several places; :class:`LevelOptions` reads and checks them. The occupancy of the fine level is the
model's output.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backend.errors import InputError
from backend.models.blocks import ConvBlock, group_norm, index, init_weights, orthogonal
from backend.models.hg_filter import HourGlass
from backend.models.pix2pixhd import GlobalGenerator, init_pix2pixhd

DOWN_TYPES = ("ave_pool", "no_down")
MLP_NORMS = ("none", "group", "batch")


# -- options -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelOptions:
    """The options of one level that shape its nets, under the official option names.

    ``use_front_normal`` / ``use_back_normal`` matter on the coarse level only (the fine level reads
    them from the coarse one, as the official code does); ``z_size`` and ``loadSize`` give the coarse
    depth feature ``z * (loadSize // 2) / z_size``; ``loadSizeBig`` is the fine input size;
    ``normal_ngf`` is avatex's: the normal nets' base width (64 and fixed in the official code).
    """

    num_stack: int
    hg_depth: int
    hg_dim: int
    mlp_dim: tuple[int, ...]
    mlp_res_layers: tuple[int, ...]
    merge_layer: int = -1
    mlp_norm: str = "group"
    norm: str = "group"
    hg_down: str = "ave_pool"
    loadSize: int = 512  # noqa: N815 - official option names
    loadSizeBig: int = 1024  # noqa: N815
    z_size: float = 200.0
    use_front_normal: bool = False
    use_back_normal: bool = False
    train_full_pifu: bool = False
    normal_ngf: int = 64

    @property
    def merge_index(self) -> int:
        """The MLP layer whose activation is Ω: ``merge_layer``, or ``len(mlp_dim) // 2`` if <= 0."""
        return self.merge_layer if self.merge_layer > 0 else len(self.mlp_dim) // 2

    @property
    def normal_channels(self) -> int:
        return 3 * (int(self.use_front_normal) + int(self.use_back_normal))

    @classmethod
    def from_namespace(cls, ns: Any, what: str) -> LevelOptions:
        """Read and type-check the fields from an ``argparse.Namespace`` (or a mapping) of a checkpoint;
        one :class:`InputError` line names the option that is missing or malformed."""
        values = dict(vars(ns)) if isinstance(ns, argparse.Namespace) else ns
        if not isinstance(values, dict):
            raise InputError(f"{what}: options must be an argparse.Namespace, got {type(ns).__name__}")
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                if f.default is dataclasses.MISSING:
                    raise InputError(f"{what}: option {f.name!r} is missing")
                continue
            v = values[f.name]
            kind = f.type
            ok = {"int": type(v) is int, "float": type(v) in (int, float), "bool": type(v) is bool,
                  "str": type(v) is str,
                  "tuple[int, ...]": isinstance(v, (list, tuple)) and all(type(x) is int for x in v)}[kind]
            if not ok:
                raise InputError(f"{what}: option {f.name!r} must be {kind}, got {v!r:.60}")
            out[f.name] = tuple(v) if kind == "tuple[int, ...]" else float(v) if kind == "float" else v
        return cls(**out)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.num_stack <= 8 or not 1 <= self.hg_depth <= 6:
            problems.append(f"num_stack {self.num_stack} / hg_depth {self.hg_depth} out of range")
        if not 1 <= self.hg_dim <= 1024 or len(self.mlp_dim) < 2 \
                or any(not 1 <= d <= 4096 for d in self.mlp_dim):
            problems.append(f"hg_dim {self.hg_dim} / mlp_dim {list(self.mlp_dim)} out of range")
        if self.mlp_dim and self.mlp_dim[-1] != 1:
            problems.append(f"mlp_dim must end in 1, got {list(self.mlp_dim)}")
        if any(not 0 <= r < len(self.mlp_dim) - 1 for r in self.mlp_res_layers):
            problems.append(f"mlp_res_layers {list(self.mlp_res_layers)} outside the MLP's layers")
        if self.mlp_norm not in MLP_NORMS:
            problems.append(f"mlp_norm must be one of {MLP_NORMS}, got {self.mlp_norm!r}")
        if self.norm != "group":
            problems.append(f"norm {self.norm!r} is not supported (the release uses 'group')")
        if self.hg_down not in DOWN_TYPES:
            problems.append(f"hg_down must be one of {DOWN_TYPES}, got {self.hg_down!r}")
        if not 16 <= self.loadSize <= 4096 or not 16 <= self.loadSizeBig <= 4096 or self.z_size <= 0:
            problems.append("loadSize / loadSizeBig / z_size out of range")
        if not 1 <= self.normal_ngf <= 64:
            problems.append(f"normal_ngf must be in 1..64, got {self.normal_ngf}")
        if problems:
            raise InputError("invalid PIFuHD options: " + "; ".join(problems))

    def to_namespace(self) -> argparse.Namespace:
        """The options as the ``argparse.Namespace`` a release-layout checkpoint stores."""
        d = dataclasses.asdict(self)
        d["mlp_dim"] = list(self.mlp_dim)
        d["mlp_res_layers"] = list(self.mlp_res_layers)
        return argparse.Namespace(**d)


def release_options() -> tuple[LevelOptions, LevelOptions]:
    """(fine ``opt``, coarse ``opt_netG``) with the sizes of the released model: coarse 4 stacks of
    depth 2 on 512² with both normal maps, Ω after layer 2 (256 channels); fine 1 stack of depth 4 with
    16 output channels on 1024². A loaded checkpoint always uses its own stored values instead."""
    coarse = LevelOptions(num_stack=4, hg_depth=2, hg_dim=256, mlp_dim=(257, 1024, 512, 256, 128, 1),
                          mlp_res_layers=(2, 3, 4), merge_layer=2, mlp_norm="none", hg_down="ave_pool",
                          loadSize=512, z_size=200.0, use_front_normal=True, use_back_normal=True)
    fine = LevelOptions(num_stack=1, hg_depth=4, hg_dim=16, mlp_dim=(272, 512, 256, 128, 1),
                        mlp_res_layers=(2, 3), mlp_norm="none", hg_down="no_down", loadSize=1024,
                        loadSizeBig=1024)
    return fine, coarse


def small_options(load_size: int = 64, normals: bool = True, normal_ngf: int = 8,
                  ) -> tuple[LevelOptions, LevelOptions]:
    """A CPU-sized model with the release's structure (same keys): ``load_size`` coarse input, twice
    that for the fine level, one coarse stack, narrow MLPs and normal nets of width ``normal_ngf``."""
    coarse = LevelOptions(num_stack=1, hg_depth=2, hg_dim=32, mlp_dim=(33, 64, 48, 32, 16, 1),
                          mlp_res_layers=(2, 3, 4), merge_layer=2, mlp_norm="none", hg_down="ave_pool",
                          loadSize=load_size, z_size=200.0 * load_size / 512, use_front_normal=normals,
                          use_back_normal=normals, normal_ngf=normal_ngf)
    fine = LevelOptions(num_stack=1, hg_depth=2, hg_dim=16, mlp_dim=(48, 64, 32, 16, 1),
                        mlp_res_layers=(2, 3), mlp_norm="none", hg_down="no_down",
                        loadSize=2 * load_size, loadSizeBig=2 * load_size)
    return fine, coarse


# -- nets ----------------------------------------------------------------------------------------------
class HGFilterHD(nn.Module):
    """PIFuHD's stacked-hourglass filter: the official ``HGFilter`` with ``in_ch`` input channels and
    the fixed 64 → 128 → 256 trunk. ``ave_pool`` (coarse) halves the stem output, ``no_down`` (fine)
    keeps it, so features are 1/4 or 1/2 of the input side. Returns every stack's output."""

    def __init__(self, stacks: int, depth: int, in_ch: int, out_ch: int, down: str) -> None:
        super().__init__()
        self.stacks = stacks
        self.down = down
        self.conv1 = nn.Conv2d(in_ch, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = group_norm(64, 32)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        for i in range(stacks):
            self.add_module(f"m{i}", HourGlass(depth, 256))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, kernel_size=1))
            self.add_module(f"bn_end{i}", group_norm(256, 32))
            self.add_module(f"l{i}", nn.Conv2d(256, out_ch, kernel_size=1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(out_ch, 256, kernel_size=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv2(F.relu(self.bn1(self.conv1(x)), True))
        if self.down == "ave_pool":
            x = F.avg_pool2d(x, 2, stride=2)
        previous = self.conv4(self.conv3(x))
        outputs = []
        for i in range(self.stacks):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)), True)
            out = self._modules[f"l{i}"](ll)
            outputs.append(out)
            if i < self.stacks - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](out)
        return outputs


class MLPHD(nn.Module):
    """PIFuHD's point MLP: 1x1 convs ``filters.l``; layers in ``res_layers`` also see the MLP input;
    LeakyReLU(0.01) (after ``norms.l`` when ``norm`` is group/batch) between layers; sigmoid at the end.
    Returns (output, Ω) with Ω the activation after layer ``merge``."""

    def __init__(self, dims: tuple[int, ...], res_layers: tuple[int, ...], norm: str, merge: int) -> None:
        super().__init__()
        self.res_layers = tuple(res_layers)
        self.merge = merge
        self.norm = norm
        self.filters = nn.ModuleList()
        self.norms = nn.ModuleList()
        for layer in range(len(dims) - 1):
            extra = dims[0] if layer in self.res_layers else 0
            self.filters.append(nn.Conv1d(dims[layer] + extra, dims[layer + 1], 1))
            if layer != len(dims) - 2 and norm in ("group", "batch"):
                self.norms.append(nn.GroupNorm(32, dims[layer + 1]) if norm == "group"
                                  else nn.BatchNorm1d(dims[layer + 1]))

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = feature
        phi = None
        last = len(self.filters) - 1
        for i, f in enumerate(self.filters):
            y = f(torch.cat([y, feature], 1) if i in self.res_layers else y)
            if i != last:
                y = F.leaky_relu(self.norms[i](y) if len(self.norms) else y)
            if i == self.merge:
                phi = y
        return torch.sigmoid(y), phi


def _in_box(xyz: torch.Tensor, with_z: bool) -> torch.Tensor:
    ok = (xyz[:, 0] >= -1) & (xyz[:, 0] <= 1) & (xyz[:, 1] >= -1) & (xyz[:, 1] <= 1)
    if with_z:
        ok = ok & (xyz[:, 2] >= -1) & (xyz[:, 2] <= 1)
    return ok.unsqueeze(1).to(xyz.dtype)


class CoarseLevel(nn.Module):
    """The coarse level (``netG``): image filter, MLP and the optional front/back normal nets.

    ``filter`` predicts the normal maps (kept on ``nml_f`` / ``nml_b``, without gradients unless
    ``normal_grad``) and encodes [image, normals]; ``query`` stores every stack's occupancy and Ω.
    Points outside the [-1, 1]³ view volume are outside (occupancy 0), as officially.
    """

    def __init__(self, opt: LevelOptions, init: bool = True) -> None:
        super().__init__()
        self.opt = opt
        self.image_filter = HGFilterHD(opt.num_stack, opt.hg_depth, 3 + opt.normal_channels, opt.hg_dim,
                                       opt.hg_down)
        self.mlp = MLPHD(opt.mlp_dim, opt.mlp_res_layers, opt.mlp_norm, opt.merge_index)
        if init:
            init_weights(self)
        self.netF = GlobalGenerator(ngf=opt.normal_ngf) if opt.use_front_normal else None
        self.netB = GlobalGenerator(ngf=opt.normal_ngf) if opt.use_back_normal else None
        if init:
            for net in (self.netF, self.netB):
                if net is not None:
                    init_pix2pixhd(net)
        self.normal_grad = False
        self.nml_f: torch.Tensor | None = None
        self.nml_b: torch.Tensor | None = None
        self.im_feat_list: list[torch.Tensor] = []
        self.preds_list: list[torch.Tensor] = []
        self.phi: torch.Tensor | None = None

    @property
    def depth_scale(self) -> float:
        return (self.opt.loadSize // 2) / self.opt.z_size

    def normals(self, images: torch.Tensor) -> list[torch.Tensor]:
        grad = contextlib.nullcontext() if self.normal_grad else torch.no_grad()
        with grad:
            self.nml_f = self.netF(images) if self.netF is not None else None
            self.nml_b = self.netB(images) if self.netB is not None else None
        return [n for n in (self.nml_f, self.nml_b) if n is not None]

    def filter(self, images: torch.Tensor, normals: list[torch.Tensor] | None = None) -> None:
        """Encode [B, 3, S, S] images (S = ``loadSize``); ``normals`` replaces the predicted maps
        (training the coarse level on ground-truth normals)."""
        nmls = self.normals(images) if normals is None else list(normals)
        if normals is not None and len(normals) == 2:
            self.nml_f, self.nml_b = normals
        if nmls:
            nml = torch.cat(nmls, 1)
            if nml.shape[2:] != images.shape[2:]:
                nml = F.interpolate(nml, size=images.shape[2:], mode="bilinear", align_corners=True)
            images = torch.cat([images, nml], 1)
        feats = self.image_filter(images)
        self.im_feat_list = feats if self.training else feats[-1:]

    def query(self, points: torch.Tensor, calibs: torch.Tensor) -> torch.Tensor:
        if not self.im_feat_list:
            raise RuntimeError("query before filter: encode an image first")
        xyz = orthogonal(points, calibs)
        xy = xyz[:, :2]
        z_feat = xyz[:, 2:3] * self.depth_scale
        inside = _in_box(xyz, with_z=True)
        preds = []
        for feat in self.im_feat_list:
            pred, self.phi = self.mlp(torch.cat([index(feat, xy), z_feat], 1))
            preds.append(inside * pred)
        self.preds_list = preds
        return preds[-1]


class PIFuHD(nn.Module):
    """The multi-level model (official ``HGPIFuMRNet`` layout): fine ``image_filter`` and ``mlp`` on top
    of the coarse level ``netG``.

    Shapes: ``images_big`` [B, 3, L, L] with L = ``opt.loadSizeBig`` (1024 released) and ``images``
    [B, 3, S, S] with S = ``opt_netG.loadSize`` (512), both the masked network input in [-1, 1];
    points [B, 3, N] canonical, calibs [B, 4, 4]; occupancy [B, 1, N] in [0, 1].
    """

    def __init__(self, opt: LevelOptions, opt_netG: LevelOptions, init: bool = True) -> None:  # noqa: N803
        super().__init__()
        ch = opt_netG.mlp_dim[opt_netG.merge_index + 1]
        if opt_netG.mlp_dim[0] != opt_netG.hg_dim + 1 or opt.mlp_dim[0] != opt.hg_dim + ch:
            raise InputError(f"invalid PIFuHD options: coarse mlp_dim[0] must be hg_dim + 1 = "
                             f"{opt_netG.hg_dim + 1} and fine mlp_dim[0] must be hg_dim + Ω = "
                             f"{opt.hg_dim} + {ch}, got "
                             f"{opt_netG.mlp_dim[0]} and {opt.mlp_dim[0]}")
        self.opt = opt
        self.opt_netG = opt_netG
        build = contextlib.nullcontext() if init else torch.device("meta")
        with build:
            self.image_filter = HGFilterHD(opt.num_stack, opt.hg_depth, 3 + opt_netG.normal_channels,
                                           opt.hg_dim, "no_down")
            self.mlp = MLPHD(opt.mlp_dim, opt.mlp_res_layers, opt.mlp_norm, opt.merge_index)
            if init:
                init_weights(self)
            self.netG = CoarseLevel(opt_netG, init=init)
        self.coarse_frozen = not opt.train_full_pifu
        self.im_feat_list: list[torch.Tensor] = []
        self.preds_list: list[torch.Tensor] = []

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def load_size(self) -> int:
        return self.opt.loadSizeBig

    def train(self, mode: bool = True) -> PIFuHD:
        """As officially: the coarse level stays in eval mode unless ``train_full_pifu``."""
        super().train(mode)
        if self.coarse_frozen:
            self.netG.eval()
        return self

    def filter_global(self, images: torch.Tensor, normals: list[torch.Tensor] | None = None) -> None:
        grad = torch.no_grad() if self.coarse_frozen else contextlib.nullcontext()
        with grad:
            self.netG.filter(images, normals)

    def filter_local(self, images_big: torch.Tensor) -> None:
        nmls = [n for n in (self.netG.nml_f, self.netG.nml_b) if n is not None]
        if nmls:
            size = images_big.shape[2:]
            nml = F.interpolate(torch.cat(nmls, 1), size=size, mode="bilinear", align_corners=True)
            images_big = torch.cat([images_big, nml], 1)
        feats = self.image_filter(images_big)
        self.im_feat_list = feats if self.training else feats[-1:]

    def encode(self, images_big: torch.Tensor, images: torch.Tensor | None = None) -> None:
        """Encode both levels; ``images`` defaults to ``images_big`` area-resized to the coarse size."""
        big, small = self.opt.loadSizeBig, self.opt_netG.loadSize
        if images_big.dim() != 4 or images_big.shape[1] != 3 or tuple(images_big.shape[2:]) != (big, big):
            raise InputError(f"images must be [B, 3, {big}, {big}], got {list(images_big.shape)}")
        if images is None:
            images = F.interpolate(images_big, size=(small, small), mode="area")
        self.filter_global(images)
        self.filter_local(images_big)

    def query(self, points: torch.Tensor, calibs: torch.Tensor) -> torch.Tensor:
        """Fine occupancy [B, 1, N] (every fine stack's lands in ``preds_list``, the coarse level's in
        ``netG.preds_list``). Points outside the image's x/y range are outside."""
        if not self.im_feat_list:
            raise RuntimeError("query before filter: encode an image first")
        xyz = orthogonal(points, calibs)
        xy = xyz[:, :2]
        inside = _in_box(xyz, with_z=False)
        grad = torch.no_grad() if self.coarse_frozen else contextlib.nullcontext()
        with grad:
            self.netG.query(points, calibs)
        omega = self.netG.phi
        preds = [inside * self.mlp(torch.cat([index(feat, xy), omega], 1))[0] for feat in self.im_feat_list]
        self.preds_list = preds
        return preds[-1]

    def query_occupancy(self, points: torch.Tensor, calibs: torch.Tensor, *, fast: bool = False
                        ) -> torch.Tensor:
        """The reconstruction interface of :class:`~backend.models.pifu.PIFu` (``fast`` is ignored:
        PIFuHD has no pre-projected path)."""
        return self.query(points, calibs)

    def forward(self, images_big: torch.Tensor, points: torch.Tensor, calibs: torch.Tensor) -> torch.Tensor:
        self.encode(images_big)
        return self.query(points, calibs)


# -- checkpoints (release layout) ------------------------------------------------------------------------
MAX_PIFUHD_BYTES = 4 << 30   # the release holds about 1.5 GB of float32 weights


def read_release(path: str | Path) -> dict:
    """``torch.load`` a release-layout file: tensors, plain containers and ``argparse.Namespace`` only
    (``weights_only=True`` with that one class allow-listed), memory-mapped where the file format
    allows it so the weights are not read into memory twice."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"PIFuHD checkpoint not found: {path}")
    import pickle

    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                obj = torch.load(path, map_location="cpu", weights_only=True)   # legacy (pre-zip) file
        except pickle.UnpicklingError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln]
            why = lines[0] if lines else "it holds objects other than tensors, containers and Namespace"
            raise InputError(f"{path}: refusing to unpickle it ({why})") from exc
        except Exception as exc:  # noqa: BLE001 - junk bytes fail in many ways
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{path}: not a readable PyTorch checkpoint ({first})") from exc
    if not isinstance(obj, dict) or "model_state_dict" not in obj:
        raise InputError(f"{path}: not a PIFuHD checkpoint (expected a dict with 'model_state_dict', "
                         f"'opt' and 'opt_netG')")
    for key in ("opt", "opt_netG"):
        if key not in obj:
            raise InputError(f"{path}: PIFuHD checkpoint lacks '{key}' (the options its nets are built from)")
    return obj


def load_pifuhd(path: str | Path, device: str | torch.device | None = None) -> tuple[PIFuHD, dict]:
    """Build the nets from the file's stored options and load ``model_state_dict`` strictly ->
    (model in eval mode on ``device``, the file's other entries). The nets are built on the ``meta``
    device and take the loaded (memory-mapped) tensors as they are, so the weights exist once."""
    from backend.models.checkpoint import _state_dict, load_strict
    from backend.models.device import resolve_device

    obj = read_release(path)
    opt = LevelOptions.from_namespace(obj["opt"], f"{Path(path).name}: opt")
    opt_g = LevelOptions.from_namespace(obj["opt_netG"], f"{Path(path).name}: opt_netG")
    model = PIFuHD(opt, opt_g, init=False)
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if size > MAX_PIFUHD_BYTES:
        raise InputError(f"{Path(path).name}: its options describe {size / 2**30:.1f} GiB of weights, over "
                         f"the limit of {MAX_PIFUHD_BYTES / 2**30:.0f} GiB")
    state = _state_dict(obj["model_state_dict"], f"{path} model_state_dict")
    load_strict(model, state, f"PIFuHD {path}", assign=True)
    model.eval()
    rest = {k: v for k, v in obj.items() if k not in ("model_state_dict", "opt", "opt_netG")}
    return model.to(resolve_device(device)), rest


def verify_pifuhd(path: str | Path) -> dict[str, Any]:
    """Check that a ``pifuhd.pt`` loads strictly into the multi-level model (for a weights fetcher):
    returns a summary, raises :class:`InputError` naming the problem otherwise."""
    model, _ = load_pifuhd(path, device="cpu")
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "normal_nets": [n for n in ("netF", "netB") if getattr(model.netG, n) is not None],
            "coarse_size": model.opt_netG.loadSize, "fine_size": model.opt.loadSizeBig}


def save_pifuhd(path: str | Path, model: PIFuHD, train_state: dict | None = None) -> Path:
    """Write the release layout: ``model_state_dict``, ``opt`` and ``opt_netG`` (Namespaces), plus
    avatex's optional ``train_state`` (plain containers) which the official code ignores. Atomic."""
    from backend.models.checkpoint import _check_plain, _cpu_state, _save_torch

    payload: dict[str, Any] = {"model_state_dict": _cpu_state(model), "opt": model.opt.to_namespace(),
                               "opt_netG": model.opt_netG.to_namespace()}
    if train_state:
        _check_plain(dict(train_state), "train_state")
        payload["train_state"] = dict(train_state)
    path = Path(path)
    _save_torch(path, payload)
    return path
