"""DeepLabV3 and DeepLabV3+ as VainF/DeepLabV3Plus-Pytorch builds them (network/).

Module tree and state_dict keys follow upstream so its checkpoints load with strict=True:

- `backbone`: upstream's IntermediateLayerGetter, a ModuleDict of the backbone's children up
  to the last returned one. ResNet: `backbone.conv1`, `backbone.bn1`, `backbone.layer1..4`
  (no avgpool / fc). MobileNetV2: `backbone.low_level_features.{0..3}` and
  `backbone.high_level_features.{4..17}` (the last 1x1 conv to 1280 is dropped).
- `classifier`: DeepLabHead (V3: `classifier.classifier.0` is the ASPP, then 3x3 conv, BN,
  ReLU, 1x1 conv) or DeepLabHeadV3Plus (V3+: `classifier.project` on the stride-4 features,
  `classifier.aspp`, `classifier.classifier`).

All six zoo models use output stride 16 (ASPP rates 6, 12, 18) and 21 VOC classes; the model
returns logits bilinearly resized (align_corners=False) to the input size, as upstream's
_SimpleSegmentationModel does. Upstream's optional separable-conv conversion
(`--separable_conv`) is not applied: the seed figures are for the plain convolutions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vcc.errors import VccError
from vcc.frontends.zoo import resnet
from vcc.frontends.zoo.mobilenetv2_vainf import mobilenet_v2_features
from vcc.frontends.zoo.registry import ZooModel, register

ASPP_CHANNELS = 256
LOW_LEVEL_PROJECT_CHANNELS = 48
UPSTREAM = "VainF/DeepLabV3Plus-Pytorch network/modeling.py, network/_deeplab.py"

Features = dict[str, torch.Tensor]


class ASPPConv(nn.Sequential):
    """3x3 atrous conv, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average pool, 1x1 conv, BN, ReLU, bilinear back to size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear",
                             align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: `convs` (1x1, three atrous 3x3, image pooling), concat,
    `project` (1x1 conv, BN, ReLU, Dropout 0.1)."""

    def __init__(self, in_channels: int, atrous_rates: tuple[int, int, int]) -> None:
        super().__init__()
        out = ASPP_CHANNELS
        branches: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, out, 1, bias=False), nn.BatchNorm2d(out),
                          nn.ReLU(inplace=True)),
        ]
        branches += [ASPPConv(in_channels, out, rate) for rate in atrous_rates]
        branches.append(ASPPPooling(in_channels, out))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out, out, 1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


def _init_head(module: nn.Module) -> None:
    """Upstream's head init: Kaiming-normal (fan_in) convs, BN weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class DeepLabHead(nn.Module):
    """DeepLabV3 head on the 'out' features: ASPP, 3x3 conv, BN, ReLU, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int,
                 aspp_dilate: tuple[int, int, int]) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            ASPP(in_channels, aspp_dilate),
            nn.Conv2d(ASPP_CHANNELS, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )
        _init_head(self)

    def forward(self, feature: Features) -> torch.Tensor:
        return self.classifier(feature["out"])


class DeepLabHeadV3Plus(nn.Module):
    """DeepLabV3+ decoder: ASPP on 'out', upsampled to the 1x1-projected 'low_level'
    features, concatenated, then 3x3 conv, BN, ReLU, 1x1 classifier."""

    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int,
                 aspp_dilate: tuple[int, int, int]) -> None:
        super().__init__()
        low = LOW_LEVEL_PROJECT_CHANNELS
        self.project = nn.Sequential(
            nn.Conv2d(low_level_channels, low, 1, bias=False),
            nn.BatchNorm2d(low),
            nn.ReLU(inplace=True),
        )
        self.aspp = ASPP(in_channels, aspp_dilate)
        self.classifier = nn.Sequential(
            nn.Conv2d(low + ASPP_CHANNELS, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )
        _init_head(self)

    def forward(self, feature: Features) -> torch.Tensor:
        low = self.project(feature["low_level"])
        high = F.interpolate(self.aspp(feature["out"]), size=low.shape[2:], mode="bilinear",
                             align_corners=False)
        return self.classifier(torch.cat([low, high], dim=1))


class IntermediateLayerGetter(nn.ModuleDict):
    """Runs its children in order and returns {new_name: output} for the `return_layers`.

    Children after the last returned one are not kept (upstream drops ResNet's avgpool / fc
    this way), so the state_dict keys are `<child>.<...>` of the wrapped backbone.
    """

    def __init__(self, children: list[tuple[str, nn.Module]], return_layers: dict[str, str]):
        names = [name for name, _ in children]
        missing = sorted(set(return_layers) - set(names))
        if missing:
            raise VccError(f"DeepLab backbone has no layer(s) {missing}; it has {names}")
        last = max(names.index(name) for name in return_layers)
        super().__init__(children[: last + 1])
        self.return_layers = dict(return_layers)

    def forward(self, x: torch.Tensor) -> Features:
        out: Features = {}
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


class DeepLabV3(nn.Module):
    """upstream's _SimpleSegmentationModel: backbone, classifier, bilinear resize to input."""

    def __init__(self, backbone: IntermediateLayerGetter, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _aspp_rates(output_stride: int) -> tuple[int, int, int]:
    if output_stride not in (8, 16):
        raise VccError(f"DeepLab output_stride must be 8 or 16, got {output_stride}")
    return (12, 24, 36) if output_stride == 8 else (6, 12, 18)


def _make_head(plus: bool, in_channels: int, low_channels: int, num_classes: int,
               rates: tuple[int, int, int]) -> nn.Module:
    if plus:
        return DeepLabHeadV3Plus(in_channels, low_channels, num_classes, rates)
    return DeepLabHead(in_channels, num_classes, rates)


def segm_resnet(depth: int, plus: bool, num_classes: int, output_stride: int = 16) -> DeepLabV3:
    """upstream's _segm_resnet: torchvision ResNet-50/101, last stage(s) dilated."""
    rates = _aspp_rates(output_stride)
    dilate = (False, True, True) if output_stride == 8 else (False, False, True)
    factories = {50: resnet.resnet50, 101: resnet.resnet101}
    if depth not in factories:
        raise VccError(f"DeepLab ResNet depth must be 50 or 101, got {depth}")
    net = factories[depth](replace_stride_with_dilation=dilate, with_fc=False)
    returns = {"layer4": "out", "layer1": "low_level"} if plus else {"layer4": "out"}
    backbone = IntermediateLayerGetter(list(net.named_children()), returns)
    return DeepLabV3(backbone, _make_head(plus, 2048, 256, num_classes, rates))


def segm_mobilenet(plus: bool, num_classes: int, output_stride: int = 16) -> DeepLabV3:
    """upstream's _segm_mobilenet: features[:4] low level (24 ch), features[4:-1] high (320)."""
    rates = _aspp_rates(output_stride)
    features = mobilenet_v2_features(output_stride)
    children = [("low_level_features", features[:4]), ("high_level_features", features[4:])]
    returns = {"high_level_features": "out"}
    if plus:
        returns["low_level_features"] = "low_level"
    backbone = IntermediateLayerGetter(children, returns)
    return DeepLabV3(backbone, _make_head(plus, 320, 24, num_classes, rates))


def count_aspp(module: nn.Module) -> int:
    """Number of ASPP modules inside `module`."""
    return sum(isinstance(m, ASPP) for m in module.modules())


def deeplab_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's only output: logits already at the input resolution."""
    return module(x)


def _builder(backbone: str, plus: bool) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        if num_classes < 1:
            raise VccError(f"DeepLab num_classes must be >= 1, got {num_classes}")
        if backbone == "mobilenet":
            return segm_mobilenet(plus, num_classes)
        return segm_resnet(int(backbone.removeprefix("resnet")), plus, num_classes)

    return build


# (zoo name, backbone, V3+?, seed Params (M), seed FLOPs (G)) from SEEDS.md.
_SEED_TABLE = (
    ("deeplabv3_mobilenet", "mobilenet", False, "5.114", "13.372"),
    ("deeplabv3_resnet50", "resnet50", False, "39.639", "114.137"),
    ("deeplabv3_resnet101", "resnet101", False, "58.631", "160.224"),
    ("deeplabv3plus_mobilenet", "mobilenet", True, "5.226", "37.799"),
    ("deeplabv3plus_resnet50", "resnet50", True, "39.76", "139.293"),
    ("deeplabv3plus_resnet101", "resnet101", True, "58.754", "185.381"),
)

for _name, _backbone, _plus, _params, _flops in _SEED_TABLE:
    register(ZooModel(
        name=_name,
        family="deeplab",
        build=_builder(_backbone, _plus),
        main_logits=deeplab_logits,
        classes=21,
        input_size=(513, 513),
        seed_params_m=_params,
        seed_flops_g=_flops,
        upstream=UPSTREAM,
    ))
