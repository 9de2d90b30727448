"""The human-segmentation nets of thuyngch/Human-Segmentation-PyTorch (`models/`).

UNet (MobileNetV2 / ResNet), DeepLabV3Plus, BiSeNet, PSPNet and ICNet, each with upstream's
module names, so that its checkpoints (`torch.load(p)["state_dict"]`) load with strict=True.
Constructor arguments are those of upstream's `config/config_*.json`; the ImageNet
backbone weights that upstream loads in `__init__` are left out.

Upstream resizes with `F.interpolate(..., scale_factor=s, align_corners=True)` in places;
here those resizes name the output size floor(n*s) instead, which gives the same result
(with align_corners the sampling grid depends on the sizes only) and exports as a Resize
with static sizes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from vcc.errors import VccError
from vcc.frontends.zoo.human_seg_backbones import (
    RESNET_SPECS,
    InvertedResidual,
    MobileNetV2,
    adaptive_avg_pool2d,
    human_seg_resnet,
    make_divisible,
)
from vcc.frontends.zoo.registry import ZooModel, register
from vcc.frontends.zoo.resnet import BasicBlock, conv1x1

UPSTREAM = "thuyngch/Human-Segmentation-PyTorch"


def _resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=True)


def _rescale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Upstream's `interpolate(scale_factor=factor, align_corners=True)`."""
    h, w = x.shape[-2:]
    return _resize(x, (int(h * factor), int(w * factor)))


def _init_weights(module: nn.Module) -> None:
    """Upstream `_init_weights`: Kaiming (fan_out) Conv2d, zero conv bias, BN to 1 / 0.

    ConvTranspose2d and Linear keep torch's default init, as upstream leaves them.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _check_classes(net: str, num_classes: int) -> None:
    if num_classes < 1:
        raise VccError(f"{net}: num_classes must be >= 1, got {num_classes}")


class ConvBlock(nn.Module):
    """Conv -> BN -> ReLU (keys `conv`, `bn`); the conv has a bias unless told otherwise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


# ----------------------------------------------------------------------------- UNet
class DecoderBlock(nn.Module):
    """2x transposed conv, concat with the skip feature, one backbone-style block."""

    def __init__(self, in_channels: int, out_channels: int, block_unit: nn.Module) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, padding=1,
                                         stride=2)
        self.block_unit = block_unit

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return self.block_unit(torch.cat([self.deconv(x), shortcut], dim=1))


def _unet_mobilenetv2_decoders(alpha: float = 1.0, expansion: int = 6
                               ) -> tuple[MobileNetV2, list[DecoderBlock], int]:
    backbone = MobileNetV2(alpha=alpha, expansion=expansion, num_classes=None)
    chans = [make_divisible(int(c * alpha), 8) for c in (96, 32, 24, 16)]
    ins = [backbone.last_channel, *chans[:-1]]
    decoders = [DecoderBlock(i, c, InvertedResidual(2 * c, c, 1, expansion))
                for i, c in zip(ins, chans, strict=True)]
    return backbone, decoders, chans[-1]


