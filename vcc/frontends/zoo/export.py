"""Zoo model -> ONNX with vcc metadata; parameter and MAC counts of the zoo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vcc.frontends.torch_export import export_torch
from vcc.frontends.zoo import get_model
from vcc.frontends.zoo.checkpoint import load_checkpoint
from vcc.frontends.zoo.registry import ZooModel
from vcc.ir.preprocess import METADATA_KEY

SEED = 0


class MainLogits(nn.Module):
    """The exported graph: the model's main logits, resized (bilinear) to the input size."""

    def __init__(self, entry: ZooModel, module: nn.Module):
        super().__init__()
        self.entry = entry
        self.model = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.entry.main_logits(self.model, x)
        if tuple(y.shape[2:]) != tuple(x.shape[2:]):
            y = F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)
        return y


def build_zoo_module(name: str, weights: str | os.PathLike | None = None,
                     classes: int | None = None) -> tuple[ZooModel, nn.Module]:
    """The zoo module in eval mode: with `weights` loaded strictly, else a seeded initialisation."""
    entry = get_model(name)
    torch.manual_seed(SEED)
    module = entry.build(classes or entry.classes)
    if weights is not None:
        load_checkpoint(module, weights)
    return entry, module.eval()


def zoo_metadata(entry: ZooModel, classes: int, size: tuple[int, int], weights: str) -> dict[str, str]:
    pre = {"size": list(size), "mean": list(entry.mean), "std": list(entry.std), "color": "RGB"}
    return {METADATA_KEY: json.dumps(pre), "vcc.classes": str(classes), "vcc.model": entry.name,
            "vcc.weights": weights}


def export_zoo_model(name: str, out: str | os.PathLike, weights: str | os.PathLike | None = None,
                     size: tuple[int, int] | None = None, classes: int | None = None) -> Path:
    entry, module = build_zoo_module(name, weights, classes)
    size = tuple(size or entry.input_size)
    n_classes = classes or entry.classes
    desc = Path(weights).name if weights else f"seeded initialisation (torch.manual_seed({SEED}))"
    export_torch(MainLogits(entry, module), (1, 3, *size), out,
                 metadata=zoo_metadata(entry, n_classes, size, desc))
    return Path(out)


def export_trained_module(name: str, module: nn.Module, out: str | os.PathLike, size: tuple[int, int],
                          weights: str) -> Path:
    """A zoo model with weights vcc trained itself (2 classes) to ONNX with vcc metadata."""
    entry = get_model(name)
    export_torch(MainLogits(entry, module), (1, 3, *size), out, metadata=zoo_metadata(entry, 2, size, weights))
    module.eval()
    return Path(out)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_macs(entry: ZooModel, size: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of the main-logits forward at `size` (convolutions and linear
    layers), counted on the meta device: no memory, no arithmetic."""
    size = tuple(size or entry.input_size)
    with torch.device("meta"):
        torch.manual_seed(SEED)
        module = entry.build(entry.classes).eval()
        x = torch.empty(1, 3, *size)
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):
            total += inp[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        entry.main_logits(module, x)
    for h in handles:
        h.remove()
    return int(total)
