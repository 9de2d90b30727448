"""HRNetV2 for semantic segmentation (HRNet/HRNet-Semantic-Segmentation, lib/models/seg_hrnet.py).

The module tree follows the pytorch-v1.1 branch of the upstream code so that its checkpoints
load with strict key matching: stem `conv1/bn1/conv2/bn2`, `layer1` (stage 1), `transition1..3`,
`stage2..4` made of :class:`HighResolutionModule` (`branches`, `fuse_layers`) and the
`last_layer` head. Upstream builds the net from a yacs config; here each cityscapes experiment
config is a frozen :class:`HRNetSpec`.

Differences from upstream that do not change the state_dict: SyncBatchNorm is plain
BatchNorm2d, the config's ALIGN_CORNERS is carried by the modules instead of a global, the
residual and fusion code does not mutate its input lists, and no ImageNet weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vcc.errors import VccError
from vcc.frontends.zoo.registry import ZooModel, register

BN_MOMENTUM = 0.1  # pytorch-v1.1's value; master uses 0.01 (only matters for training)
UPSTREAM = ("HRNet/HRNet-Semantic-Segmentation (pytorch-v1.1) lib/models/seg_hrnet.py, "
            "experiments/cityscapes/seg_hrnet_{cfg}_*.yaml")


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _bn(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]
BLOCKS: dict[str, Block] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


@dataclass(frozen=True)
class StageSpec:
    """One STAGEn entry of an upstream experiment config."""

    num_modules: int
    block: str  # "BASIC" or "BOTTLENECK"
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    fuse_method: str = "SUM"

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)

    @property
    def block_class(self) -> Block:
        if self.block not in BLOCKS:
            raise VccError(f"HRNet stage BLOCK {self.block!r} unknown; known: {', '.join(BLOCKS)}")
        return BLOCKS[self.block]

    def out_channels(self) -> list[int]:
        return [c * self.block_class.expansion for c in self.num_channels]


@dataclass(frozen=True)
class HRNetSpec:
    """MODEL.EXTRA of an upstream experiment config plus MODEL.ALIGN_CORNERS."""

    stage1: StageSpec
    stage2: StageSpec
    stage3: StageSpec
    stage4: StageSpec
    final_conv_kernel: int = 1
    align_corners: bool = True  # the pytorch-v1.1 config default


def _check_stage(name: str, spec: StageSpec, num_inchannels: list[int]) -> None:
    if spec.fuse_method != "SUM":
        raise VccError(f"HRNet {name}: FUSE_METHOD {spec.fuse_method!r} unsupported (only SUM)")
    if len(spec.num_blocks) != spec.num_branches:
        raise VccError(f"HRNet {name}: NUM_BRANCHES({spec.num_branches}) <> "
                       f"NUM_BLOCKS({len(spec.num_blocks)})")
    if len(num_inchannels) != spec.num_branches:
        raise VccError(f"HRNet {name}: NUM_BRANCHES({spec.num_branches}) <> "
                       f"NUM_INCHANNELS({len(num_inchannels)})")
    if spec.num_modules < 1:
        raise VccError(f"HRNet {name}: NUM_MODULES must be >= 1, got {spec.num_modules}")


def _make_layer(block: Block, inplanes: int, planes: int, blocks: int) -> nn.Sequential:
    """A residual stack; the first block projects with `downsample` when widths differ."""
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, bias=False),
            _bn(planes * block.expansion),
        )
    layers = [block(inplanes, planes, 1, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _fuse_path(in_ch: int, out_ch: int, i: int, j: int) -> nn.Sequential:
    """Branch j -> branch i of a fuse layer.

    Lower resolution (j > i): 1x1 conv + BN, upsampled in forward. Higher resolution (j < i):
    i - j stride-2 3x3 convs, ReLU after all but the last.
    """
    if j > i:
        return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False), _bn(out_ch))
    steps = []
    for k in range(i - j):
        last = k == i - j - 1
        width = out_ch if last else in_ch
        step: list[nn.Module] = [nn.Conv2d(in_ch, width, 3, 2, 1, bias=False), _bn(width)]
        if not last:
            step.append(nn.ReLU(inplace=True))
        steps.append(nn.Sequential(*step))
    return nn.Sequential(*steps)


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks, then (multi-branch only) an all-to-all SUM fusion."""

    def __init__(self, spec: StageSpec, num_inchannels: list[int], align_corners: bool,
                 multi_scale_output: bool = True) -> None:
        super().__init__()
        self.num_branches = spec.num_branches
        self.align_corners = align_corners
        block = spec.block_class
        self.branches = nn.ModuleList(
            _make_layer(block, num_inchannels[b], spec.num_channels[b], spec.num_blocks[b])
            for b in range(self.num_branches))
        self.num_inchannels = spec.out_channels()
        self.fuse_layers = self._make_fuse_layers(multi_scale_output)
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self, multi_scale_output: bool) -> nn.ModuleList | None:
        if self.num_branches == 1:
            return None
        ch = self.num_inchannels
        outputs = self.num_branches if multi_scale_output else 1
        return nn.ModuleList(
            nn.ModuleList(None if j == i else _fuse_path(ch[j], ch[i], i, j)
                          for j in range(self.num_branches))
            for i in range(outputs))

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x, strict=True)]
        if self.fuse_layers is None:
            return x
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            y = x[0] if i == 0 else paths[0](x[0])
            for j in range(1, self.num_branches):
                if j == i:
                    y = y + x[j]
                elif j > i:
                    y = y + F.interpolate(paths[j](x[j]), size=x[i].shape[-2:], mode="bilinear",
                                          align_corners=self.align_corners)
                else:
                    y = y + paths[j](x[j])
            fused.append(self.relu(y))
        return fused