def _unet_resnet_decoders(name: str) -> tuple[nn.Module, list[DecoderBlock], int]:
    backbone = human_seg_resnet(name)
    block, _ = RESNET_SPECS[name]
    scale = 1 if block is BasicBlock else 4
    chans = [256 * scale, 128 * scale, 64 * scale, 64]
    ins = [512 * block.expansion, *chans[:-1]]
    decoders = []
    for i, c in zip(ins, chans, strict=True):
        down = nn.Sequential(conv1x1(2 * c, c), nn.BatchNorm2d(c))
        decoders.append(DecoderBlock(i, c, block(2 * c, c // block.expansion, 1, down)))
    return backbone, decoders, chans[-1]


class UNet(nn.Module):
    """`models/UNet.py`: encoder stages x1..x5 (strides 2..32), four decoder blocks,
    two 3x3 convs (to 3 channels, then to the classes), resize to the input."""

    def __init__(self, backbone: str = "mobilenetv2", num_classes: int = 2) -> None:
        super().__init__()
        _check_classes("UNet", num_classes)
        if backbone == "mobilenetv2":
            net, decoders, last = _unet_mobilenetv2_decoders()
        elif backbone in RESNET_SPECS:
            net, decoders, last = _unet_resnet_decoders(backbone)
        else:
            raise VccError(f"UNet: unknown backbone {backbone!r}")
        self.backbone = net
        self.decoder1, self.decoder2, self.decoder3, self.decoder4 = decoders
        self.conv_last = nn.Sequential(nn.Conv2d(last, 3, kernel_size=3, padding=1),
                                       nn.Conv2d(3, num_classes, kernel_size=3, padding=1))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, x3, x4, x5 = self.backbone.stages(x)
        y = self.decoder1(x5, x4)
        y = self.decoder2(y, x3)
        y = self.decoder3(y, x2)
        y = self.decoder4(y, x1)
        return _resize(self.conv_last(y), x.shape[-2:])


# ----------------------------------------------------------------------------- DeepLabV3+
class _ASPPModule(nn.Module):
    def __init__(self, inplanes: int, planes: int, kernel_size: int, padding: int,
                 dilation: int) -> None:
        super().__init__()
        self.atrous_conv = nn.Conv2d(inplanes, planes, kernel_size, stride=1, padding=padding,
                                     dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """1x1 + three atrous 3x3 + image pooling, concat (1280), 1x1 projection to 256."""

    def __init__(self, output_stride: int, inplanes: int) -> None:
        super().__init__()
        rates = {16: (1, 6, 12, 18), 8: (1, 12, 24, 36)}.get(output_stride)
        if rates is None:
            raise VccError(f"ASPP: output_stride must be 8 or 16, got {output_stride}")
        self.aspp1 = _ASPPModule(inplanes, 256, 1, padding=0, dilation=rates[0])
        self.aspp2 = _ASPPModule(inplanes, 256, 3, padding=rates[1], dilation=rates[1])
        self.aspp3 = _ASPPModule(inplanes, 256, 3, padding=rates[2], dilation=rates[2])
        self.aspp4 = _ASPPModule(inplanes, 256, 3, padding=rates[3], dilation=rates[3])
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)),
                                             nn.Conv2d(inplanes, 256, 1, stride=1, bias=False),
                                             nn.BatchNorm2d(256), nn.ReLU(inplace=True))
        self.conv1 = nn.Conv2d(1280, 256, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(256)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)]
        branches.append(_resize(self.global_avg_pool(x), branches[-1].shape[-2:]))
        y = self.relu(self.bn1(self.conv1(torch.cat(branches, dim=1))))
        return self.dropout(y)


