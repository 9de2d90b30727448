"""Face-parsing BiSeNet (zllrunning/face-parsing.PyTorch, model.py + resnet.py).

The context path is a ResNet18 whose keys are torchvision's (upstream's ``Resnet18`` names its
modules ``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ... and has no fc), so
the shared :func:`resnet18` backbone with ``with_fc=False`` gives the same state_dict. Upstream
deleted the spatial path: the stride-8 ResNet feature stands in for it, so no ``sp.*`` keys
exist. The three heads (``conv_out``, ``conv_out16``, ``conv_out32``) are all in the checkpoint
``79999_iter.pth``; the first is the main output.

Upstream's ``Resnet18`` downloads ImageNet weights in ``__init__``; that is left out here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vcc.frontends.zoo.registry import IMAGENET_MEAN, IMAGENET_STD, ZooModel, register
from vcc.frontends.zoo.resnet import resnet18


def _init_direct_convs(module: nn.Module) -> None:
    """Upstream's ``init_weight``: kaiming-normal (a=1) on the module's own Conv2d children."""
    for child in module.children():
        if isinstance(child, nn.Conv2d):
            nn.init.kaiming_normal_(child.weight, a=1)
            if child.bias is not None:
                nn.init.constant_(child.bias, 0)


class ConvBNReLU(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, ks: int = 3, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chan, out_chan, ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chan)
        _init_direct_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BiSeNetOutput(nn.Module):
    """Segmentation head: 3x3 ConvBNReLU then a bias-free 1x1 classifier."""

    def __init__(self, in_chan: int, mid_chan: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_chan, mid_chan, ks=3, stride=1, padding=1)
        self.conv_out = nn.Conv2d(mid_chan, n_classes, 1, bias=False)
        _init_direct_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Module):
    """ARM: conv, then a channel gate from global average pool -> 1x1 conv -> BN -> sigmoid."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_chan, out_chan, ks=3, stride=1, padding=1)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)
        self.sigmoid_atten = nn.Sigmoid()
        _init_direct_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = F.adaptive_avg_pool2d(feat, 1)
        atten = self.sigmoid_atten(self.bn_atten(self.conv_atten(atten)))
        return feat * atten


class ContextPath(nn.Module):
    """ResNet18 + global context + ARMs on the stride-16 and stride-32 stages.

    Returns (stride-8 ResNet feature, context at stride 8, context at stride 16).
    """

    def __init__(self) -> None:
        super().__init__()
        self.resnet = resnet18(with_fc=False)
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, ks=3, stride=1, padding=1)
        self.conv_head16 = ConvBNReLU(128, 128, ks=3, stride=1, padding=1)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, feat8, feat16, feat32 = self.resnet.forward_stages(x)
        # Upstream nearest-upsamples the 1x1 pooled context to the stride-32 size: a broadcast.
        avg = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
        feat32_sum = self.arm32(feat32) + avg
        feat32_up = F.interpolate(feat32_sum, size=feat16.shape[-2:], mode="nearest")
        feat32_up = self.conv_head32(feat32_up)

        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = F.interpolate(feat16_sum, size=feat8.shape[-2:], mode="nearest")
        feat16_up = self.conv_head16(feat16_up)
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    """FFM: concat -> 1x1 ConvBNReLU -> squeeze-excite gate (no BN) -> feat * gate + feat."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_chan, out_chan, ks=1, stride=1, padding=0)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.sigmoid = nn.Sigmoid()
        _init_direct_convs(self)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = F.adaptive_avg_pool2d(feat, 1)
        atten = self.sigmoid(self.conv2(self.relu(self.conv1(atten))))
        return feat * atten + feat


class BiSeNet(nn.Module):
    """Returns (main, aux16, aux32) logits, each bilinearly resized (align_corners) to input."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        feat_res8, feat_cp8, feat_cp16 = self.cp(x)
        feat_fuse = self.ffm(feat_res8, feat_cp8)
        heads = (self.conv_out(feat_fuse), self.conv_out16(feat_cp8), self.conv_out32(feat_cp16))
        up = [F.interpolate(h, size=size, mode="bilinear", align_corners=True) for h in heads]
        return up[0], up[1], up[2]


def build_bisenet(num_classes: int) -> BiSeNet:
    return BiSeNet(num_classes)


def bisenet_main_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)[0]


register(ZooModel(
    name="bisenet",
    family="face",
    build=build_bisenet,
    main_logits=bisenet_main_logits,
    classes=19,
    input_size=(512, 512),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    seed_params_m="13.300",
    seed_flops_g="30.746",
    upstream="zllrunning/face-parsing.PyTorch model.py + resnet.py (BiSeNet, Resnet18)",
))
