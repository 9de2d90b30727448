"""Small test models shaped like the seed families (test utility, not a user feature)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, s: int = 1, d: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding=d * (k // 2), dilation=d, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        return F.relu(self.conv2(self.conv1(x)) + idt)


class AttentionRefinement(nn.Module):
    """BiSeNet's ARM: global pool -> 1x1 conv -> BN -> sigmoid -> multiply."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = conv_bn_relu(cin, cout, 3)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * atten


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = conv_bn_relu(cin, cout, 1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a, b):
        feat = self.convblk(torch.cat([a, b], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat * atten + feat


class BiSeNetShaped(nn.Module):
    """ResNet-style context path with two ARMs and a global context, a spatial path, an FFM,
    and a bilinear upsample to the input size: the structure of face-parsing BiSeNet, small."""

    def __init__(self, num_classes: int = 19, width: int = 32):
        super().__init__()
        w = width
        self.stem = conv_bn_relu(3, w, 3, 2)
        self.layer1 = BasicBlock(w, w, 2)          # 1/4
        self.layer2 = BasicBlock(w, 2 * w, 2)      # 1/8
        self.layer3 = BasicBlock(2 * w, 4 * w, 2)  # 1/16
        self.layer4 = BasicBlock(4 * w, 8 * w, 2)  # 1/32
        self.arm16 = AttentionRefinement(4 * w, 2 * w)
        self.arm32 = AttentionRefinement(8 * w, 2 * w)
        self.conv_avg = conv_bn_relu(8 * w, 2 * w, 1)
        self.spatial = nn.Sequential(conv_bn_relu(3, w, 7, 2), conv_bn_relu(w, w, 3, 2), conv_bn_relu(w, 2 * w, 3, 2))
        self.ffm = FeatureFusion(4 * w, 4 * w)
        self.head = nn.Sequential(conv_bn_relu(4 * w, 2 * w, 3), nn.Conv2d(2 * w, num_classes, 1))

    def forward(self, x):
        h, w = x.shape[2:]
        f8 = self.layer2(self.layer1(self.stem(x)))
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        avg = F.interpolate(self.conv_avg(F.adaptive_avg_pool2d(f32, 1)), size=f32.shape[2:], mode="nearest")
        up32 = F.interpolate(self.arm32(f32) + avg, size=f16.shape[2:], mode="nearest")
        up16 = F.interpolate(self.arm16(f16) + up32, size=f8.shape[2:], mode="nearest")
        fused = self.ffm(self.spatial(x), up16)
        return F.interpolate(self.head(fused), size=(h, w), mode="bilinear", align_corners=True)


class EfficientShaped(nn.Module):
    """Depthwise-separable and dilated convs, PReLU throughout, a ConvTranspose decoder,
    a channel shuffle and a softmax-weighted context: the ops of real efficient nets."""

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.PReLU(w))
        self.dw1 = nn.Sequential(nn.Conv2d(w, w, 3, 2, 1, groups=w, bias=False), nn.BatchNorm2d(w), nn.PReLU(w),
                                 nn.Conv2d(w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w), nn.PReLU(2 * w))
        self.dil = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, 1, 2, dilation=2, groups=2, bias=False),
                                 nn.BatchNorm2d(2 * w), nn.PReLU(2 * w))
        self.dw2 = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, 1, 4, dilation=4, groups=2 * w, bias=False),
                                 nn.BatchNorm2d(2 * w), nn.ReLU6())
        self.query = nn.Conv2d(2 * w, 1, 1)
        self.up = nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False)
        self.up_bn = nn.BatchNorm2d(w)
        self.up_act = nn.PReLU()
        self.cls = nn.ConvTranspose2d(w, num_classes, 2, 2)

    def forward(self, x):
        y = self.dw1(self.stem(x))
        n, c, h, w = y.shape
        y = y.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        y = self.dw2(self.dil(y))
        attn = torch.softmax(self.query(y).reshape(n, 1, h * w), dim=-1)          # (n, 1, hw)
        ctx = torch.matmul(y.reshape(n, c, h * w), attn.transpose(1, 2))          # (n, c, 1)
        y = y + ctx.reshape(n, c, 1, 1)
        y = self.up_act(self.up_bn(self.up(y)))
        return self.cls(y)


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic weights with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
        elif isinstance(m, nn.PReLU):
            nn.init.uniform_(m.weight, 0.05, 0.3)
    return module.eval()
