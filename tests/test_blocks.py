"""Block recognition (vcc.passes.blocks): counts on the zoo exports, derived from the zoo's own
module trees; a block broken on purpose is not found; the same blocks written by someone else are;
annotating changes no number."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vcc.frontends.onnx_export import export_onnx
from vcc.frontends.onnx_import import load_model
from vcc.frontends.torch_export import export_torch
from vcc.frontends.zoo import get_model
from vcc.frontends.zoo.export import export_zoo_model
from vcc.ir.graph import Block, Graph
from vcc.ir.verify import IRVerificationError, verify_graph
from vcc.passes import Pass, PassManager, default_fp32_pipeline
from vcc.passes.blocks import annotate_blocks, block_of, count_blocks, find_blocks
from vcc.passes.dce import eliminate_dead_code
from vcc.runtime.reference import OrtSession

SIZE = 128
DEEPLABS = ["deeplabv3_mobilenet", "deeplabv3plus_mobilenet"]
DEEPLABS_SLOW = ["deeplabv3_resnet50", "deeplabv3plus_resnet50", "deeplabv3_resnet101",
                 "deeplabv3plus_resnet101"]
HRNETS = {"hrnetv2_w18_small_v1": 3, "hrnetv2_w18_small_v2": 6}  # the configs' fuse layers
HRNETS_SLOW = {"hrnetv2_w48": 8}


@pytest.fixture(scope="module")
def zoo_ir(tmp_path_factory):
    """name -> (ONNX path, IR after the fp32 pipeline) of the zoo model at SIZE; each exported once."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            path = tmp_path_factory.mktemp("blocks") / f"{name}.onnx"
            export_zoo_model(name, path, size=(SIZE, SIZE))
            cache[name] = (path, PassManager(default_fp32_pipeline()).run(load_model(path)))
        return cache[name]

    return get


def _meta_module(name: str) -> nn.Module:
    """The zoo module's tree (no weights, no arithmetic): what upstream builds."""
    entry = get_model(name)
    with torch.device("meta"):
        return entry.build(entry.classes)


def _modules_of(module: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in module.modules())


# --- the zoo ---------------------------------------------------------------------------------------

def test_bisenet_two_arm_one_ffm(zoo_ir):
    from vcc.frontends.zoo.bisenet_face import AttentionRefinementModule, FeatureFusionModule

    _, g = zoo_ir("bisenet")
    counts = count_blocks(g)
    module = _meta_module("bisenet")
    assert counts["arm"] == _modules_of(module, AttentionRefinementModule) == 2
    assert counts["ffm"] == _modules_of(module, FeatureFusionModule) == 1
    arms = [b for b in g.blocks if b.kind == "arm"]
    assert sorted(b.name for b in arms) == ["arm:model/cp/arm16", "arm:model/cp/arm32"]
    for b in arms:  # GAP -> 1x1 conv (BN folded) -> sigmoid -> Mul, one entry, one exit
        assert [g.node(n).op for n in b.nodes] == ["GlobalAveragePool", "Conv", "Sigmoid", "Mul"]
        assert len(b.entries) == 1 and len(b.exits) == 1
    ffm = next(b for b in g.blocks if b.kind == "ffm")
    assert {g.node(n).op for n in ffm.nodes} == {"Concat", "Conv", "Relu", "GlobalAveragePool",
                                                 "Sigmoid", "Mul", "Add"}
    assert len(ffm.entries) == 2  # the two fused features
    # the ResNet-18 context path's basic blocks are residual blocks too
    from vcc.frontends.zoo.resnet import BasicBlock
    assert counts["residual"] == _modules_of(module, BasicBlock) == 8


def test_one_aspp_in_deeplab3plus_resnet18(zoo_ir):
    from vcc.frontends.zoo.human_seg import ASPP

    _, g = zoo_ir("deeplab3plus_resnet18")
    assert count_blocks(g)["aspp"] == _modules_of(_meta_module("deeplab3plus_resnet18"), ASPP) == 1
    aspp = next(b for b in g.blocks if b.kind == "aspp")
    assert aspp.name == "aspp:model/aspp" and len(aspp.entries) == 1
    ops = [g.node(n).op for n in aspp.nodes]
    assert ops.count("Conv") == 6 and ops.count("Concat") == 1 and ops.count("GlobalAveragePool") == 1


