"""MobileNetV2 as VainF/DeepLabV3Plus-Pytorch builds it (network/backbone/mobilenetv2.py).

It differs from torchvision's MobileNetV2 in ways that change the numbers, not only the names:
every convolution has padding 0 (the 3x3 stem conv included, so a 513 input gives 256, not
257), and each inverted residual block zero-pads its *input* by the "same" amount of its 3x3
depthwise conv (`F.pad` before the 1x1 expansion conv, not inside the depthwise conv). Strides
past the output stride turn into dilation, the first block of a dilated stage keeping the
previous dilation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (expansion t, output channels c, repeats n, first stride s) of MobileNetV2 at width 1.0.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32


class ConvBNReLU(nn.Sequential):
    """Conv (no padding, no bias), BatchNorm, ReLU6: keys `0.weight`, `1.*`."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, 0, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


def fixed_padding(kernel_size: int, dilation: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that keeps a dilated kernel's output size."""
    effective = kernel_size + (kernel_size - 1) * (dilation - 1)
    begin = (effective - 1) // 2
    end = effective - 1 - begin
    return (begin, end, begin, end)


class InvertedResidual(nn.Module):
    """Expansion 1x1 (when t != 1), depthwise 3x3, linear 1x1 projection, in `conv`."""

    def __init__(self, inp: int, oup: int, stride: int, dilation: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, dilation=dilation, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.input_padding = fixed_padding(3, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.pad(x, self.input_padding))
        return x + out if self.use_res_connect else out


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def mobilenet_v2_features(output_stride: int = 16) -> nn.Sequential:
    """VainF's `MobileNetV2.features` at width 1.0, without its last 1x1 conv to 1280 channels.

    Indices 0..17: 0 is the stem, 1..17 the inverted residual blocks (output 320 channels).
    DeepLab splits it as [:4] (low level, 24 channels, stride 4) and [4:] (high level), and
    `nn.Sequential` slicing keeps the original indices, as upstream's checkpoints do.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"MobileNetV2 output_stride must be 8, 16 or 32, got {output_stride}")
    features: list[nn.Module] = [ConvBNReLU(3, STEM_CHANNELS, stride=2)]
    in_ch, current_stride, dilation = STEM_CHANNELS, 2, 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        previous_dilation = dilation
        if current_stride == output_stride:
            stride, dilation = 1, dilation * s
        else:
            stride, current_stride = s, current_stride * s
        for i in range(n):
            if i == 0:
                features.append(InvertedResidual(in_ch, c, stride, previous_dilation, t))
            else:
                features.append(InvertedResidual(in_ch, c, 1, dilation, t))
            in_ch = c
    seq = nn.Sequential(*features)
    _init_weights(seq)
    return seq
