"""The table of zoo architectures: one :class:`ZooModel` entry per seed model.

Each family module (``bisenet_face.py``, ``parsenet.py``, ``human_seg.py``, ``hrnet.py``,
``deeplab.py``) calls :func:`register` at import time; ``vcc.frontends.zoo`` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ZooModel:
    """One seed architecture.

    build(num_classes) returns the module exactly as upstream builds it for training
    (auxiliary heads included where upstream has them), so that upstream checkpoints load
    with strict key matching and the parameter count matches the seed table.

    main_logits(module, x) runs the eval-mode module and returns the main logits (auxiliary
    outputs dropped); they may be smaller than the input: the export appends the bilinear
    resize to the input size.
    """

    name: str
    family: str
    build: Callable[[int], nn.Module]
    main_logits: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    classes: int
    input_size: tuple[int, int]  # (H, W) of the seed card
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    seed_params_m: str = ""  # the seed table's "Params (M)" exactly as printed, e.g. "13.300"
    seed_flops_g: str = ""  # the seed table's FLOPs figure as printed, with its shape note
    upstream: str = ""  # repository and file the module structure follows


_REGISTRY: dict[str, ZooModel] = {}


def register(entry: ZooModel) -> ZooModel:
    if entry.name in _REGISTRY:
        raise ValueError(f"zoo model {entry.name!r} registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def registered() -> dict[str, ZooModel]:
    return dict(_REGISTRY)