def _check_deeplab(zoo_ir, name):
    from vcc.frontends.zoo.deeplab import count_aspp

    _, g = zoo_ir(name)
    assert count_blocks(g)["aspp"] == count_aspp(_meta_module(name)) == 1


@pytest.mark.parametrize("name", DEEPLABS)
def test_one_aspp_per_deeplab(zoo_ir, name):
    _check_deeplab(zoo_ir, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", DEEPLABS_SLOW)
def test_one_aspp_per_resnet_deeplab(zoo_ir, name):
    _check_deeplab(zoo_ir, name)


def _check_hrnet(zoo_ir, name, expected):
    from vcc.frontends.zoo.hrnet import count_fuse_layers

    _, g = zoo_ir(name)
    fusions = [b for b in g.blocks if b.kind == "hr_fusion"]
    assert len(fusions) == count_fuse_layers(_meta_module(name)) == expected
    for b in fusions:  # one block per HighResolutionModule: every output branch of it
        branches = len(b.entries)
        assert len(b.exits) == branches >= 2
        assert b.name.startswith("hr_fusion:model/stage")


@pytest.mark.parametrize("name", sorted(HRNETS))
def test_hr_fusion_per_fuse_layer(zoo_ir, name):
    _check_hrnet(zoo_ir, name, HRNETS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HRNETS_SLOW))
def test_hr_fusion_per_fuse_layer_w48(zoo_ir, name):
    _check_hrnet(zoo_ir, name, HRNETS_SLOW[name])


@pytest.mark.slow
def test_parsenet_residual_blocks(zoo_ir):
    from vcc.frontends.zoo.parsenet import ResidualBlock

    _, g = zoo_ir("parsenet")
    expected = _modules_of(_meta_module("parsenet"), ResidualBlock)  # 4 down + 10 body + 4 up
    assert count_blocks(g)["residual"] == expected == 18
    # the long skip around the body (feat + body(feat)) is no residual block of its own
    assert all(len(b.nodes) <= 9 for b in g.blocks if b.kind == "residual")


def test_pspnet_pyramid_pooling(zoo_ir):
    _, g = zoo_ir("pspnet_resnet18")
    assert count_blocks(g)["ppm"] == 1


# --- broken on purpose ---------------------------------------------------------------------------

def _rewire(g: Graph, node: str, old: str, new: str) -> Graph:
    g = g.copy()
    n = g.node(node)
    n.inputs = [new if i == old else i for i in n.inputs]
    g.blocks = []
    return g


def test_arm_without_its_sigmoid_is_not_found(zoo_ir):
    _, g = zoo_ir("bisenet")
    arm = next(b for b in g.blocks if b.name == "arm:model/cp/arm16")
    sigmoid = next(g.node(n) for n in arm.nodes if g.node(n).op == "Sigmoid")
    mul = next(n for n in arm.nodes if g.node(n).op == "Mul")
    broken = _rewire(g, mul, sigmoid.outputs[0], sigmoid.inputs[0])  # Mul skips the sigmoid
    counts = count_blocks(annotate_blocks(broken))
    assert counts["arm"] == 1 and counts["ffm"] == 1


def test_aspp_branch_off_another_input_is_not_found(zoo_ir):
    _, g = zoo_ir("deeplab3plus_resnet18")
    aspp = next(b for b in g.blocks if b.kind == "aspp")
    x = aspp.entries[0]
    conv = next(n for n in aspp.nodes if g.node(n).op == "Conv" and g.node(n).inputs[0] == x
                and g.node(n).attrs["dilations"][0] > 1)
    other = g.producers()[x].inputs[0]  # the backbone's previous tensor, same shape
    assert g.shape(other) == g.shape(x)
    assert count_blocks(annotate_blocks(_rewire(g, conv, x, other)))["aspp"] == 0


def test_fusion_without_its_upsampling_conv_is_not_found(zoo_ir):
    _, g = zoo_ir("hrnetv2_w18_small_v1")
    fusion = next(b for b in g.blocks if b.kind == "hr_fusion")
    resize = next(g.node(n) for n in fusion.nodes if g.node(n).op == "Resize")
    conv = g.producers()[resize.inputs[0]]
    broken = _rewire(g, resize.name, conv.outputs[0], conv.inputs[0])  # upsample the raw input
    assert count_blocks(annotate_blocks(eliminate_dead_code(broken)))["hr_fusion"] == 2


