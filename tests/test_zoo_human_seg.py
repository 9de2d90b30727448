"""The six human-segmentation zoo models (thuyngch/Human-Segmentation-PyTorch)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from vcc.errors import VccError
from vcc.frontends.zoo import get_model, zoo_models
from vcc.frontends.zoo.human_seg import BiSeNet, DeepLabV3Plus, ICNet, PSPNet, UNet
from vcc.frontends.zoo.human_seg_backbones import adaptive_avg_pool2d, human_seg_resnet

NAMES = ["unet_mobilenetv2", "unet_resnet18", "deeplab3plus_resnet18", "bisenet_resnet18",
         "pspnet_resnet18", "icnet_resnet18"]

# count of trainable parameters of build(2), as measured
EXACT_PARAMS = {
    "unet_mobilenetv2": 4_683_331,
    "unet_resnet18": 16_613_179,
    "deeplab3plus_resnet18": 16_603_298,
    "bisenet_resnet18": 11_896_668,
    "pspnet_resnet18": 12_767_552,
    "icnet_resnet18": 11_592_352,
}

# key -> shape, read off upstream's module definitions
SPOT_KEYS = {
    "unet_mobilenetv2": {
        "backbone.features.0.0.weight": (32, 3, 3, 3),
        "backbone.features.1.conv.3.weight": (16, 32, 1, 1),
        "backbone.features.18.0.weight": (1280, 320, 1, 1),
        "decoder1.deconv.weight": (1280, 96, 4, 4),
        "decoder1.block_unit.conv.0.weight": (1152, 192, 1, 1),
        "decoder4.block_unit.conv.6.weight": (16, 192, 1, 1),
        "conv_last.1.weight": (2, 3, 3, 3),
    },
    "unet_resnet18": {
        "backbone.layer4.1.conv2.weight": (512, 512, 3, 3),
        "decoder1.deconv.weight": (512, 256, 4, 4),
        "decoder1.block_unit.conv1.weight": (256, 512, 3, 3),
        "decoder1.block_unit.downsample.0.weight": (256, 512, 1, 1),
        "decoder4.block_unit.downsample.1.running_var": (64,),
        "conv_last.0.weight": (3, 64, 3, 3),
    },
    "deeplab3plus_resnet18": {
        "backbone.layer1.0.conv1.weight": (64, 64, 3, 3),
        "aspp.aspp2.atrous_conv.weight": (256, 512, 3, 3),
        "aspp.global_avg_pool.1.weight": (256, 512, 1, 1),
        "aspp.conv1.weight": (256, 1280, 1, 1),
        "decoder.conv1.weight": (48, 64, 1, 1),
        "decoder.last_conv.0.weight": (256, 304, 3, 3),
        "decoder.last_conv.8.bias": (2,),
    },
    "bisenet_resnet18": {
        "spatial_path.conv1.conv.bias": (64,),
        "spatial_path.conv3.bn.weight": (256,),
        "context_path.layer3.0.downsample.0.weight": (256, 128, 1, 1),
        "arm_os16.conv.weight": (256, 256, 1, 1),
        "arm_os32.conv.bias": (512,),
        "ffm.convblock.conv.weight": (2, 1024, 3, 3),
        "ffm.conv2.weight": (2, 2, 1, 1),
        "conv_final.bias": (2,),
        "sup_os16.weight": (2, 256, 1, 1),
        "sup_os32.weight": (2, 512, 1, 1),
    },
    "pspnet_resnet18": {
        "backbone.layer4.0.downsample.0.weight": (512, 256, 1, 1),
        "pyramid.convs.3.conv.weight": (128, 512, 1, 1),
        "pyramid.convs.0.bn.running_mean": (128,),
        "main_output.conv1.conv.weight": (128, 1024, 3, 3),
        "main_output.conv2.weight": (2, 128, 1, 1),
        "aux_output.conv1.conv.weight": (64, 256, 3, 3),
        "aux_output.conv2.weight": (2, 64, 1, 1),
    },
    "icnet_resnet18": {
        "conv_sub1.conv1.conv.weight": (32, 3, 3, 3),
        "conv_sub1.conv3.bn.weight": (64,),
        "backbone.layer3.1.conv2.weight": (256, 256, 3, 3),
        "conv_sub4_reduce.conv.weight": (128, 512, 1, 1),
        "cff_24.conv_low.conv.weight": (128, 128, 3, 3),
        "cff_24.conv_high.conv.weight": (128, 128, 1, 1),
        "cff_12.conv_high.conv.weight": (128, 64, 1, 1),
        "cff_12.conv_low_cls.weight": (2, 128, 1, 1),
        "conv_cls.weight": (2, 128, 1, 1),
    },
}


@pytest.fixture(scope="module")
def built() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: get_model(name).build(2).eval() for name in NAMES}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_registered_entries():
    models = {k: v for k, v in zoo_models().items() if v.family == "human_seg"}
    assert sorted(models) == sorted(NAMES)
    for e in models.values():
        assert e.classes == 2 and e.input_size == (320, 320)
        assert e.mean == (0.485, 0.456, 0.406) and e.std == (0.229, 0.224, 0.225)
        assert e.upstream.startswith("thuyngch/Human-Segmentation-PyTorch models/")


@pytest.mark.parametrize("name", [n for n in NAMES if n != "pspnet_resnet18"])
def test_param_count_matches_seed(built, name):
    n = _count(built[name])
    assert n == EXACT_PARAMS[name]
    assert round(n / 1e6, 1) == float(get_model(name).seed_params_m)


def test_pspnet_param_count_seed_omits_aux_head(built):
    """Upstream builds `aux_output` (used in training); the seed's 12.6 M is the count
    without it (the upstream README's figure comes from torchsummary on the eval forward,
    which never runs that head). With it the net has 12.77 M."""
    net = built["pspnet_resnet18"]
    n, aux = _count(net), _count(net.aux_output)
    assert n == EXACT_PARAMS["pspnet_resnet18"]
    assert aux == 147_712
    assert round(n / 1e6, 1) == 12.8
    assert round((n - aux) / 1e6, 1) == float(get_model("pspnet_resnet18").seed_params_m)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_spot_keys(built, name):
    sd = built[name].state_dict()
    for key, shape in SPOT_KEYS[name].items():
        assert key in sd, f"{name}: missing {key}"
        assert tuple(sd[key].shape) == shape, f"{name}: {key} {tuple(sd[key].shape)} != {shape}"
    assert not any(k.endswith(("fc.weight", "classifier.1.weight")) for k in sd), \
        "upstream builds its backbones with num_classes=None (no classifier)"


@pytest.mark.parametrize("name", NAMES)
def test_eval_forward_shape(built, name):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = get_model(name).main_logits(built[name], x)
    assert y.shape == (1, 2, 64, 64)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name,n_out", [("bisenet_resnet18", 3), ("pspnet_resnet18", 2),
                                         ("icnet_resnet18", 3)])
def test_training_mode_returns_aux_outputs(name, n_out):
    entry = get_model(name)
    torch.manual_seed(0)
    net = entry.build(2).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    out = net(x)
    assert isinstance(out, tuple) and len(out) == n_out
    torch.manual_seed(1)  # same dropout masks
    main = entry.main_logits(net, x)
    assert torch.equal(main, out[0])


def test_build_is_deterministic():
    entry = get_model("icnet_resnet18")
    torch.manual_seed(3)
    a = entry.build(2).state_dict()
    torch.manual_seed(3)
    b = entry.build(2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip_strict(built):
    """A state_dict of one build loads strictly into a fresh build with other classes' heads
    rejected: the class count reaches the heads' shapes."""
    sd = built["bisenet_resnet18"].state_dict()
    BiSeNet("resnet18", 2).load_state_dict(sd, strict=True)
    with pytest.raises(RuntimeError):
        BiSeNet("resnet18", 3).load_state_dict(sd, strict=True)