def _make_transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    """Between stages: re-width existing branches (3x3 conv) where needed, None where not;
    each new branch comes from the lowest-resolution one by stride-2 3x3 convs."""
    layers: list[nn.Module | None] = []
    for i, out_ch in enumerate(cur):
        if i < len(pre):
            layers.append(None if out_ch == pre[i] else nn.Sequential(
                nn.Conv2d(pre[i], out_ch, 3, 1, 1, bias=False), _bn(out_ch),
                nn.ReLU(inplace=True)))
            continue
        steps = []
        for k in range(i + 1 - len(pre)):
            in_ch = pre[-1]
            width = out_ch if k == i - len(pre) else in_ch
            steps.append(nn.Sequential(nn.Conv2d(in_ch, width, 3, 2, 1, bias=False), _bn(width),
                                       nn.ReLU(inplace=True)))
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def _apply_transition(transition: nn.ModuleList, y: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for i, t in enumerate(transition):
        if t is None:
            out.append(y[i])
        else:
            out.append(t(y[i] if i < len(y) else y[-1]))
    return out


class HighResolutionNet(nn.Module):
    """HRNetV2 segmentation net; forward returns logits at 1/4 of the input resolution."""

    def __init__(self, spec: HRNetSpec, num_classes: int) -> None:
        super().__init__()
        self.align_corners = spec.align_corners
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)

        s1 = spec.stage1
        self.layer1 = _make_layer(s1.block_class, 64, s1.num_channels[0], s1.num_blocks[0])
        pre = s1.out_channels()
        self.transition1, self.stage2, pre = self._make_step("stage2", spec.stage2, pre)
        self.transition2, self.stage3, pre = self._make_step("stage3", spec.stage3, pre)
        self.transition3, self.stage4, pre = self._make_step("stage4", spec.stage4, pre)

        width = sum(pre)
        k = spec.final_conv_kernel
        self.last_layer = nn.Sequential(
            nn.Conv2d(width, width, 1, 1, 0),
            _bn(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_classes, k, 1, 1 if k == 3 else 0),
        )
        self._init_weights()

    def _make_step(self, name: str, spec: StageSpec, pre: list[int]
                   ) -> tuple[nn.ModuleList, nn.Sequential, list[int]]:
        cur = spec.out_channels()
        transition = _make_transition(pre, cur)
        _check_stage(name, spec, cur)
        modules = []
        for _ in range(spec.num_modules):
            modules.append(HighResolutionModule(spec, cur, self.align_corners))
            cur = modules[-1].num_inchannels
        return transition, nn.Sequential(*modules), cur

    def _init_weights(self) -> None:
        """Upstream's init_weights without the pretrained load: N(0, 0.001) conv weights."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        y = [self.layer1(x)]
        y = self.stage2(_apply_transition(self.transition1, y))
        y = self.stage3(_apply_transition(self.transition2, y))
        y = self.stage4(_apply_transition(self.transition3, y))
        size = y[0].shape[-2:]
        ups = [F.interpolate(t, size=size, mode="bilinear", align_corners=self.align_corners)
               for t in y[1:]]
        return self.last_layer(torch.cat([y[0], *ups], 1))


def count_fuse_layers(module: nn.Module) -> int:
    """How many HighResolutionModules in `module` build fuse_layers (the multi-branch ones)."""
    return sum(1 for m in module.modules()
               if isinstance(m, HighResolutionModule) and m.fuse_layers is not None)


def _spec(stage1: tuple[int, int], stages: tuple[tuple[int, int], ...], width: int,
          align_corners: bool) -> HRNetSpec:
    """stage1 = (NUM_BLOCKS, NUM_CHANNELS) of the bottleneck stage; stages = (NUM_MODULES,
    NUM_BLOCKS per branch) of stages 2..4, all BASIC with widths width * 2**branch."""
    s1 = StageSpec(1, "BOTTLENECK", (stage1[0],), (stage1[1],))
    s = [StageSpec(mods, "BASIC", (blocks,) * n, tuple(width * 2**b for b in range(n)))
         for n, (mods, blocks) in enumerate(stages, start=2)]
    return HRNetSpec(s1, s[0], s[1], s[2], final_conv_kernel=1, align_corners=align_corners)


# experiments/cityscapes/seg_hrnet_{w48_train, w18_small_v1, w18_small_v2}_512x1024_*.yaml;
# only the w48 config sets MODEL.ALIGN_CORNERS (False), the small ones keep the default (True).
SPECS: dict[str, HRNetSpec] = {
    "w48": _spec((4, 64), ((1, 4), (4, 4), (3, 4)), 48, align_corners=False),
    "w18_small_v1": _spec((1, 32), ((1, 2), (1, 2), (1, 2)), 16, align_corners=True),
    "w18_small_v2": _spec((2, 64), ((1, 2), (3, 2), (2, 2)), 18, align_corners=True),
}


def hrnet(config: str, num_classes: int = 19) -> HighResolutionNet:
    if config not in SPECS:
        raise VccError(f"unknown HRNet config {config!r}; known: {', '.join(SPECS)}")
    return HighResolutionNet(SPECS[config], num_classes)


def main_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Upstream returns one tensor: the logits at 1/4 resolution."""
    return module(x)


def _register(name: str, config: str, params_m: str, flops_g: str) -> None:
    register(ZooModel(
        name=name, family="hrnet",
        build=lambda num_classes, config=config: hrnet(config, num_classes),
        main_logits=main_logits, classes=19, input_size=(512, 512),
        seed_params_m=params_m, seed_flops_g=flops_g,
        upstream=UPSTREAM.format(cfg=config),
    ))


_register("hrnetv2_w48", "w48", "65.8", "696.2 @1024x2048")
_register("hrnetv2_w18_small_v1", "w18_small_v1", "1.5", "31.1 @1024x2048")
_register("hrnetv2_w18_small_v2", "w18_small_v2", "3.9", "71.6 @1024x2048")