# --- written by someone else ----------------------------------------------------------------------

def _cbr(i: int, o: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, k, stride, padding=dilation * (k // 2), dilation=dilation,
                                   bias=False), nn.BatchNorm2d(o), nn.ReLU())


class PyramidHead(nn.Module):
    """An ASPP: no 1x1 branch, `rates` atrous branches, an image branch mean-pooled with a ReLU
    before and two after its conv, broadcast back with expand, ReLU6 after the projection."""

    def __init__(self, c: int, rates: tuple[int, ...]):
        super().__init__()
        self.atrous = nn.ModuleList(_cbr(c, 8, 3, 1, r) for r in rates)
        self.img = nn.Conv2d(c, 8, 1)
        self.fuse = nn.Conv2d(8 * (len(rates) + 1), 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.relu(self.img(F.relu(x.mean((2, 3), keepdim=True))))
        g = F.relu(g).expand(-1, -1, x.shape[2], x.shape[3])
        return F.relu6(self.fuse(torch.cat([g, *[b(x) for b in self.atrous]], 1)))


class Gate(nn.Module):
    """An ARM: mean, biased 1x1 conv + BN, sigmoid times the input (gate first)."""

    def __init__(self, c: int):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.fc(x.mean((2, 3), keepdim=True)))) * x


class Mix(nn.Module):
    """An FFM: concat, 1x1 conv-BN-ReLU, squeeze-excite gate, y + gate * y."""

    def __init__(self, c: int):
        super().__init__()
        self.mix = _cbr(2 * c, c, 1)
        self.squeeze = nn.Conv2d(c, c // 2, 1)
        self.excite = nn.Conv2d(c // 2, c, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        y = self.mix(torch.cat([a, b], 1))
        w = torch.sigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(y, 1)))))
        return y + w * y


class Plain(nn.Module):
    def __init__(self, rates: tuple[int, ...]):
        super().__init__()
        self.stem = _cbr(3, 16, 3, 2)
        self.side = _cbr(16, 16)
        self.g1, self.g2 = Gate(16), Gate(16)
        self.mix = Mix(16)
        self.head = PyramidHead(16, rates)
        self.out = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.out(self.head(self.mix(self.g1(s), self.g2(self.side(s)))))