def test_upstream_resnet_semantics():
    """2x2 max-pool; output stride 8 dilates layer3/layer4 with a multi-grid (2, 4 / 4, 8)."""
    net = human_seg_resnet("resnet18", output_stride=8)
    assert net.maxpool.kernel_size == 2 and net.maxpool.stride == 2
    assert [b.conv1.dilation[0] for b in net.layer3] == [2, 4]
    assert [b.conv1.dilation[0] for b in net.layer4] == [4, 8]
    assert net.layer3[0].conv1.stride == (1, 1)
    assert net.layer3[0].downsample[0].stride == (1, 1)
    stages = net.stages(torch.randn(1, 3, 64, 64))
    assert [s.shape[-1] for s in stages] == [32, 16, 8, 8, 8]


@pytest.mark.parametrize("size,bins", [(10, 3), (10, 6), (40, 6), (2, 6), (7, 2), (8, 2)])
def test_adaptive_avg_pool_matches_torch(size, bins):
    x = torch.randn(2, 4, size, size + 3)
    ref = F.adaptive_avg_pool2d(x, bins)
    got = adaptive_avg_pool2d(x, bins)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-6)


def test_icnet_output_at_320_is_input_size():
    torch.manual_seed(0)
    with torch.no_grad():
        y = ICNet("resnet18", 2).eval()(torch.randn(1, 3, 320, 320))
    assert y.shape == (1, 2, 320, 320)


@pytest.mark.parametrize("make", [
    lambda: UNet("vgg16", 2),
    lambda: DeepLabV3Plus("mobilenetv2", 16, 2),
    lambda: DeepLabV3Plus("resnet18", 32, 2),
    lambda: BiSeNet("resnet50", 2),
    lambda: PSPNet("resnet18", 0),
])
def test_bad_arguments_raise_vcc_error(make):
    with pytest.raises(VccError):
        make()
