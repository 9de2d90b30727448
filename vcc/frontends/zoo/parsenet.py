"""GPEN's face-parsing ParseNet (yangxy/GPEN face_parse/parse_model.py + face_parse/blocks.py).

The blocks (from chaofengc/PSFRGAN models/blocks.py) hold their conv as ``conv2d``, their norm
as ``norm.norm`` and their activation as ``relu.func``; the parameter-free variants (no norm,
no activation, identity shortcut) are lambdas upstream and ``nn.Identity`` here, which adds no
state_dict keys either way. GPEN builds the net in face_parse/face_parsing.py as
``ParseNet(512, 512, 32, 64, 19, norm_type='bn', relu_type='LeakyReLU', ch_range=[32, 256])``.
The forward returns (parsing logits, reconstructed image); the first is the main output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vcc.errors import VccError
from vcc.frontends.zoo.registry import ZooModel, register


def _norm(kind: str, channels: int) -> nn.Module:
    norms = {
        "bn": lambda: nn.BatchNorm2d(channels, affine=True),
        "in": lambda: nn.InstanceNorm2d(channels, affine=False),
        "none": nn.Identity,
    }
    if kind.lower() not in norms:
        raise VccError(f"ParseNet: norm_type {kind!r} not supported ({', '.join(norms)})")
    return norms[kind.lower()]()


def _activation(kind: str, channels: int) -> nn.Module:
    acts = {
        "relu": lambda: nn.ReLU(True),
        "leakyrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
        "prelu": lambda: nn.PReLU(channels),
        "none": nn.Identity,
    }
    if kind.lower() not in acts:
        raise VccError(f"ParseNet: relu_type {kind!r} not supported ({', '.join(acts)})")
    return acts[kind.lower()]()


class NormLayer(nn.Module):
    def __init__(self, channels: int, norm_type: str = "bn") -> None:
        super().__init__()
        self.norm = _norm(norm_type, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ReluLayer(nn.Module):
    def __init__(self, channels: int, relu_type: str = "relu") -> None:
        super().__init__()
        self.func = _activation(relu_type, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)


class ConvLayer(nn.Module):
    """[nearest 2x up] -> reflection pad -> conv (stride 2 for 'down') -> norm -> activation.

    The conv has a bias unless the norm is BN.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 scale: str = "none", norm_type: str = "none", relu_type: str = "none") -> None:
        super().__init__()
        if scale not in ("none", "up", "down"):
            raise VccError(f"ParseNet ConvLayer: scale {scale!r} not supported")
        self.upsample = scale == "up"
        self.reflection_pad = nn.ReflectionPad2d(math.ceil((kernel_size - 1) / 2))
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size,
                                stride=2 if scale == "down" else 1, bias=norm_type != "bn")
        self.relu = ReluLayer(out_channels, relu_type)
        self.norm = NormLayer(out_channels, norm_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.relu(self.norm(self.conv2d(self.reflection_pad(x))))


class ResidualBlock(nn.Module):
    """Two ConvLayers plus a shortcut (a bias conv when the scale or width changes)."""

    _SCALES = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}

    def __init__(self, c_in: int, c_out: int, relu_type: str = "prelu", norm_type: str = "bn",
                 scale: str = "none") -> None:
        super().__init__()
        if scale not in self._SCALES:
            raise VccError(f"ParseNet ResidualBlock: scale {scale!r} not supported")
        if scale == "none" and c_in == c_out:
            self.shortcut_func: nn.Module = nn.Identity()
        else:
            self.shortcut_func = ConvLayer(c_in, c_out, 3, scale)
        first, second = self._SCALES[scale]
        self.conv1 = ConvLayer(c_in, c_out, 3, first, norm_type=norm_type, relu_type=relu_type)
        self.conv2 = ConvLayer(c_out, c_out, 3, second, norm_type=norm_type, relu_type="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_func(x) + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """Encoder (stride-2 residual blocks down to min_feat_size) -> residual body with a long
    skip -> decoder (nearest-up residual blocks back to out_size) -> mask and image heads."""

    def __init__(self, in_size: int = 128, out_size: int = 128, min_feat_size: int = 32,
                 base_ch: int = 64, parsing_ch: int = 19, res_depth: int = 10,
                 relu_type: str = "prelu", norm_type: str = "bn",
                 ch_range: tuple[int, int] = (32, 512)) -> None:
        super().__init__()
        act = {"norm_type": norm_type, "relu_type": relu_type}
        min_ch, max_ch = ch_range

        def clip(c: int) -> int:
            return max(min_ch, min(c, max_ch))

        min_feat_size = min(in_size, min_feat_size)
        down_steps = int(math.log2(in_size // min_feat_size))
        up_steps = int(math.log2(out_size // min_feat_size))

        encoder: list[nn.Module] = [ConvLayer(3, base_ch, 3, "none")]
        head = base_ch
        for _ in range(down_steps):
            encoder.append(ResidualBlock(clip(head), clip(head * 2), scale="down", **act))
            head *= 2
        body = [ResidualBlock(clip(head), clip(head), **act) for _ in range(res_depth)]
        decoder: list[nn.Module] = []
        for _ in range(up_steps):
            decoder.append(ResidualBlock(clip(head), clip(head // 2), scale="up", **act))
            head //= 2

        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*body)
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(head), 3)
        self.out_mask_conv = ConvLayer(clip(head), parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)


def build_parsenet(num_classes: int) -> ParseNet:
    """GPEN's FaceParse configuration (face_parse/face_parsing.py, ``load_model``)."""
    return ParseNet(512, 512, 32, 64, num_classes, norm_type="bn", relu_type="LeakyReLU",
                    ch_range=(32, 256))


def parsenet_main_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)[0]


register(ZooModel(
    name="parsenet",
    family="face",
    build=build_parsenet,
    main_logits=parsenet_main_logits,
    classes=19,
    input_size=(512, 512),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    seed_params_m="21.303",
    seed_flops_g="522.048",
    upstream="yangxy/GPEN face_parse/parse_model.py + face_parse/blocks.py (ParseNet)",
))