class Shortcut(nn.Module):
    """A residual block, shortcut first, projection when the width changes, no final ReLU."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.proj = nn.Conv2d(i, o, 1) if i != o else nn.Identity()
        self.a, self.b = _cbr(i, o), nn.Conv2d(o, o, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.b(self.a(x))


class Exchange(nn.Module):
    """A two-resolution fusion: nearest 2x upsampling after the 1x1 conv, one strided 3x3 down."""

    def __init__(self, c0: int, c1: int):
        super().__init__()
        self.up = nn.Conv2d(c1, c0, 1)
        self.down = nn.Conv2d(c0, c1, 3, 2, 1)

    def forward(self, hi: torch.Tensor, lo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (F.relu(F.interpolate(self.up(lo), scale_factor=2.0, mode="nearest") + hi),
                F.relu(lo + self.down(hi)))


class TwoRes(nn.Module):
    """Two exchanges between parallel branches (a transition straight into an exchange, the low
    input computed from the high one, is a strided residual shape, not a fusion)."""

    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 8, 3, 2)
        self.split = _cbr(8, 16, 3, 2)
        self.b0, self.b1 = _cbr(8, 8), _cbr(16, 16)  # parallel branches before each exchange
        self.x1 = Exchange(8, 16)
        self.hi, self.lo = Shortcut(8, 8), Shortcut(16, 24)
        self.x2 = Exchange(8, 24)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hi = self.stem(x)
        hi, lo = self.x1(self.b0(hi), self.b1(self.split(hi)))
        hi, lo = self.x2(self.hi(hi), self.lo(lo))
        return self.out(hi) + F.interpolate(lo.mean(1, keepdim=True), scale_factor=2.0)


def _own_ir(module: nn.Module, tmp_path, size: int = 32) -> Graph:
    torch.manual_seed(0)
    path = tmp_path / "own.onnx"
    export_torch(module.eval(), (1, 3, size, size), path)
    return PassManager(default_fp32_pipeline()).run(load_model(path))


@pytest.mark.parametrize("rates", [(2, 3), (2, 3, 4, 5, 6)])
def test_blocks_written_differently_are_found(tmp_path, rates):
    g = _own_ir(Plain(rates), tmp_path)
    counts = count_blocks(g)
    assert (counts["arm"], counts["ffm"], counts["aspp"]) == (2, 1, 1)
    aspp = next(b for b in g.blocks if b.kind == "aspp")
    ops = [g.node(n).op for n in aspp.nodes]
    assert ops.count("Conv") == len(rates) + 2 and "Expand" in ops and "ReduceMean" in ops


def test_fusion_and_residual_written_differently_are_found(tmp_path):
    g = _own_ir(TwoRes(), tmp_path)
    counts = count_blocks(g)
    assert counts["hr_fusion"] == 2 and counts["residual"] == 2


# --- the pass, the IR, the tools ------------------------------------------------------------------

def _without_annotation() -> list[Pass]:
    return [p for p in default_fp32_pipeline() if p.name != "annotate_blocks"]


def test_annotating_changes_no_number_and_is_cheap(zoo_ir):
    path, _ = zoo_ir("bisenet")
    plain = PassManager(_without_annotation()).run(load_model(path))
    t0 = time.perf_counter()
    annotated = annotate_blocks(plain)
    assert time.perf_counter() - t0 < 1.0
    assert not plain.blocks and annotated.blocks
    assert [str(n) for n in annotated.nodes] == [str(n) for n in plain.nodes]
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    before = OrtSession(export_onnx(plain), optimize=False).run(x)[0]
    after = OrtSession(export_onnx(annotated), optimize=False).run(x)[0]
    assert np.array_equal(before, after)


def test_block_of_names_every_member(zoo_ir):
    _, g = zoo_ir("bisenet")
    names = block_of(g)
    for b in g.blocks:
        assert all(names[n] == b.name for n in b.nodes)
    assert names["/model/cp/arm32/Mul"] == "arm:model/cp/arm32"
    assert len({b.name for b in g.blocks}) == len(g.blocks)


def test_blocks_dropped_when_their_nodes_vanish_and_verified(zoo_ir):
    _, g = zoo_ir("bisenet")
    verify_graph(g)

    def skip_arm16_gate(graph: Graph) -> Graph:
        out = graph.copy()
        sig = out.node("/model/cp/arm16/sigmoid_atten/Sigmoid")
        out.replace_uses(sig.outputs[0], sig.inputs[0])
        return out

    pruned = PassManager([Pass("skip", skip_arm16_gate), Pass("dce", eliminate_dead_code)]).run(g)
    assert count_blocks(pruned)["arm"] == 1 and len(pruned.blocks) == len(g.blocks) - 1
    bad = g.copy()
    bad.blocks = [*bad.blocks, Block("arm", "arm:ghost", ("no_such_node",))]
    with pytest.raises(IRVerificationError, match="no_such_node"):
        verify_graph(bad)
    twice = g.copy()
    arm = next(b for b in g.blocks if b.kind == "arm")
    twice.blocks = [*twice.blocks, Block("arm", "arm:again", arm.nodes)]
    with pytest.raises(IRVerificationError, match="two arm blocks"):
        verify_graph(twice)


def test_find_blocks_by_kind(zoo_ir):
    _, g = zoo_ir("bisenet")
    assert {b.kind for b in find_blocks(g, kinds=("arm",))} == {"arm"}


def test_inspect_lists_blocks(zoo_ir, cli):
    path, g = zoo_ir("bisenet")
    doc = json.loads(cli("inspect", path, "--json", check=0).stdout)
    assert doc["blocks"] == [{"kind": b.kind, "name": b.name, "nodes": list(b.nodes)} for b in g.blocks]
    assert sum(b["kind"] == "arm" for b in doc["blocks"]) == 2
    text = cli("inspect", path, "--no-ir", check=0).stdout
    assert "blocks  11 (arm 2, ffm 1, residual 8)" in text
    assert "arm       arm:model/cp/arm32  4 nodes: /model/cp/arm32/GlobalAveragePool" in text
