"""Backbones of thuyngch/Human-Segmentation-PyTorch (`models/backbonds/`), with its key names.

Its ResNet keeps torchvision's key names (`conv1`, `bn1`, `layer1.0.conv1`,
`layer1.0.downsample.0`, ...) but computes differently from torchvision's, so the shared
`resnet.py` can not stand in for it:

- the stem's max-pool is 2x2 / stride 2 (torchvision: 3x3 / stride 2 / pad 1);
- `output_stride` 8 or 16 turns the stride of the last stages into dilation with a
  multi-grid: block i of a dilated stage uses dilation `d * 2**i`;
- with `num_classes=None` (how every segmentation net here builds it) there is no `fc`.

Its MobileNetV2 is a `features` Sequential (stem, 17 inverted residuals, 1x1 conv to 1280)
plus a `classifier` only when `num_classes` is given.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vcc.errors import VccError
from vcc.frontends.zoo.resnet import BasicBlock, Bottleneck, conv1x1

# output stride -> (stride, dilation) of layer1..layer4
_STAGE_PLAN = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}

RESNET_SPECS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


class HumanSegResNet(nn.Module):
    """`models/backbonds/ResNet.py`: ResNet with output stride 8/16/32 and multi-grid dilation."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int],
                 output_stride: int = 32, num_classes: int | None = None) -> None:
        super().__init__()
        if output_stride not in _STAGE_PLAN:
            raise VccError(f"human_seg ResNet: output_stride must be 8, 16 or 32, got {output_stride}")
        strides, dilations = _STAGE_PLAN[output_stride]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layer(block, 64, layers[0], strides[0], dilations[0])
        self.layer2 = self._make_layer(block, 128, layers[1], strides[1], dilations[1])
        self.layer3 = self._make_layer(block, 256, layers[2], strides[2], dilations[2])
        self.layer4 = self._make_layer(block, 512, layers[3], strides[3], dilations[3])
        self.num_classes = num_classes
        if num_classes is not None:
            self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int, dilation: int) -> nn.Sequential:
        out = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        grid = [dilation * 2**i for i in range(blocks)] if dilation != 1 else [1] * blocks
        layers = [block(self.inplanes, planes, stride, downsample, grid[0])]
        self.inplanes = out
        layers += [block(out, planes, dilation=d) for d in grid[1:]]
        return nn.Sequential(*layers)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem (before max-pool), layer1, layer2, layer3, layer4] outputs, as upstream's nets
        run them piece by piece."""
        x1 = self.relu(self.bn1(self.conv1(x)))
        x2 = self.layer1(self.maxpool(x1))
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        x5 = self.layer4(x4)
        return [x1, x2, x3, x4, x5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)[-1]
        if self.num_classes is not None:
            x = self.fc(x.mean(dim=(2, 3)))
        return x


def human_seg_resnet(name: str, output_stride: int = 32) -> HumanSegResNet:
    """Upstream `ResNet.get_resnet(n, output_stride=..., num_classes=None)`."""
    if name not in RESNET_SPECS:
        raise VccError(f"human_seg: unknown ResNet backbone {name!r}; known: {', '.join(RESNET_SPECS)}")
    block, layers = RESNET_SPECS[name]
    return HumanSegResNet(block, layers, output_stride=output_stride, num_classes=None)


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Channel rounding of MobileNetV2 (never more than 10% below `v`)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn_relu6(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block; keys `conv.0` .. `conv.7` (`conv.0` .. `conv.4` when expansion is 1)."""

    def __init__(self, inp: int, oup: int, stride: int, expansion: int, dilation: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise VccError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = round(inp * expansion)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        layers += [
            # upstream pads the depthwise conv by 1 whatever its dilation (always 1 here)
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, dilation=dilation, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# t (expansion, None = the net's), c, n, s
_MBV2_SETTING = [(1, 16, 1, 1), (None, 24, 2, 2), (None, 32, 3, 2), (None, 64, 4, 2),
                 (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1)]


class MobileNetV2(nn.Module):
    """`models/backbonds/MobileNetV2.py`: `features` (19 entries) and an optional classifier."""

    def __init__(self, alpha: float = 1.0, expansion: int = 6,
                 num_classes: int | None = None) -> None:
        super().__init__()
        channels = make_divisible(32 * alpha, 8)
        self.last_channel = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
        features: list[nn.Module] = [_conv_bn_relu6(3, channels, 3, 2)]
        for t, c, n, s in _MBV2_SETTING:
            out = make_divisible(int(c * alpha), 8)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1,
                                                 expansion if t is None else t))
                channels = out
        features.append(_conv_bn_relu6(channels, self.last_channel, 1, 1))
        self.features = nn.Sequential(*features)
        self.num_classes = num_classes
        if num_classes is not None:
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs at strides 2, 4, 8, 16, 32 (features[0:2], [2:4], [4:7], [7:14], [14:19])."""
        outs = []
        for lo, hi in ((0, 2), (2, 4), (4, 7), (7, 14), (14, 19)):
            for i in range(lo, hi):
                x = self.features[i](x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)[-1]
        if self.num_classes is not None:
            x = self.classifier(x.mean(dim=(2, 3)))
        return x


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """torch's adaptive average pooling to `bins` x `bins`, exportable to ONNX for any size.

    torch's ONNX exporter only handles the case where `bins` divides the feature size; the
    pyramid pooling of PSPNet and ICNet pools 40x40 / 10x10 maps (320 input) into 3 and 6
    bins. Bin i spans [floor(i*n/bins), ceil((i+1)*n/bins)) as in torch; the mean over a
    rectangle is the mean over rows of the mean over columns, so the two axes pool apart.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % bins == 0 and w % bins == 0:
        return F.adaptive_avg_pool2d(x, bins)
    return _pool_axis(_pool_axis(x, bins, 2), bins, 3)


def _pool_axis(x: torch.Tensor, bins: int, dim: int) -> torch.Tensor:
    n = int(x.shape[dim])
    parts = []
    for i in range(bins):
        start, end = (i * n) // bins, -(-((i + 1) * n) // bins)
        parts.append(x.narrow(dim, start, end - start).mean(dim=dim, keepdim=True))
    return torch.cat(parts, dim=dim)
