"""Loading upstream checkpoints into zoo modules: never executes code, strict key matching."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vcc.errors import VccError

WRAPPER_KEYS = ("model_state", "state_dict", "model", "net", "params")
_SHOW = 5


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A checkpoint file as a flat state_dict: unwrapped from {'model_state'|'state_dict'|'model':
    ...} and stripped of a DataParallel 'module.' prefix. Loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise VccError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise VccError(f"{path}: refused to load: the checkpoint holds objects other than tensors "
                       f"(weights_only=True): {str(e).splitlines()[0]}") from e
    except Exception as e:
        raise VccError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from e
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise VccError(f"{path}: no state_dict found (top-level keys: {keys}); expected a state_dict "
                       f"or a dict wrapping one under {', '.join(WRAPPER_KEYS)}")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) for k in obj) and \
        all(isinstance(v, torch.Tensor) for v in obj.values())


def load_checkpoint(module: nn.Module, path: str | os.PathLike) -> None:
    """Load `path` into `module` with strict key and shape matching; a mismatch is a VccError
    listing the first missing, unexpected and mis-shaped keys."""
    sd = read_state_dict(path)
    own = module.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    misshaped = [f"{k} {list(sd[k].shape)} vs expected {list(own[k].shape)}"
                 for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
                parts.append(f"{len(keys)} {what}: {', '.join(keys[:_SHOW])}{more}")
        raise VccError(f"{path}: the checkpoint does not fit {type(module).__name__}: " + "; ".join(parts))
    bad = [k for k, v in sd.items() if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (+{len(bad) - _SHOW} more)" if len(bad) > _SHOW else ""
        raise VccError(f"{path}: {len(bad)} checkpoint tensors hold NaN or infinite values: "
                       f"{', '.join(bad[:_SHOW])}{more}")
    wrong = [f"{k} {sd[k].dtype}" for k in own if k in sd and own[k].is_floating_point() != sd[k].is_floating_point()]
    if wrong:
        raise VccError(f"{path}: checkpoint tensors of the wrong kind (float vs integer): {', '.join(wrong[:_SHOW])}")
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v
    module.load_state_dict(sd, strict=True)
