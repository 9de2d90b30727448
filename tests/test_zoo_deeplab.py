"""VainF DeepLabV3 / V3+ zoo models: parameter counts, shapes, upstream state_dict keys."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from torch import nn

from vcc.errors import VccError
from vcc.frontends.zoo import get_model, zoo_models
from vcc.frontends.zoo.deeplab import count_aspp
from vcc.frontends.zoo.registry import IMAGENET_MEAN, IMAGENET_STD

NAMES = (
    "deeplabv3_mobilenet",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3plus_mobilenet",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
)

# Exact trainable parameter counts of upstream's structure (21 classes).
EXACT_PARAMS = {
    "deeplabv3_mobilenet": 5_113_877,
    "deeplabv3_resnet50": 39_638_869,
    "deeplabv3_resnet101": 58_630_997,
    "deeplabv3plus_mobilenet": 5_225_717,
    "deeplabv3plus_resnet50": 39_761_845,
    "deeplabv3plus_resnet101": 58_753_973,
}

# Keys and shapes read in upstream's network/ sources (modeling.py, _deeplab.py,
# backbone/mobilenetv2.py, torchvision ResNet).
MOBILENET_KEYS = {
    "backbone.low_level_features.0.0.weight": (32, 3, 3, 3),
    "backbone.low_level_features.1.conv.0.0.weight": (32, 1, 3, 3),
    "backbone.low_level_features.3.conv.2.weight": (24, 144, 1, 1),
    "backbone.high_level_features.4.conv.0.0.weight": (144, 24, 1, 1),
    "backbone.high_level_features.17.conv.2.weight": (320, 960, 1, 1),
}
RESNET_KEYS = {
    "backbone.conv1.weight": (64, 3, 7, 7),
    "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "backbone.layer4.2.conv3.weight": (2048, 512, 1, 1),
    "backbone.layer4.2.bn3.running_var": (2048,),
}
V3_HEAD_KEYS = {
    "classifier.classifier.0.convs.0.0.weight": (256, None, 1, 1),
    "classifier.classifier.0.convs.3.0.weight": (256, None, 3, 3),
    "classifier.classifier.0.convs.4.1.weight": (256, None, 1, 1),
    "classifier.classifier.0.project.0.weight": (256, 1280, 1, 1),
    "classifier.classifier.1.weight": (256, 256, 3, 3),
    "classifier.classifier.4.weight": (21, 256, 1, 1),
    "classifier.classifier.4.bias": (21,),
}
V3PLUS_HEAD_KEYS = {
    "classifier.project.0.weight": (48, None, 1, 1),
    "classifier.aspp.convs.1.0.weight": (256, None, 3, 3),
    "classifier.aspp.convs.4.2.running_mean": (256,),
    "classifier.aspp.project.0.weight": (256, 1280, 1, 1),
    "classifier.classifier.0.weight": (256, 304, 3, 3),
    "classifier.classifier.3.weight": (21, 256, 1, 1),
    "classifier.classifier.3.bias": (21,),
}


@cache
def _built(name: str) -> nn.Module:
    torch.manual_seed(0)
    return get_model(name).build(21).eval()


def _expected_keys(name: str) -> dict[str, tuple]:
    mobile = name.endswith("mobilenet")
    backbone_out, low = (320, 24) if mobile else (2048, 256)
    keys = dict(MOBILENET_KEYS if mobile else RESNET_KEYS)
    if name.endswith("resnet101"):
        keys["backbone.layer3.22.conv2.weight"] = (256, 256, 3, 3)
    head = V3PLUS_HEAD_KEYS if name.startswith("deeplabv3plus") else V3_HEAD_KEYS
    for key, shape in head.items():
        fill = low if key.startswith("classifier.project.") else backbone_out
        keys[key] = tuple(fill if d is None else d for d in shape)
    return keys


def test_registry_entries():
    models = zoo_models()
    for name in NAMES:
        entry = models[name]
        assert entry.family == "deeplab"
        assert entry.classes == 21
        assert entry.input_size == (513, 513)
        assert (entry.mean, entry.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert sorted(n for n, e in models.items() if e.family == "deeplab") == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_param_count_matches_seed_table(name):
    entry = get_model(name)
    n = sum(p.numel() for p in _built(name).parameters() if p.requires_grad)
    assert n == EXACT_PARAMS[name]
    printed = entry.seed_params_m
    digits = len(printed.split(".")[1]) if "." in printed else 0
    assert round(n / 1e6, digits) == float(printed), (name, n, printed)


@pytest.mark.parametrize("name", NAMES)
def test_upstream_state_dict_keys(name):
    sd = _built(name).state_dict()
    for key, shape in _expected_keys(name).items():
        assert key in sd, f"{name}: missing {key}"
        assert tuple(sd[key].shape) == shape, (name, key, tuple(sd[key].shape))
    # upstream's IntermediateLayerGetter drops ResNet's avgpool / fc and MobileNetV2's last
    # 1x1 conv (features.18) and classifier
    assert not any(k.startswith(("backbone.fc.", "backbone.features.", "backbone.classifier."))
                   for k in sd)
    assert not any(k.startswith("backbone.high_level_features.18.") for k in sd)


@pytest.mark.parametrize("name", NAMES)
def test_forward_returns_logits_at_input_size(name):
    entry = get_model(name)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = entry.main_logits(_built(name), x)
    assert y.shape == (1, 21, 64, 64)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_one_aspp_per_model(name):
    assert count_aspp(_built(name)) == 1
    assert count_aspp(_built(name).backbone) == 0


def test_mobilenet_backbone_strides_and_padding():
    """VainF's MobileNetV2 stem has no padding: 513 -> 256 -> low level 128, out 32 (OS 16)."""
    model = _built("deeplabv3plus_mobilenet")
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 513, 513))
    assert tuple(feats["low_level"].shape) == (1, 24, 128, 128)
    assert tuple(feats["out"].shape) == (1, 320, 32, 32)
    blocks = model.backbone["high_level_features"]._modules  # keyed "4".."17" like upstream
    assert blocks["14"].conv[1][0].dilation == (1, 1)  # first block of the dilated stage
    assert blocks["15"].conv[1][0].dilation == (2, 2)
    assert blocks["17"].conv[1][0].dilation == (2, 2)


def test_resnet_output_stride_16_and_aspp_rates():
    model = _built("deeplabv3plus_resnet50")
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 64, 64))
    assert tuple(feats["out"].shape) == (1, 2048, 4, 4)
    assert tuple(feats["low_level"].shape) == (1, 256, 16, 16)
    layer4 = model.backbone["layer4"]
    assert layer4[0].conv2.dilation == (1, 1) and layer4[0].conv2.stride == (1, 1)
    assert layer4[1].conv2.dilation == (2, 2)
    rates = [model.classifier.aspp.convs[i][0].dilation for i in (1, 2, 3)]
    assert rates == [(6, 6), (12, 12), (18, 18)]


def test_build_is_deterministic_and_loads_strict():
    entry = get_model("deeplabv3plus_mobilenet")
    torch.manual_seed(3)
    a = entry.build(21).state_dict()
    torch.manual_seed(3)
    b = entry.build(21)
    assert all(torch.equal(a[k], v) for k, v in b.state_dict().items())
    b.load_state_dict(a, strict=True)


def test_other_class_count_and_bad_class_count():
    model = get_model("deeplabv3_mobilenet").build(2).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 33, 47)).shape == (1, 2, 33, 47)
    with pytest.raises(VccError, match="num_classes"):
        get_model("deeplabv3_mobilenet").build(0)
