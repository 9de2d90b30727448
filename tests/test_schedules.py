"""optimize_for_cpu: the scheduled module computes what the default build computes.

Small Relax graphs of the ops vcc lowers to (packed and unpacked convolutions, BN-folded
forms, attention, concat, resize, pooling ...) are compiled with and without
optimize_for_cpu and compared to 1e-4 relative; the report must say what was scheduled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tvm
from hostcpu import HOST, SPR, assembly, instructions, runs_here
from tvm import relax

from vcc.errors import VccError
from vcc.runtime.schedules import optimize_for_cpu, pack_channels
from vcc.runtime.schedules.conv_schedule import choose_tile
from vcc.runtime.schedules.pack_core import pack_array

R = relax.op
# the schedules run on AVX-512 where this host has it, else on the host's own cpu (AVX2: the 16-lane
# vectors split in two); test_avx512_build_uses_zmm_fmas checks the AVX-512 code on any host
TARGET = SPR if runs_here(SPR) else HOST
RNG = np.random.default_rng(0)


def const(*shape, scale=0.2, offset=0.0):
    return relax.const((RNG.standard_normal(shape) * scale + offset).astype(np.float32))


def graph(body: Callable, *shapes: tuple[int, ...]) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{k}", relax.TensorType(s, "float32")) for k, s in enumerate(shapes)]
    with bb.function("main", xs):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *xs))
        bb.emit_func_output(out)
    return bb.get()


def conv(bb, x, cin, cout, k=3, stride=1, dilation=1, groups=1, bias=True, relu=True):
    pad = dilation * (k // 2)
    y = bb.emit(R.nn.conv2d(x, const(cout, cin // groups, k, k), strides=stride, padding=(pad,) * 4,
                            dilation=dilation, groups=groups))
    if bias:
        y = bb.emit(R.add(y, const(1, cout, 1, 1)))
    return bb.emit(R.nn.relu(y)) if relu else y


def run(mod: tvm.IRModule, xs: list[np.ndarray]) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target=TARGET), tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x) for x in xs]).numpy()


def check(mod: tvm.IRModule, *shapes: tuple[int, ...]):
    """Compile with and without optimize_for_cpu; the outputs agree; returns the report."""
    xs = [RNG.standard_normal(s).astype(np.float32) for s in shapes]
    ref = run(mod, xs)
    opt, report = optimize_for_cpu(mod, TARGET)
    out = run(opt, xs)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    if ref.dtype.kind in "iu":
        np.testing.assert_array_equal(out, ref)
    else:
        assert np.abs(out - ref).max() <= 1e-4 * max(1e-6, float(np.abs(ref).max())), report.table()
    return report


def schedules(report) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in report.functions:
        out[f.schedule] = out.get(f.schedule, 0) + 1
    return out


# --- convolutions in each packed form ------------------------------------------------------------

def test_conv_bias_relu_residual_is_one_tiled_function():
    def body(bb, x):
        y = conv(bb, x, 16, 32)
        z = conv(bb, y, 32, 32, relu=False)
        return bb.emit(R.nn.relu(bb.emit(R.add(z, y))))

    report = check(graph(body, (1, 16, 32, 32)), (1, 16, 32, 32))
    convs = [f for f in report.functions if f.schedule == "conv"]
    assert len(convs) == 2 and not report.fallbacks
    assert sorted(f.macs for f in convs) == [16 * 32 * 9 * 32 * 32, 32 * 32 * 9 * 32 * 32]
    # bias, ReLU and the residual add are fused into the second conv's function
    assert any("add" in f.kind and "relu" in f.kind for f in convs)
    assert report.layout["conv_packed"] == 2
    assert report.layout["to_nchw16c"] == 1 and report.layout["to_nchw"] == 1


def test_avx512_build_uses_zmm_fmas():
    """The packed conv built for Sapphire Rapids computes in 512-bit FMAs (checked in the assembly,
    so on hosts without AVX-512 too); the host's own build runs (`check` above) and, built for
    AVX2 only, holds no AVX-512 instruction."""
    mod, _ = optimize_for_cpu(graph(lambda bb, x: conv(bb, x, 16, 32), (1, 16, 16, 16)), SPR)
    asm = assembly(tvm.compile(mod, target=SPR))
    fmas = [line for line in asm.splitlines() if "vfmadd" in line]
    assert fmas and sum("zmm" in line for line in fmas) >= 0.9 * len(fmas), fmas[:20]
    haswell = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"})
    mod, _ = optimize_for_cpu(graph(lambda bb, x: conv(bb, x, 16, 32), (1, 16, 16, 16)), haswell)
    asm = assembly(tvm.compile(mod, target=haswell))
    assert "zmm" not in asm and any(op.startswith("vfmadd") for op in instructions(asm))


def test_batchnorm_lowering_form_and_strided_dilated_convs():
    def body(bb, x):
        y = conv(bb, x, 16, 32, stride=2, bias=False, relu=False)
        y = bb.emit(R.add(bb.emit(R.multiply(y, const(32, 1, 1, offset=1.0))), const(32, 1, 1)))
        y = bb.emit(R.nn.relu(y))
        y = conv(bb, y, 32, 32, dilation=2)
        return conv(bb, y, 32, 16, k=1, stride=2)

    report = check(graph(body, (1, 16, 32, 32)), (1, 16, 32, 32))
    assert schedules(report).get("conv") == 3 and not report.fallbacks


def test_grouped_depthwise_and_plain_input_stem():
    def body(bb, x):
        y = conv(bb, x, 3, 32, k=7, stride=2)  # RGB stem: NCHW in, NCHW16c out
        y = bb.emit(R.nn.max_pool2d(y, (3, 3), (2, 2), padding=(1, 1, 1, 1)))
        y = conv(bb, y, 32, 32, groups=2)
        y = conv(bb, y, 32, 32, groups=32)  # depthwise
        return conv(bb, y, 32, 32, k=1)

    report = check(graph(body, (1, 3, 40, 40)), (1, 3, 40, 40))
    assert report.layout["conv_plain_input"] == 1 and report.layout["conv_depthwise"] == 1
    assert schedules(report).get("depthwise") == 1 and schedules(report).get("conv") == 3
    assert not report.fallbacks


def test_classifier_channels_padded_to_a_block_and_odd_widths():
    def body(bb, x):
        y = conv(bb, x, 16, 16)
        logits = conv(bb, y, 16, 19, k=1, relu=False)
        return bb.emit(R.image.resize2d(logits, (26, 22), method="linear",
                                        coordinate_transformation_mode="align_corners"))

    report = check(graph(body, (1, 16, 13, 11)), (1, 16, 13, 11))
    assert report.layout["conv_out_padded"] == 1
    assert schedules(report).get("conv") == 2 and not report.fallbacks


def test_groups_without_whole_blocks_fall_back_to_topi_with_generic_schedule():
    def body(bb, x):
        return conv(bb, x, 32, 32, groups=4)  # 8 channels per group: stays NCHW, TOPI compute

    report = check(graph(body, (1, 32, 16, 16)), (1, 32, 16, 16))
    assert "conv_packed" not in report.layout
    (f,) = [f for f in report.functions if f.macs]
    assert f.schedule == "reduction" and f.macs == 32 * 8 * 9 * 16 * 16


@pytest.mark.parametrize("cin, cout, k, stride, pad, out_pad", [
    (16, 16, 4, 2, 1, 0),  # UNet-style 2x upsampling: 4 phases of 2x2 taps
    (16, 2, 2, 2, 0, 0),  # classifier deconv: 1x1 taps, output channels padded to a block
    (8, 16, 3, 2, 1, 1),  # phases with 1 and 2 taps, unpacked input
])
def test_conv_transpose_becomes_phase_convs(cin, cout, k, stride, pad, out_pad):
    def body(bb, x):
        y = bb.emit(R.nn.conv2d_transpose(x, const(cin, cout, k, k), strides=stride,
                                          padding=(pad,) * 4, output_padding=out_pad,
                                          kernel_layout="IOHW"))
        return bb.emit(R.nn.relu(bb.emit(R.add(y, const(1, cout, 1, 1)))))

    report = check(graph(body, (1, cin, 8, 8)), (1, cin, 8, 8))
    assert report.layout["conv_transpose_phases"] == stride * stride
    # the phases go straight into one interleave compute (no reshape / concat gather)
    assert report.layout["phase_interleave"] == 1
    assert not any("concatenate" in f.name or "reshape" in f.name for f in report.functions)
    convs = [f for f in report.functions if f.schedule == "conv"]
    assert sum(f.calls for f in convs) == stride * stride and not report.fallbacks
    assert report.macs() == cin * (cout + -cout % 16) * k * k * 8 * 8  # the useful MACs only


def test_grouped_conv_transpose_stays_topi():
    def body(bb, x):
        return bb.emit(R.nn.conv2d_transpose(x, const(16, 8, 4, 4), strides=2, padding=(1,) * 4,
                                             groups=2, kernel_layout="IOHW"))

    report = check(graph(body, (1, 16, 8, 8)), (1, 16, 8, 8))
    assert "conv_transpose_phases" not in report.layout and not report.fallbacks
    (f,) = report.functions
    assert f.schedule == "reduction" and f.macs == 8 * 16 * 8 * 8 * 4 * 4 * 4  # zero-dilated input


# --- the ops around the convolutions ---------------------------------------------------------------

def test_attention_concat_resize_pool_in_packed_layout():
    def body(bb, x, skip):
        feat = conv(bb, x, 32, 32)
        att = conv(bb, bb.emit(R.mean(feat, axis=[2, 3], keepdims=True)), 32, 32, k=1, relu=False)
        feat = bb.emit(R.multiply(feat, bb.emit(R.sigmoid(att))))
        gmax = bb.emit(R.max(feat, axis=[2, 3], keepdims=True))
        feat = bb.emit(R.add(feat, gmax))
        up = bb.emit(R.image.resize2d(feat, (32, 32), method="nearest_neighbor",
                                      coordinate_transformation_mode="asymmetric",
                                      rounding_method="floor"))
        cat = bb.emit(R.concat([up, skip], axis=1))
        half = bb.emit(R.image.resize2d(cat, (64, 64), method="linear",
                                        coordinate_transformation_mode="half_pixel"))
        pooled = bb.emit(R.nn.avg_pool2d(half, (3, 3), (2, 2), padding=(1, 1, 1, 1)))
        a, b = (bb.emit(relax.TupleGetItem(bb.emit(R.split(pooled, [32], axis=1)), k)) for k in (0, 1))
        y = bb.emit(R.subtract(a, b))
        y = bb.emit(R.nn.pad(y, [0, 0, 0, 0, 1, 1, 2, 2]))
        y = bb.emit(R.strided_slice(y, axes=[1, 2], begin=[16, 1], end=[32, 33]))
        return conv(bb, y, 16, 16)

    report = check(graph(body, (1, 32, 16, 16), (1, 32, 32, 32)), (1, 32, 16, 16), (1, 32, 32, 32))
    assert not report.fallbacks
    # the whole chain stays packed: one conversion in per input, one out
    assert report.layout["to_nchw16c"] == 2 and report.layout["to_nchw"] == 1
    assert "reduction" in schedules(report) and "injective" in schedules(report)


def test_softmax_argmax_head():
    def body(bb, x):
        logits = conv(bb, x, 16, 5, k=1, relu=False)
        prob = bb.emit(R.nn.softmax(logits, axis=1))
        return bb.emit(R.argmax(prob, axis=1))

    report = check(graph(body, (1, 16, 16, 32)), (1, 16, 16, 32))
    assert not report.fallbacks or all(f.schedule == "dlight" for f in report.fallbacks)


def test_prelu_as_lowered_and_leaky_clip():
    def body(bb, x):
        y = conv(bb, x, 16, 16, relu=False)
        neg = bb.emit(R.multiply(bb.emit(R.minimum(y, relax.const(np.float32(0)))), const(16, 1, 1)))
        y = bb.emit(R.add(bb.emit(R.nn.relu(y)), neg))
        y = bb.emit(R.nn.leakyrelu(y, 0.1))
        return bb.emit(R.clip(conv(bb, y, 16, 16, relu=False), 0.0, 6.0))

    report = check(graph(body, (1, 16, 16, 16)), (1, 16, 16, 16))
    assert schedules(report).get("conv") == 2


def test_tuple_output_with_packed_and_reshaped_members():
    def body(bb, x):
        y = conv(bb, x, 16, 32)
        z = conv(bb, y, 32, 32)
        return relax.Tuple([y, z, bb.emit(R.reshape(z, (1, 32, 64)))])

    mod = graph(body, (1, 16, 8, 8))
    x = RNG.standard_normal((1, 16, 8, 8)).astype(np.float32)
    opt, report = optimize_for_cpu(mod, TARGET)
    outs = [relax.VirtualMachine(tvm.compile(m, target=TARGET), tvm.cpu())["main"](tvm.runtime.tensor(x))
            for m in (mod, opt)]
    for ref, got in zip(*outs, strict=True):
        ref, got = ref.numpy(), got.numpy()
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert report.layout["to_nchw"] == 2  # y and z each leave the packed layout once


# --- pieces -------------------------------------------------------------------------------------

def test_pack_array_and_tiles():
    a = np.arange(2 * 32 * 3 * 5, dtype=np.float32).reshape(2, 32, 3, 5)
    p = pack_array(a)
    assert p.shape == (2, 2, 3, 5, 16) and p[1, 1, 2, 4, 3] == a[1, 19, 2, 4]
    assert (choose_tile(8, 64, False).oc_tile, choose_tile(8, 64, False).ow_tile) == (2, 8)
    assert (choose_tile(3, 14, False).oc_tile, choose_tile(3, 14, False).ow_tile) == (3, 7)
    assert (choose_tile(32, 2, False).oc_tile, choose_tile(32, 2, False).ow_tile) == (8, 2)
    assert (choose_tile(4, 11, False).oc_tile, choose_tile(4, 11, False).ow_tile) == (4, 1)
    assert (choose_tile(2, 32, True).oc_tile, choose_tile(2, 32, True).ow_tile) == (1, 16)


def test_pack_channels_small_conv_reads_nchw_and_pads_its_outputs():
    mod = graph(lambda bb, x: conv(bb, x, 3, 5, k=1), (1, 3, 8, 8))
    packed, counts = pack_channels(mod)
    assert counts == {"conv_plain_input": 1, "conv_out_padded": 1, "to_nchw": 1}
    text = packed.script()
    assert 'data_layout="NCHW", kernel_layout="OIHW16o", out_layout="NCHW16c"' in text
    assert "nchwc_to_nchw" in text and "R.layout_transform(" not in text


def test_bad_target_and_module_raise_vcc_error():
    mod = graph(lambda bb, x: bb.emit(R.nn.relu(x)), (1, 16, 4, 4))
    with pytest.raises(VccError, match="not a CPU"):
        optimize_for_cpu(mod, tvm.target.Target({"kind": "cuda"}))
    empty = tvm.IRModule({})
    with pytest.raises(VccError, match="no function 'main'"):
        optimize_for_cpu(empty, TARGET)


# --- the real lowering, end to end --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("subject", ["BiSeNetShaped", "EfficientShaped"])
def test_lowered_subject_matches_onnxruntime(subject, tmp_path):
    import subjects

    from vcc.frontends.onnx_import import load_model
    from vcc.frontends.torch_export import export_torch
    from vcc.passes import PassManager, default_fp32_pipeline
    from vcc.runtime.lower import lower_to_relax
    from vcc.runtime.reference import OrtSession

    path = tmp_path / f"{subject}.onnx"
    model = export_torch(subjects.seeded(getattr(subjects, subject)()), (1, 3, 64, 64), path)
    graph_ir = PassManager(default_fp32_pipeline()).run(load_model(path))
    x = RNG.standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = OrtSession(model).run(x)[0]
    opt, report = optimize_for_cpu(lower_to_relax(graph_ir), TARGET)
    out = run(opt, [x])
    assert np.abs(out - ref).max() <= 1e-4 * float(np.abs(ref).max()), report.table()
    assert report.macs(("conv", "depthwise")) >= 0.9 * report.macs(), report.table()


@pytest.mark.slow
def test_every_lowered_op_case_matches_onnxruntime():
    """The op cases of test_ops.py (ONNX -> IR -> lower_to_relax), through optimize_for_cpu."""
    import onnx
    from test_ops import CASES

    from vcc.frontends.onnx_import import import_onnx_model
    from vcc.frontends.onnx_load import simplify
    from vcc.passes import PassManager, default_fp32_pipeline
    from vcc.runtime.lower import lower_to_relax
    from vcc.runtime.reference import OrtSession

    bad = []
    for case, model in sorted(CASES.items()):
        x_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        x = RNG.standard_normal(x_shape).astype(np.float32)
        ref = OrtSession(model, optimize=False).run(x)[0]
        graph_ir = import_onnx_model(simplify(onnx.ModelProto.FromString(model.SerializeToString()), case),
                                     case)
        graph_ir = PassManager(default_fp32_pipeline()).run(graph_ir)
        opt, _ = optimize_for_cpu(lower_to_relax(graph_ir), TARGET)
        out = run(opt, [x])
        if out.shape != ref.shape or np.abs(out.astype(np.float64) - ref).max() > \
                1e-4 * max(1e-6, float(np.abs(ref).max())):
            bad.append(case)
    assert not bad, f"optimize_for_cpu changes the results of {bad}"
