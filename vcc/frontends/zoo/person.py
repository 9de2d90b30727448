"""`person`: vcc's own small person-segmentation net, the one zoo entry vcc trains itself.

No upstream checkpoint exists for it: `vcc export person --train` trains it on the labelled
person photos of `$VCC_DATA` (`vcc.frontends.zoo.train`) in about a minute on 2 cores.

The structure is the usual efficient encoder-decoder: a strided 3x3 stem (1/2), two
depthwise-separable downsampling blocks (1/4, 1/8), a dilated (2, 4) separable context at 1/8,
a transposed-conv 2x upsample to 1/4 fused with the 1/4 features, a 1x1 classifier and the
bilinear 4x resize to the input. Conv + BN + ReLU throughout (BN folds into the convs, ReLU
keeps the activations unsigned for int8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vcc.frontends.zoo.registry import ZooModel, register


def _cbr(cin: int, cout: int, k: int = 1, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation, groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Separable(nn.Module):
    """Depthwise 3x3 -> pointwise 1x1 (each BN + ReLU); a residual add when the shape allows."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.dw = _cbr(cin, cin, 3, stride, dilation, groups=cin)
        self.pw = _cbr(cin, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class PersonNet(nn.Module):
    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        w = width
        self.stem = _cbr(3, w, 3, 2)
        self.down4 = Separable(w, 2 * w, stride=2)
        self.down8 = Separable(2 * w, 4 * w, stride=2)
        self.context = nn.Sequential(Separable(4 * w, 4 * w, dilation=2), Separable(4 * w, 4 * w, dilation=4))
        self.up = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),
                                nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True))
        self.fuse = Separable(4 * w, 2 * w)
        self.classifier = nn.Conv2d(2 * w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4 = self.down4(self.stem(x))
        y = self.up(self.context(self.down8(f4)))
        return self.classifier(self.fuse(torch.cat([y, f4], dim=1)))  # 1/4 of the input


def person_main_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The 1/4-resolution logits resized (bilinear) to the input."""
    return F.interpolate(module(x), size=x.shape[2:], mode="bilinear", align_corners=False)


register(ZooModel(
    name="person",
    family="person",
    build=lambda n: PersonNet(n),
    main_logits=person_main_logits,
    classes=2,
    input_size=(160, 160),
    upstream="vcc (trained by `vcc export person --train` on $VCC_DATA's person photos)",
))
