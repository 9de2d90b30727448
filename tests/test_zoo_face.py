"""Face-parsing zoo models: upstream key names and shapes, parameter counts, forward shapes."""

from __future__ import annotations

import pytest
import torch

from vcc.errors import VccError
from vcc.frontends.zoo import get_model, zoo_models
from vcc.frontends.zoo.parsenet import ConvLayer, ParseNet

# Keys and shapes read in zllrunning/face-parsing.PyTorch model.py / resnet.py.
BISENET_KEYS = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.bn2.running_var": (512,),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.bn_atten.running_mean": (128,),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "cp.conv_head16.conv.weight": (128, 128, 3, 3),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}

# Keys and shapes of GPEN's ParseNet(512, 512, 32, 64, 19, 'bn', 'LeakyReLU', [32, 256]).
PARSENET_KEYS = {
    "encoder.0.conv2d.weight": (64, 3, 3, 3),
    "encoder.0.conv2d.bias": (64,),
    "encoder.1.shortcut_func.conv2d.weight": (128, 64, 3, 3),
    "encoder.1.shortcut_func.conv2d.bias": (128,),
    "encoder.1.conv1.conv2d.weight": (128, 64, 3, 3),
    "encoder.1.conv1.norm.norm.weight": (128,),
    "encoder.4.conv2.norm.norm.running_mean": (256,),
    "body.9.conv2.conv2d.weight": (256, 256, 3, 3),
    "decoder.0.shortcut_func.conv2d.weight": (256, 256, 3, 3),
    "decoder.3.conv1.conv2d.weight": (64, 128, 3, 3),
    "decoder.3.shortcut_func.conv2d.bias": (64,),
    "out_mask_conv.conv2d.weight": (19, 64, 3, 3),
    "out_mask_conv.conv2d.bias": (19,),
    "out_img_conv.conv2d.weight": (3, 64, 3, 3),
}

ABSENT = {
    "bisenet": ["cp.resnet.fc.weight", "sp.conv1.conv.weight", "cp.resnet.conv1.bias"],
    # BN convs carry no bias; same-width unscaled blocks have an identity shortcut.
    "parsenet": ["encoder.1.conv1.conv2d.bias", "body.0.shortcut_func.conv2d.weight"],
}

EXPECTED_KEYS = {"bisenet": BISENET_KEYS, "parsenet": PARSENET_KEYS}
KEY_COUNT = {"bisenet": 191, "parsenet": 238}  # state_dict entries, buffers included


@pytest.fixture(scope="module")
def built() -> dict[str, torch.nn.Module]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return {name: get_model(name).build(19) for name in EXPECTED_KEYS}


@pytest.mark.parametrize("name", ["bisenet", "parsenet"])
def test_registered(name: str) -> None:
    entry = zoo_models()[name]
    assert entry.family == "face"
    assert entry.classes == 19 and entry.input_size == (512, 512)
    expected_mean = (0.485, 0.456, 0.406) if name == "bisenet" else (0.5, 0.5, 0.5)
    assert entry.mean == expected_mean


@pytest.mark.parametrize("name", ["bisenet", "parsenet"])
def test_param_count_matches_seed_table(name: str, built) -> None:
    n = sum(p.numel() for p in built[name].parameters() if p.requires_grad)
    entry = get_model(name)
    digits = len(entry.seed_params_m.split(".")[1])
    assert round(n / 1e6, digits) == float(entry.seed_params_m), n


@pytest.mark.parametrize("name", ["bisenet", "parsenet"])
def test_upstream_keys_and_shapes(name: str, built) -> None:
    sd = built[name].state_dict()
    for key, shape in EXPECTED_KEYS[name].items():
        assert key in sd, f"{name}: missing {key}"
        assert tuple(sd[key].shape) == shape, f"{name}: {key} {tuple(sd[key].shape)}"
    for key in ABSENT[name]:
        assert key not in sd, f"{name}: unexpected {key}"
    assert len(sd) == KEY_COUNT[name]


@pytest.mark.parametrize("name", ["bisenet", "parsenet"])
def test_main_logits_full_resolution(name: str, built) -> None:
    module = built[name].eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = get_model(name).main_logits(module, x)
        outputs = module(x)
    assert logits.shape == (1, 19, 64, 64)
    assert torch.equal(logits, outputs[0])
    assert torch.isfinite(logits).all()


def test_bisenet_aux_heads_and_class_count() -> None:
    torch.manual_seed(0)
    module = get_model("bisenet").build(5).eval()
    with torch.no_grad():
        outs = module(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 5, 64, 96)] * 3


def test_parsenet_image_head() -> None:
    torch.manual_seed(0)
    net = ParseNet(64, 64, 16, 8, 4, norm_type="bn", relu_type="LeakyReLU", ch_range=(8, 16))
    with torch.no_grad():
        mask, img = net.eval()(torch.randn(1, 3, 32, 32))
    assert mask.shape == (1, 4, 32, 32) and img.shape == (1, 3, 32, 32)
    assert len(net.encoder) == 3 and len(net.decoder) == 2


@pytest.mark.parametrize("name", ["bisenet", "parsenet"])
def test_build_is_deterministic(name: str) -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        states.append(get_model(name).build(19).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_parsenet_bad_norm_names_the_option() -> None:
    with pytest.raises(VccError, match="norm_type 'sn'"):
        ConvLayer(3, 8, norm_type="sn")
