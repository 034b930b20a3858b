"""Checkpoint I/O: the official PIFu ``net_G`` / ``net_C`` files and avatex's own format.

Nothing here unpickles arbitrary objects: every file is read with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers (dict, list, tuple, str, numbers, None) and also reads
the legacy (pre-1.6, non-zip) serialisation the released files may use.

Official files are raw state_dicts (no wrapper, no ``module.`` prefix). They are loaded *strictly*: a
missing, unexpected or reshaped key is an :class:`InputError` that names the keys. The colour net's
variant is read from the keys (``image_filter.model.2.weight`` present -> GroupNorm as released, absent
-> InstanceNorm, the code's default), so the classic "Missing key image_filter.model.2.weight" trap of
the official code cannot happen.

avatex checkpoints are one ``torch.save`` file of plain containers (docs/models.md)::

    {"format": "avatex-pifu", "version": 1, "config": ModelConfig.to_dict(),
     "net_g": state_dict, "net_c": state_dict | None, "train_state": {...}}

``train_state`` is whatever exact resume needs (step, optimizer state, RNG states...), restricted to
tensors and plain containers so it stays loadable with ``weights_only=True``; :func:`save_checkpoint`
rejects anything else up front, naming where it sits.

A checkpoint is a file anyone may hand over, so reading one trusts nothing in it: the version must be
an integer, the config passes the server's one schema (``backend.server.schema.MODEL_CONFIG``: every
field typed and bounded), the nets it describes are sized on PyTorch's ``meta`` device (no memory)
and refused above :data:`MAX_MODEL_BYTES`, and every state dict must map strings to tensors. Each
failure is one :class:`InputError` line naming the file and the field.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avatex_core.atomic import atomic_path, write_json
from backend.errors import InputError
from backend.models.config import ModelConfig
from backend.models.device import resolve_device
from backend.models.pifu import PIFu

FORMAT = "avatex-pifu"
VERSION = 1
OFFICIAL_NAMES = ("net_G", "net_C")
GROUP_NORM_KEY = "image_filter.model.2.weight"
_LIST_LIMIT = 8
MAX_MODEL_BYTES = 2 << 30   # float32 weights of both nets; the official pair holds about 95 MiB


# -- reading -----------------------------------------------------------------------------------------
def _torch_load(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()
                 if "Unsupported" in ln or "WeightsUnpickler" in ln]
        why = lines[0] if lines else "it holds objects other than tensors and plain containers"
        raise InputError(f"{path}: refusing to unpickle it: not a plain tensor checkpoint ({why})") from exc
    except Exception as exc:  # noqa: BLE001 - junk bytes make the unpickler fail in many ways
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({first})") from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A raw state_dict file as ``{key: tensor}``; a uniform ``module.`` (DataParallel) prefix is dropped."""
    obj = _torch_load(path)
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: expected a state_dict (a mapping of names to tensors), "
                         f"got {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        raise InputError(f"{path} is an avatex checkpoint, not an official net_G/net_C file: "
                         "load it with --checkpoint / load_checkpoint")
    state = _state_dict(obj, str(path))
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _state_dict(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """``obj`` as a state dict, or :class:`InputError` naming the entries that are not str → tensor."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{what}: expected a state_dict (a mapping of names to tensors), "
                         f"got {type(obj).__name__}")
    bad = [repr(k) if not isinstance(k, str) else k for k, v in obj.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{what}: not a state_dict, entries that are not name → tensor: {_names(bad)}")
    return dict(obj)


def check_model_size(config: ModelConfig, what: str = "the model") -> int:
    """The weight bytes of the nets ``config`` describes, counted on the ``meta`` device (nothing is
    allocated); :class:`InputError` above :data:`MAX_MODEL_BYTES`."""
    with torch.device("meta"):
        model = PIFu(config, with_color=True, init=False)
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if size > MAX_MODEL_BYTES:
        raise InputError(f"{what} would hold {size / 2**30:.1f} GiB of weights, over the limit of "
                         f"{MAX_MODEL_BYTES / 2**30:.0f} GiB: its config is not a usable PIFu")
    return size


def _model_config(obj: Mapping, path: str | Path) -> ModelConfig:
    """The checkpoint's architecture, typed, bounded and sized before any net is built."""
    from backend.server.schema import MODEL_CONFIG, validate_fields

    fields = validate_fields(f"{Path(path).name}: config", MODEL_CONFIG, obj["config"])
    fields = {k: v for k, v in fields.items() if v is not None}
    config = ModelConfig.from_dict(fields)
    check_model_size(config, f"{Path(path).name}: the model")
    return config


def detect_color_norm(state: Mapping[str, torch.Tensor]) -> str:
    """``group`` (released net_C) if the first norm's parameters (``image_filter.model.2.weight`` or
    its bias) are present, else ``instance``. Looking at the bias too means a file that lost only
    ``model.2.weight`` is reported as missing that key rather than misread as the other variant."""
    group_keys = (GROUP_NORM_KEY, GROUP_NORM_KEY.replace("weight", "bias"))
    return "group" if any(k in state for k in group_keys) else "instance"


def _names(keys: list[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > _LIST_LIMIT else "")


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`InputError` naming every missing, unexpected and reshaped key."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} (expected {list(expected[k])}, got {list(state[k].shape)})"
                for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing key(s): {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {_names(unexpected)}")
    if reshaped:
        problems.append(f"wrong shape: {_names(reshaped)}")
    if problems:
        raise InputError(f"{what} does not match the model architecture: " + "; ".join(problems))


def _aliases(module: nn.Module) -> list[list[str]]:
    """Groups of state_dict keys that name the same tensor (PIFu's ``bn4`` == ``downsample.0``)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, *,
                assign: bool = False) -> None:
    """Check ``state`` against ``module`` key by key and shape by shape, then load it.

    Aliased keys must carry one tensor; if a file holds different values under the two names (the
    released files cannot: torch.save stores an alias once), the one the forward pass reads
    (``downsample.0``, loaded last by PyTorch too) wins and a warning names the keys. ``assign`` makes
    the module take the given tensors instead of copying them (for nets built on the meta device).
    """
    check_state_dict(module, state, what)
    state = dict(state)
    differing = []
    for names in _aliases(module):
        used = next((n for n in names if ".downsample." in n), names[-1])
        for n in names:
            if n != used and not torch.equal(state[n], state[used]):
                differing.append(n)
                state[n] = state[used]
    if differing:
        warnings.warn(f"{what}: aliased keys hold different values, using the downsample.0 copy for "
                      f"{_names(differing)}", stacklevel=2)
    module.load_state_dict(state, strict=True, assign=assign)


# -- official files ------------------------------------------------------------------------------------
OFFICIAL_LAYOUTS = ("net_G", "net_C_group", "net_C_instance")


def official_layout(which: str) -> list[tuple[str, tuple[int, ...]]]:
    """The released checkpoints' exact state_dict layout, ``[(key, shape), ...]`` in order, for
    ``net_G``, ``net_C_group`` (released net_C) or ``net_C_instance`` (the code's default options).

    Shipped as ``official_keys.json`` (the key lists measured on the official
    classes); :func:`export_official` checks official-size exports against it.
    """
    if which not in OFFICIAL_LAYOUTS:
        raise ValueError(f"which must be one of {OFFICIAL_LAYOUTS}, got {which!r}")
    data = json.loads((Path(__file__).with_name("official_keys.json")).read_text(encoding="utf-8"))
    return [(k, tuple(shape)) for k, shape in data[which]]


def load_official(net_g_path: str | Path, net_c_path: str | Path | None = None, *,
                  config: ModelConfig | None = None, upsample: str | None = None,
                  device: str | torch.device | None = None) -> PIFu:
    """Load the official ``net_G`` (and ``net_C``) state_dict files strictly into a :class:`PIFu`.

    ``config`` defaults to :meth:`ModelConfig.official`; the colour norm is always taken from the
    net_C keys. ``upsample`` overrides the hourglass upsampling (``bicubic`` / ``nearest``).
    """
    config = config or ModelConfig.official()
    state_g = read_state_dict(net_g_path)
    state_c = read_state_dict(net_c_path) if net_c_path is not None else None
    changes: dict[str, Any] = {}
    if state_c is not None:
        changes["norm_color"] = detect_color_norm(state_c)
    if upsample is not None:
        changes["upsample"] = upsample
    if changes:
        config = config.replace(**changes)
    model = PIFu(config, with_color=state_c is not None, init=False)
    load_strict(model.net_g, state_g, f"net_G {net_g_path}")
    if state_c is not None:
        load_strict(model.net_c, state_c, f"net_C {net_c_path} (norm_color={config.norm_color})")
    model.eval()
    return model.to(resolve_device(device))


def export_official(model: PIFu, out_dir: str | Path) -> dict[str, Path]:
    """Write ``net_G`` (and ``net_C``) as raw state_dicts, the layout the official PIFu tools load
    (``torch.load`` + strict ``load_state_dict``), plus ``avatex_config.json`` describing the options
    they need. Returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    states = {"net_G": _cpu_state(model.net_g)}
    if model.net_c is not None:
        states["net_C"] = _cpu_state(model.net_c)
    if official_options(model.config)["official_code_compatible"] and model.config == ModelConfig.official(
            norm_color=model.config.norm_color, upsample=model.config.upsample):
        for name, state in states.items():
            which = name if name == "net_G" else f"net_C_{model.config.norm_color}"
            layout = [(k, tuple(v.shape)) for k, v in state.items()]
            if layout != official_layout(which):
                raise RuntimeError(f"internal error: {name} layout differs from the official {which}")
    written = {}
    for name, state in states.items():
        written[name] = out / name
        _save_torch(written[name], state)
    written["config"] = out / "avatex_config.json"
    write_json(written["config"], {"config": model.config.to_dict(),
                                   "official_options": official_options(model.config)})
    return written


def official_options(config: ModelConfig) -> dict[str, Any]:
    """The official ``lib/options.py`` arguments that rebuild these nets (where the official code can)."""
    return {
        "loadSize": config.load_size, "num_stack": config.num_stack, "num_hourglass": config.hg_depth,
        "hourglass_dim": config.hourglass_dim, "hg_down": "ave_pool", "norm": "group",
        "norm_color": config.norm_color, "mlp_dim": list(config.mlp_dim),
        "mlp_dim_color": list(config.mlp_dim_color), "no_residual": not config.mlp_residual,
        "z_size": config.z_size, "skip_hourglass": False, "use_tanh": False,
        "official_code_compatible": config.hg_width == 256 and config.color_ngf == 64
        and config.color_blocks == 6 and config.norm_groups == 32,
    }


# -- avatex checkpoints ----------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, model: PIFu, train_state: Mapping[str, Any] | None = None) -> Path:
    """Write weights + config + training state atomically (one ``torch.save`` of plain containers)."""
    train_state = dict(train_state or {})
    _check_plain(train_state, "train_state")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "net_g": _cpu_state(model.net_g),
        "net_c": _cpu_state(model.net_c) if model.net_c is not None else None,
        "train_state": train_state,
    }
    _check_plain(payload["config"], "config")
    path = Path(path)
    _save_torch(path, payload)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device | None = None) -> tuple[PIFu, dict]:
    """Load an avatex checkpoint -> (model in eval mode on ``device``, training state dict)."""
    obj = _torch_load(path)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        if isinstance(obj, Mapping) and any(str(k).startswith(("image_filter.", "surface_classifier."))
                                            for k in obj):
            raise InputError(f"{path} is an official PIFu state_dict, not an avatex checkpoint: "
                             "pass it as --net-g/--net-c (load_official)")
        raise InputError(f"{path} is not an avatex checkpoint (no '{FORMAT}' format tag)")
    version = obj.get("version", 0)
    if type(version) is not int:
        raise InputError(f"{path}: checkpoint version must be an integer, got {version!r:.40}")
    if version > VERSION:
        raise InputError(f"{path} was written by a newer avatex (checkpoint version {version})")
    for key in ("config", "net_g"):
        if key not in obj:
            raise InputError(f"{path}: avatex checkpoint lacks '{key}'")
    config = _model_config(obj, path)
    state_g = _state_dict(obj["net_g"], f"{path} net_g")
    state_c = None if obj.get("net_c") is None else _state_dict(obj["net_c"], f"{path} net_c")
    train_state = obj.get("train_state") or {}
    if not isinstance(train_state, Mapping):
        raise InputError(f"{path}: train_state must be a mapping, got {type(train_state).__name__}")
    model = PIFu(config, with_color=state_c is not None, init=False)
    load_strict(model.net_g, state_g, f"{path} net_g")
    if state_c is not None:
        load_strict(model.net_c, state_c, f"{path} net_c")
    model.eval()
    return model.to(resolve_device(device)), dict(train_state)


def load_models(checkpoint: str | Path | None = None, net_g: str | Path | None = None,
                net_c: str | Path | None = None, device: str | torch.device | None = None) -> PIFu:
    """One entry point for the CLI and the server: an avatex checkpoint, or official net_G [+ net_C]."""
    if checkpoint is not None and (net_g is not None or net_c is not None):
        raise InputError("give either a checkpoint or net_G/net_C files, not both")
    if checkpoint is not None:
        return load_checkpoint(checkpoint, device)[0]
    if net_g is None:
        raise InputError("no model given: pass a checkpoint, or net_G (and net_C) files"
                         if net_c is None else "net_C needs its net_G: pass both files")
    return load_official(net_g, net_c, device=device)


# -- helpers -------------------------------------------------------------------------------------------
def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict on the CPU with aliases kept as one tensor, so torch.save writes them once."""
    moved: dict[tuple[str, int], torch.Tensor] = {}
    out = {}
    for k, v in module.state_dict().items():
        key = (str(v.device), v.data_ptr())
        if key not in moved:
            moved[key] = v.detach().cpu()
        out[k] = moved[key]
    return out


def _save_torch(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


_PLAIN_SCALARS = (bool, int, float, str, bytes, type(None))
_PLAIN_MAPPINGS = (dict, OrderedDict)
_PLAIN_SEQUENCES = (list, tuple)


def _check_plain(obj: Any, where: str) -> None:
    """Only what ``torch.load(weights_only=True)`` rebuilds: tensors, numbers, strings, None, and
    dicts / lists / tuples of them. Types are checked exactly: a numpy float is a ``float`` subclass
    that pickles as a numpy object, which the safe loader would then refuse."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN_SCALARS:
        return
    if type(obj) in _PLAIN_MAPPINGS:
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise InputError(f"{where}: key {k!r} is a {type(k).__name__}; use str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if type(obj) in _PLAIN_SEQUENCES:
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise InputError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which a weights_only "
                     "checkpoint cannot hold: convert it to a tensor, number, string or plain container")