class Decoder(nn.Module):
    """Low-level 1x1 to 48, concat with the upsampled ASPP output, two 3x3, 1x1 classifier."""

    def __init__(self, num_classes: int, low_level_inplanes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(low_level_inplanes, 48, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(48)
        self.relu = nn.ReLU(inplace=True)
        self.last_conv = nn.Sequential(
            nn.Conv2d(304, 256, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Conv2d(256, 256, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.Dropout(0.1),
            nn.Conv2d(256, num_classes, kernel_size=1, stride=1),
        )

    def forward(self, x: torch.Tensor, low_level_feat: torch.Tensor) -> torch.Tensor:
        low = self.relu(self.bn1(self.conv1(low_level_feat)))
        x = _resize(x, low.shape[-2:])
        return self.last_conv(torch.cat((x, low), dim=1))


class DeepLabV3Plus(nn.Module):
    """`models/DeepLab.py`. Upstream builds the ResNet at output stride 32 whatever
    `output_stride` says; `output_stride` only picks the ASPP rates (16: 1, 6, 12, 18)."""

    def __init__(self, backbone: str = "resnet18", output_stride: int = 16,
                 num_classes: int = 2) -> None:
        super().__init__()
        _check_classes("DeepLabV3Plus", num_classes)
        if backbone not in RESNET_SPECS:
            raise VccError(f"DeepLabV3Plus: unknown backbone {backbone!r}")
        self.backbone = human_seg_resnet(backbone)
        wide = RESNET_SPECS[backbone][0] is not BasicBlock
        self.aspp = ASPP(output_stride, inplanes=2048 if wide else 512)
        self.decoder = Decoder(num_classes, low_level_inplanes=256 if wide else 64)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, low, _, _, top = self.backbone.stages(x)
        y = self.decoder(self.aspp(top), low)
        return _resize(y, x.shape[-2:])


# ----------------------------------------------------------------------------- BiSeNet
class SpatialPath(nn.Module):
    def __init__(self, basic_channels: int = 64) -> None:
        super().__init__()
        c = basic_channels
        self.conv1 = ConvBlock(3, c, kernel_size=3, stride=2, padding=1)
        self.conv2 = ConvBlock(c, 2 * c, kernel_size=3, stride=2, padding=1)
        self.conv3 = ConvBlock(2 * c, 4 * c, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


class Attention(nn.Module):
    """Attention refinement: global pool, 1x1 conv (bias), sigmoid, scale the input."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(F.adaptive_avg_pool2d(x, 1)))


class Fusion(nn.Module):
    """Feature fusion: concat, ConvBlock to the classes, channel attention, residual add."""

    def __init__(self, in_channels1: int, in_channels2: int, num_classes: int,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.convblock = ConvBlock(in_channels1 + in_channels2, num_classes, kernel_size, padding=1)
        self.conv1 = nn.Conv2d(num_classes, num_classes, kernel_size=1, bias=True)
        self.conv2 = nn.Conv2d(num_classes, num_classes, kernel_size=1, bias=True)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        y = self.convblock(torch.cat([x1, x2], dim=1))
        a = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(y, 1)))))
        return y + y * a


class BiSeNet(nn.Module):
    """`models/BiSeNet.py` (ResNet18 context path). Training mode also returns the two
    auxiliary outputs of `sup_os16` / `sup_os32`."""

    def __init__(self, backbone: str = "resnet18", num_classes: int = 2) -> None:
        super().__init__()
        _check_classes("BiSeNet", num_classes)
        if backbone != "resnet18":
            raise VccError(f"BiSeNet: upstream only builds backbone 'resnet18', got {backbone!r}")
        self.spatial_path = SpatialPath(basic_channels=64)
        self.context_path = human_seg_resnet("resnet18")
        self.arm_os16 = Attention(in_channels=256)
        self.arm_os32 = Attention(in_channels=512)
        self.ffm = Fusion(in_channels1=256, in_channels2=768, num_classes=num_classes)
        self.conv_final = nn.Conv2d(num_classes, num_classes, kernel_size=1)
        self.sup_os16 = nn.Conv2d(256, num_classes, kernel_size=1)
        self.sup_os32 = nn.Conv2d(512, num_classes, kernel_size=1)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feat_spatial = self.spatial_path(x)
        *_, os16, os32 = self.context_path.stages(x)
        gap = F.adaptive_avg_pool2d(os32, 1)
        os16 = _rescale(self.arm_os16(os16), 2)
        os32 = _rescale(self.arm_os32(os32) * gap, 4)
        y = self.ffm(feat_spatial, torch.cat([os16, os32], dim=1))
        y = self.conv_final(_rescale(y, 8))
        if not self.training:
            return y
        return y, _rescale(self.sup_os16(os16), 8), _rescale(self.sup_os32(os32), 8)


# ----------------------------------------------------------------------------- PSPNet
_PYRAMIDS = (1, 2, 3, 6)


def _stage5_channels(net: str, backbone: str) -> int:
    if backbone not in RESNET_SPECS:
        raise VccError(f"{net}: unknown backbone {backbone!r}")
    return 512 * RESNET_SPECS[backbone][0].expansion


class PyramidPoolingModule(nn.Module):
    """PSPNet's: pool to 1/2/3/6 bins, 1x1 ConvBlock to C/4 each, upsample, concat with input."""

    def __init__(self, in_channels: int, pyramids: tuple[int, ...] = _PYRAMIDS) -> None:
        super().__init__()
        self.pyramids = pyramids
        out = in_channels // len(pyramids)
        self.convs = nn.ModuleList(ConvBlock(in_channels, out, kernel_size=1, bias=False)
                                   for _ in pyramids)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv, bins in zip(self.convs, self.pyramids, strict=True):
            feats.append(_resize(conv(adaptive_avg_pool2d(x, bins)), x.shape[-2:]))
        return torch.cat(feats, dim=1)


def _psp_head(in_channels: int, mid: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", ConvBlock(in_channels, mid, kernel_size=3, padding=1, bias=False)),
        ("dropout", nn.Dropout2d(p=0.1)),
        ("conv2", nn.Conv2d(mid, num_classes, kernel_size=1, bias=False)),
    ]))


class PSPNet(nn.Module):
    """`models/PSPNet.py`: ResNet at output stride 8, pyramid pooling, main head; the
    auxiliary head on layer3 runs in training mode only."""

    def __init__(self, backbone: str = "resnet18", num_classes: int = 2) -> None:
        super().__init__()
        _check_classes("PSPNet", num_classes)
        c5 = _stage5_channels("PSPNet", backbone)
        self.backbone = human_seg_resnet(backbone, output_stride=8)
        self.pyramid = PyramidPoolingModule(c5, _PYRAMIDS)
        self.main_output = _psp_head(2 * c5, c5 // 4, num_classes)
        self.aux_output = _psp_head(c5 // 2, c5 // 8, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        *_, stage4, stage5 = self.backbone.stages(x)
        main = _resize(self.main_output(self.pyramid(stage5)), x.shape[-2:])
        if not self.training:
            return main
        return main, self.aux_output(stage4)


# ----------------------------------------------------------------------------- ICNet
class ParamFreePyramidPooling(nn.Module):
    """ICNet's pyramid pooling: the input plus its 1/2/3/6-bin pools upsampled (no weights)."""

    def __init__(self, pyramids: tuple[int, ...] = _PYRAMIDS) -> None:
        super().__init__()
        self.pyramids = pyramids

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for bins in self.pyramids:
            y = y + _resize(adaptive_avg_pool2d(x, bins), x.shape[-2:])
        return y


class CascadeFeatFusion(nn.Module):
    """Upsample the low-res input, dilated 3x3 + BN; 1x1 + BN on the high-res one; add, ReLU.
    Training mode also returns `conv_low_cls` of the upsampled low-res input."""

    def __init__(self, low_channels: int, high_channels: int, out_channels: int,
                 num_classes: int) -> None:
        super().__init__()
        self.conv_low = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(low_channels, out_channels, kernel_size=3, dilation=2, padding=2,
                               bias=False)),
            ("bn", nn.BatchNorm2d(out_channels)),
        ]))
        self.conv_high = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(high_channels, out_channels, kernel_size=1, bias=False)),
            ("bn", nn.BatchNorm2d(out_channels)),
        ]))
        self.conv_low_cls = nn.Conv2d(out_channels, num_classes, kernel_size=1, bias=False)

    def forward(self, low: torch.Tensor, high: torch.Tensor
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        low = _resize(low, high.shape[-2:])
        y = F.relu(self.conv_low(low) + self.conv_high(high))
        if not self.training:
            return y
        return y, self.conv_low_cls(low)


class ICNet(nn.Module):
    """`models/ICNet.py` (the revision that resizes by scale factors, trained at 320).

    Full-res branch: three stride-2 ConvBlocks (1/8). Half-res input through the ResNet stem,
    layer1, layer2 (1/16); that halved again through layer3, layer4 (output stride 8, so
    1/32), pyramid pooling, 1x1 reduce. Two cascade fusions, 2x up, 1x1 classifier, 4x up:
    the eval output is at the input size when it is a multiple of 32.
    """

    def __init__(self, backbone: str = "resnet18", num_classes: int = 2) -> None:
        super().__init__()
        _check_classes("ICNet", num_classes)
        c5 = _stage5_channels("ICNet", backbone)
        self.conv_sub1 = nn.Sequential(OrderedDict([
            ("conv1", ConvBlock(3, 32, kernel_size=3, stride=2, padding=1, bias=False)),
            ("conv2", ConvBlock(32, 32, kernel_size=3, stride=2, padding=1, bias=False)),
            ("conv3", ConvBlock(32, 64, kernel_size=3, stride=2, padding=1, bias=False)),
        ]))
        self.backbone = human_seg_resnet(backbone, output_stride=8)
        self.ppm = ParamFreePyramidPooling(_PYRAMIDS)
        self.conv_sub4_reduce = ConvBlock(c5, c5 // 4, kernel_size=1, bias=False)
        self.cff_24 = CascadeFeatFusion(c5 // 4, 128 * RESNET_SPECS[backbone][0].expansion, 128,
                                        num_classes)
        self.cff_12 = CascadeFeatFusion(128, 64, 128, num_classes)
        self.conv_cls = nn.Conv2d(128, num_classes, kernel_size=1, bias=False)
        _init_weights(self)

    def _sub2(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        return b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x))))))

    def _sub4(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.layer4(self.backbone.layer3(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        sub1 = self.conv_sub1(x)
        sub2 = self._sub2(_rescale(x, 0.5))
        sub4 = self.conv_sub4_reduce(self.ppm(self._sub4(_rescale(sub2, 0.5))))
        if not self.training:
            y = self.cff_12(self.cff_24(sub4, sub2), sub1)
            return _rescale(self.conv_cls(_rescale(y, 2)), 4)
        y24, cls24 = self.cff_24(sub4, sub2)
        y12, cls12 = self.cff_12(y24, sub1)
        return self.conv_cls(_rescale(y12, 2)), cls12, cls24


# ----------------------------------------------------------------------------- registry
def human_seg_main_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The main logits: the eval output, or the first of the training-mode outputs."""
    out = module(x)
    return out[0] if isinstance(out, tuple) else out


_MODELS: list[tuple[str, Callable[[int], nn.Module], str, str, str]] = [
    ("unet_mobilenetv2", lambda n: UNet("mobilenetv2", n), "4.7", "1.3", "models/UNet.py"),
    ("unet_resnet18", lambda n: UNet("resnet18", n), "16.6", "9.1", "models/UNet.py"),
    ("deeplab3plus_resnet18", lambda n: DeepLabV3Plus("resnet18", 16, n), "16.6", "9.1",
     "models/DeepLab.py"),
    ("bisenet_resnet18", lambda n: BiSeNet("resnet18", n), "11.9", "4.7", "models/BiSeNet.py"),
    ("pspnet_resnet18", lambda n: PSPNet("resnet18", n), "12.6", "20.7", "models/PSPNet.py"),
    ("icnet_resnet18", lambda n: ICNet("resnet18", n), "11.6", "2.0", "models/ICNet.py"),
]

for _name, _build, _params, _flops, _file in _MODELS:
    register(ZooModel(
        name=_name,
        family="human_seg",
        build=_build,
        main_logits=human_seg_main_logits,
        classes=2,
        input_size=(320, 320),
        seed_params_m=_params,
        seed_flops_g=_flops,
        upstream=f"{UPSTREAM} {_file}",
    ))
