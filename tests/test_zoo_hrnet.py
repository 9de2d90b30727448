"""HRNetV2 zoo models: structure, keys, parameter / FLOP counts against the seed table."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vcc.errors import VccError
from vcc.frontends.zoo import get_model
from vcc.frontends.zoo.hrnet import HighResolutionModule, count_fuse_layers, hrnet

NAMES = ("hrnetv2_w48", "hrnetv2_w18_small_v1", "hrnetv2_w18_small_v2")

# Exact trainable-parameter counts of upstream's build with 19 classes, and the number of
# multi-branch HighResolutionModules (stage2 + stage3 + stage4 NUM_MODULES).
PARAMS = {"hrnetv2_w48": 65_859_379, "hrnetv2_w18_small_v1": 1_540_819,
          "hrnetv2_w18_small_v2": 3_939_579}
FUSE_LAYERS = {"hrnetv2_w48": 1 + 4 + 3, "hrnetv2_w18_small_v1": 1 + 1 + 1,
               "hrnetv2_w18_small_v2": 1 + 3 + 2}

# (key, shape) pairs read off seg_hrnet.py and the cityscapes configs.
KEYS = {
    "hrnetv2_w48": [
        ("conv1.weight", (64, 3, 3, 3)),
        ("layer1.3.conv3.weight", (256, 64, 1, 1)),
        ("layer1.0.downsample.0.weight", (256, 64, 1, 1)),
        ("transition1.0.0.weight", (48, 256, 3, 3)),
        ("transition1.1.0.0.weight", (96, 256, 3, 3)),
        ("transition2.2.0.0.weight", (192, 96, 3, 3)),
        ("transition3.3.0.1.running_mean", (384,)),
        ("stage2.0.branches.1.3.conv2.weight", (96, 96, 3, 3)),
        ("stage2.0.fuse_layers.0.1.0.weight", (48, 96, 1, 1)),
        ("stage2.0.fuse_layers.1.0.0.0.weight", (96, 48, 3, 3)),
        ("stage3.3.fuse_layers.2.0.0.0.weight", (48, 48, 3, 3)),
        ("stage3.3.fuse_layers.2.0.1.0.weight", (192, 48, 3, 3)),
        ("stage4.2.fuse_layers.3.0.2.1.running_var", (384,)),
        ("stage4.2.fuse_layers.0.3.1.weight", (48,)),
        ("last_layer.0.weight", (720, 720, 1, 1)),
        ("last_layer.0.bias", (720,)),
        ("last_layer.1.num_batches_tracked", ()),
        ("last_layer.3.weight", (19, 720, 1, 1)),
        ("last_layer.3.bias", (19,)),
    ],
    "hrnetv2_w18_small_v1": [
        ("layer1.0.conv1.weight", (32, 64, 1, 1)),
        ("layer1.0.downsample.0.weight", (128, 64, 1, 1)),
        ("transition1.0.0.weight", (16, 128, 3, 3)),
        ("transition1.1.0.0.weight", (32, 128, 3, 3)),
        ("stage2.0.fuse_layers.1.0.0.0.weight", (32, 16, 3, 3)),
        ("stage4.0.branches.3.1.conv2.weight", (128, 128, 3, 3)),
        ("stage4.0.fuse_layers.3.2.0.0.weight", (128, 64, 3, 3)),
        ("last_layer.3.weight", (19, 240, 1, 1)),
    ],
    "hrnetv2_w18_small_v2": [
        ("layer1.1.conv3.weight", (256, 64, 1, 1)),
        ("transition1.0.0.weight", (18, 256, 3, 3)),
        ("stage2.0.fuse_layers.1.0.0.0.weight", (36, 18, 3, 3)),
        ("stage3.2.fuse_layers.0.2.0.weight", (18, 72, 1, 1)),
        ("stage4.1.fuse_layers.3.1.1.0.weight", (144, 36, 3, 3)),
        ("last_layer.3.weight", (19, 270, 1, 1)),
    ],
}

# Keys that must NOT exist: identity slots upstream fills with None.
ABSENT = ["transition3.2.0.weight", "stage2.0.fuse_layers.0.0.0.weight",
          "stage4.0.fuse_layers.3.3.0.weight", "transition2.0.0.weight"]


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {n: get_model(n).build(19).eval() for n in NAMES}


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry(name: str) -> None:
    e = get_model(name)
    assert e.family == "hrnet"
    assert e.classes == 19
    assert e.input_size == (512, 512)
    assert e.mean == (0.485, 0.456, 0.406) and e.std == (0.229, 0.224, 0.225)
    assert "HRNet-Semantic-Segmentation" in e.upstream


@pytest.mark.parametrize("name", NAMES)
def test_param_count(built: dict[str, nn.Module], name: str) -> None:
    n = _n_params(built[name])
    assert n == PARAMS[name]
    # Upstream's README prints the count cut to one decimal (65.859 M -> "65.8"), so only the
    # truncation matches for W48; rounding does for the small nets.
    seed = float(get_model(name).seed_params_m)
    assert math.floor(n / 1e5) / 10 == seed
    if name != "hrnetv2_w48":
        assert round(n / 1e6, 1) == seed


@pytest.mark.parametrize("name", NAMES)
def test_flops_match_seed(name: str) -> None:
    """Upstream's modelsummary: conv multiply-adds / 2**30 at 1024x2048 (meta device: no math)."""
    with torch.device("meta"):
        m = get_model(name).build(19).eval()
    macs = 0

    def hook(mod: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        macs += mod.weight.numel() * out.shape[2] * out.shape[3]

    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            mod.register_forward_hook(hook)
    m(torch.empty(1, 3, 1024, 2048, device="meta"))
    seed, note = get_model(name).seed_flops_g.split(" ")
    assert note == "@1024x2048"
    assert round(macs / 2**30, 1) == float(seed)


@pytest.mark.parametrize("name", NAMES)
def test_forward_quarter_resolution(built: dict[str, nn.Module], name: str) -> None:
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = get_model(name).main_logits(built[name], x)
    assert y.shape == (1, 19, 16, 16)
    assert torch.isfinite(y).all()
    with torch.no_grad():
        y2 = get_model(name).main_logits(built[name], torch.randn(1, 3, 96, 160))
    assert y2.shape == (1, 19, 24, 40)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys(built: dict[str, nn.Module], name: str) -> None:
    sd = built[name].state_dict()
    for key, shape in KEYS[name]:
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    for key in ABSENT:
        assert key not in sd, key
    # A checkpoint with exactly these keys loads strictly into a fresh build.
    fresh = get_model(name).build(19)
    assert not fresh.load_state_dict(sd, strict=True).missing_keys


@pytest.mark.parametrize("name", NAMES)
def test_count_fuse_layers(built: dict[str, nn.Module], name: str) -> None:
    m = built[name]
    assert count_fuse_layers(m) == FUSE_LAYERS[name]
    hr_modules = [x for x in m.modules() if isinstance(x, HighResolutionModule)]
    assert len(hr_modules) == FUSE_LAYERS[name]  # every module of stages 2..4 is multi-branch


def test_count_fuse_layers_of_plain_module_is_zero() -> None:
    assert count_fuse_layers(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())) == 0


def test_align_corners_follows_config(built: dict[str, nn.Module]) -> None:
    # Only the W48 cityscapes config sets MODEL.ALIGN_CORNERS: False; the default is True.
    expected = {"hrnetv2_w48": False, "hrnetv2_w18_small_v1": True, "hrnetv2_w18_small_v2": True}
    for name, ac in expected.items():
        m = built[name]
        assert m.align_corners is ac
        assert all(x.align_corners is ac for x in m.modules()
                   if isinstance(x, HighResolutionModule))


def test_build_is_deterministic() -> None:
    torch.manual_seed(3)
    a = hrnet("w18_small_v1").state_dict()
    torch.manual_seed(3)
    b = hrnet("w18_small_v1").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_num_classes_sets_the_head() -> None:
    m = hrnet("w18_small_v1", num_classes=7)
    assert m.last_layer[3].weight.shape == (7, 240, 1, 1)


def test_unknown_config_raises() -> None:
    with pytest.raises(VccError, match="w32"):
        hrnet("w32")
