"""optimize_for_cpu on int8 convolutions: VNNI-packed, bit-identical to the default build.

QDQ conv chains shaped the way `vcc.runtime.lower` lowers them (conv2d u8/s8 x s8 -> s32, int32
bias, astype, per-channel scale, ReLU, round(divide) / clip / astype) are compiled with and
without optimize_for_cpu; the outputs must be equal bit for bit, and the report must say which
convs ran on the VNNI schedule and which fell back. On a host without AVX512-VNNI the VNNI build
is checked in its assembly and the host's own build is run instead (see `verify`).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hostcpu import HOST, SPR, assembly, instructions, runs_here
from tvm import relax

from vcc.runtime.schedules import optimize_for_cpu
from vcc.runtime.schedules.int8_conv import pack_int8_weight, signed_correction

R = relax.op
VNNI = SPR  # the target the VNNI schedules are built for (and run on, where this host has VNNI)
RNG = np.random.default_rng(0)


def quantize(bb, x, scale: float, dtype: str):
    lo, hi = (0.0, 255.0) if dtype == "uint8" else (-128.0, 127.0)
    y = bb.emit(R.round(R.divide(x, relax.const(np.float32(scale)))))
    y = bb.emit(R.clip(y, lo, hi))
    return bb.emit(R.astype(y, dtype))


def qconv(bb, xq, cin, cout, k=3, stride=1, dilation=1, groups=1, relu=True,
          out_dtype="uint8", out_scale=0.05):
    """int8 conv + bias + rescale (+ ReLU) + requantize, as lower.py emits it."""
    w = RNG.integers(-128, 128, (cout, cin // groups, k, k)).astype(np.int8)
    pad = dilation * (k // 2)
    acc = bb.emit(R.nn.conv2d(xq, relax.const(w), strides=stride, padding=(pad,) * 4,
                              dilation=dilation, groups=groups, out_dtype="int32"))
    return requantize(bb, acc, cout, relu, out_dtype, out_scale)


def requantize(bb, acc, cout, relu, out_dtype, out_scale):
    """The epilogue lower.py emits after an int32 accumulator: + int32 bias, astype, per-channel
    scale (+ ReLU), round(divide) / clip / astype (none when `out_dtype` is None)."""
    bias = RNG.integers(-5000, 5000, (1, cout, 1, 1)).astype(np.int32)
    acc = bb.emit(R.add(acc, relax.const(bias)))
    y = bb.emit(R.astype(acc, "float32"))
    scale = (RNG.uniform(0.5, 2.0, (1, cout, 1, 1)) * 1e-4).astype(np.float32)
    y = bb.emit(R.multiply(y, relax.const(scale)))
    if relu:
        y = bb.emit(R.nn.relu(y))
    if out_dtype is None:
        return y
    return quantize(bb, y, out_scale, out_dtype)


def dequantize(bb, q, scale: float):
    return bb.emit(R.multiply(bb.emit(R.astype(q, "float32")), relax.const(np.float32(scale))))


def graph(body, shape) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def run(mod: tvm.IRModule, x: np.ndarray, target: tvm.target.Target) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target=target), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def uses_vnni(report) -> bool:
    return "conv_int8" in schedules(report) or bool(report.layout.get("conv_int8_depthwise_vnni"))


def verify(mod: tvm.IRModule, x: np.ndarray):
    """optimize_for_cpu for the VNNI target; returns its report. Where this host has VNNI the
    scheduled module runs bit-identical to the default build; elsewhere its assembly must hold the
    VNNI dot products the report claims, and the host's own schedule (int8 convs generic) runs
    bit-identical to the host's default build."""
    opt, report = optimize_for_cpu(mod, VNNI)
    if runs_here(VNNI):
        pairs = [(mod, opt, VNNI)]
    else:
        if uses_vnni(report):
            ops = instructions(assembly(tvm.compile(opt, target=VNNI)))
            assert "vpdpbusd" in ops, (sorted(ops), report.table())
        pairs = [(mod, optimize_for_cpu(mod, HOST)[0], HOST)]
    for plain, scheduled, target in pairs:
        ref, got = run(plain, x, target), run(scheduled, x, target)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
    return report


def check(mod: tvm.IRModule, shape):
    return verify(mod, RNG.uniform(-1.0, 3.0, shape).astype(np.float32))


def schedules(report) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in report.functions:
        if f.macs:
            out[f.schedule] = out.get(f.schedule, 0) + f.calls
    return out


def test_pack_int8_weight_layout():
    w = RNG.integers(-128, 128, (32, 48, 3, 3)).astype(np.int8)
    p = pack_int8_weight(w)
    assert p.shape == (2, 3, 3, 3, 4, 16, 4)
    # (ocb, icb, kh, kw, ic4, oc16, lane) = w[ocb*16 + oc16, icb*16 + ic4*4 + lane, kh, kw]
    assert p[1, 2, 0, 1, 3, 5, 2] == w[16 + 5, 32 + 3 * 4 + 2, 0, 1]
    plain = pack_int8_weight(w[:, :6])  # 6 input channels: one block, padded to 8
    assert plain.shape == (2, 1, 3, 3, 2, 16, 4)
    assert plain[0, 0, 2, 2, 1, 7, 1] == w[7, 5, 2, 2] and plain[0, 0, 2, 2, 1, 7, 2] == 0
    corr = signed_correction(w)
    assert corr.shape == (1, 2, 1, 1, 16)
    assert corr[0, 1, 0, 0, 3] == 128 * int(w[19].astype(np.int64).sum())


def test_uint8_chain_bit_identical():
    def body(bb, x):
        q = quantize(bb, x, 0.02, "uint8")
        y = bb.emit(R.nn.conv2d(bb.emit(R.astype(q, "float32")), relax.const(
            RNG.standard_normal((32, 3, 3, 3)).astype(np.float32) * 0.1), padding=(1, 1, 1, 1)))
        q = quantize(bb, bb.emit(R.nn.relu(y)), 0.02, "uint8")
        q = qconv(bb, q, 32, 32)
        q = qconv(bb, q, 32, 64, k=1)
        q = qconv(bb, q, 64, 32, stride=2)
        return dequantize(bb, q, 0.05)

    report = check(graph(body, (1, 3, 16, 24)), (1, 3, 16, 24))
    assert schedules(report).get("conv_int8") == 3, report.table()


def test_int8_signed_activations_bit_identical():
    def body(bb, x):
        q = quantize(bb, x, 0.02, "int8")
        x32 = bb.emit(R.nn.conv2d(bb.emit(R.astype(q, "float32")), relax.const(
            RNG.standard_normal((16, 3, 1, 1)).astype(np.float32)), padding=(0, 0, 0, 0)))
        q = quantize(bb, x32, 0.03, "int8")
        q = qconv(bb, q, 16, 32, relu=False, out_dtype="int8", out_scale=0.08)
        q = qconv(bb, q, 32, 32, dilation=2, relu=False, out_dtype="int8", out_scale=0.08)
        return dequantize(bb, q, 0.08)

    report = check(graph(body, (1, 3, 12, 20)), (1, 3, 12, 20))
    assert schedules(report).get("conv_int8") == 2, report.table()
    assert report.layout.get("conv_int8_signed") == 2


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_plain_input_stem_depthwise_grouped_fallback_and_padded_outputs(dtype):
    def body(bb, x):
        q = quantize(bb, x, 0.02, dtype)  # 3 input channels: plain input, one 4-channel block
        q = qconv(bb, q, 3, 32, k=7, stride=2)
        q = qconv(bb, q, 32, 32, groups=32, stride=2)  # depthwise: packed, int32 vectors
        q = qconv(bb, q, 32, 32, groups=4)  # grouped int8: not packed, generic schedule
        q = qconv(bb, q, 32, 24)  # 24 output channels: padded to 32, sliced after
        q = qconv(bb, q, 24, 16, k=1)  # 24 input channels: plain input, one 24-channel block
        return dequantize(bb, q, 0.05)

    report = check(graph(body, (1, 3, 20, 32)), (1, 3, 20, 32))
    assert report.layout.get("conv_int8_plain") == 1, report.layout
    assert report.layout.get("conv_int8_plain_input") == 2, report.layout
    assert report.layout.get("conv_int8_depthwise") == 1, report.layout
    assert schedules(report).get("conv_int8") == 3, report.table()
    assert schedules(report).get("depthwise") == 1, report.table()
    rest = [f for f in report.functions if f.macs and f.schedule not in ("conv_int8", "depthwise")]
    assert len(rest) == 1 and rest[0].macs == 32 * 8 * 5 * 8 * 9, report.table()


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_unpadded_uint8_input_is_read_in_place(dtype):
    """A 1x1 conv on uint8 NCHW16c input reads it in place; int8 input needs the +128 copy."""
    def body(bb, x):
        q = quantize(bb, x, 0.02, dtype)
        x32 = bb.emit(R.nn.conv2d(bb.emit(R.astype(q, "float32")), relax.const(
            RNG.standard_normal((16, 3, 1, 1)).astype(np.float32)), padding=(0, 0, 0, 0)))
        q = quantize(bb, x32, 0.03, dtype)
        q = qconv(bb, q, 16, 32, k=1, relu=False, out_dtype="int8", out_scale=0.08)
        return dequantize(bb, q, 0.08)

    mod = graph(body, (1, 3, 6, 19))
    check(mod, (1, 3, 6, 19))
    opt, _ = optimize_for_cpu(mod, VNNI)
    copies = opt.script().count('T.sblock("qconv_pad")')
    assert copies == (0 if dtype == "uint8" else 1), copies


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_wide_input_not_a_multiple_of_16_is_zero_padded(dtype):
    """72 input channels (HRNet's third branch; 270 in its head): packed NCHW16c with the channels
    zero-padded to 80, still on the VNNI schedule and bit-identical."""
    def body(bb, x):
        q = quantize(bb, x, 0.02, dtype)
        q = qconv(bb, q, 3, 72, relu=dtype == "uint8", out_dtype=dtype)  # 72 outputs: padded, sliced
        q = qconv(bb, q, 72, 32, stride=2, relu=dtype == "uint8", out_dtype=dtype)
        return dequantize(bb, q, 0.05)

    report = check(graph(body, (1, 3, 12, 18)), (1, 3, 12, 18))
    assert report.layout.get("conv_int8_padded_input") == 1, report.layout
    assert schedules(report).get("conv_int8") == 2, report.table()


def qdepthwise(bb, xq, c, kh, kw, stride, dilation, out_dtype):
    """int8 depthwise conv (any kernel, "same"-style padding) + requantize."""
    w = RNG.integers(-128, 128, (c, 1, kh, kw)).astype(np.int8)
    ph, pw = dilation * (kh - 1), dilation * (kw - 1)
    acc = bb.emit(R.nn.conv2d(xq, relax.const(w), strides=stride,
                              padding=(ph // 2, pw // 2, ph - ph // 2, pw - pw // 2),
                              dilation=dilation, groups=c, out_dtype="int32"))
    return requantize(bb, acc, c, out_dtype == "uint8", out_dtype, 0.05)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("c,hw,k,stride,dilation", [
    ((32, (11, 19), (3, 3), 1, 1)), ((48, (12, 20), (3, 3), 2, 1)), ((16, (9, 9), (3, 3), 1, 2)),
    ((32, (10, 13), (2, 3), 1, 1)), ((16, (13, 7), (4, 4), 2, 1)), ((32, (8, 24), (3, 5), 1, 1)),
    ((16, (9, 11), (5, 5), 1, 1)), ((16, (8, 8), (3, 1), 1, 1)),
    ((64, (6, 10), (3, 3), 1, 1)), ((48, (5, 12), (3, 3), 2, 1))])  # tiles of 2 and 3 channel blocks
def test_int8_depthwise_vnni_bit_identical(dtype, c, hw, k, stride, dilation):
    """Depthwise int8 convs with up to 4 kernel rows (and more than one column) run on the VNNI
    depthwise (kernel rows packed into the 4 bytes of a lane, rows stage per output row);
    5 rows or 1 column keep the int32 depthwise. Both bit-identical to the default build, for
    uint8 and (+128-shifted, corrected) int8 data, strides, dilations, odd widths."""
    def body(bb, x):
        q = quantize(bb, x, 0.02, dtype)
        y = bb.emit(R.nn.conv2d(bb.emit(R.astype(q, "float32")), relax.const(
            RNG.standard_normal((c, 3, 1, 1)).astype(np.float32)), padding=(0, 0, 0, 0)))
        q = quantize(bb, y, 0.03, dtype)
        q = qdepthwise(bb, q, c, *k, stride, dilation, dtype)
        return dequantize(bb, q, 0.05)

    shape = (1, 3, *hw)
    report = check(graph(body, shape), shape)
    vnni = k[0] <= 4 and k[1] > 1
    assert report.layout.get("conv_int8_depthwise") == 1, report.layout
    assert report.layout.get("conv_int8_depthwise_vnni", 0) == int(vnni), report.layout
    assert schedules(report).get("depthwise") == 1, report.table()
    names = [f.name for f in report.functions if f.schedule == "depthwise"]
    assert ("qconv2d_nchwc_dw" in names[0]) == vnni, names
    # the MAC count includes the kernel rows the VNNI form packs into its lanes
    (dw,) = [f for f in report.functions if f.schedule == "depthwise"]
    oh, ow = ((n - 1) // stride + 1 for n in hw)
    assert dw.macs == c * oh * ow * k[0] * k[1], (dw.macs, report.table())


def test_dw_tile():
    from vcc.runtime.schedules.int8_schedule import DW_ACCUMULATORS, dw_tile

    assert dw_tile(12, 160) == (16, 1) and dw_tile(4, 10) == (10, 2) and dw_tile(3, 6) == (6, 3)
    assert dw_tile(60, 10) == (10, 2) and dw_tile(3, 13) == (13, 1)
    for ocb, ow in [(1, 7), (36, 20), (5, 3), (9, 40)]:
        cols, blocks = dw_tile(ocb, ow)
        assert ow % cols == 0 and ocb % blocks == 0 and cols * blocks <= max(DW_ACCUMULATORS, cols)


def test_pack_dw_weight_layout():
    from vcc.runtime.schedules.int8_conv import pack_dw_weight

    w = RNG.integers(-128, 128, (32, 1, 3, 5)).astype(np.int8)
    p = pack_dw_weight(w)
    assert p.shape == (2, 5, 16, 4)
    # (channel block, kernel column, channel, kernel row) = w[block*16 + channel, 0, row, column]
    assert p[1, 4, 3, 2] == w[19, 0, 2, 4] and p[0, 1, 7, 0] == w[7, 0, 0, 1]
    assert not p[..., 3].any()


@pytest.mark.parametrize("k,stride", [(3, 1), (1, 1), (3, 2)])
def test_int8_conv_float_output(k, stride):
    """An int8 conv whose result stays float (no requantize), odd width for the tile."""
    def body(bb, x):
        q = quantize(bb, x, 0.02, "uint8")
        q = bb.emit(R.nn.conv2d(bb.emit(R.astype(q, "float32")), relax.const(
            np.ones((16, 3, 1, 1), np.float32)), padding=(0, 0, 0, 0)))
        q = quantize(bb, q, 0.05, "uint8")
        return qconv(bb, q, 16, 16, k=k, stride=stride, out_dtype=None)

    report = check(graph(body, (1, 3, 9, 13)), (1, 3, 9, 13))
    assert schedules(report).get("conv_int8") == 1, report.table()


def _observed_quant(g, plan, x: np.ndarray) -> dict:
    """MinMax thresholds from one fp32 run (uint8 where a tensor is non-negative)."""
    import onnxruntime as ort

    from vcc.frontends.onnx_export import export_onnx
    from vcc.passes.quantize import TensorQuant

    names = [t for t in plan.tensors if t not in g.inputs]
    model = export_onnx(g, extra_outputs=names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(names, {g.inputs[0]: x})
    values = {g.inputs[0]: x, **dict(zip(names, outs, strict=True))}
    return {t: TensorQuant.from_threshold(float(np.abs(values[t]).max()), bool(values[t].min() >= 0))
            for t in plan.tensors}


@pytest.mark.slow
def test_insert_qdq_bisenet_shaped_bit_identical(tmp_path):
    """vcc's own QDQ rewrite of a small BiSeNet-shaped net (int8 input, uint8 ReLU outputs,
    residual adds, concat, global context, resize): scheduled == unscheduled, bit for bit."""
    from subjects import BiSeNetShaped, seeded

    from vcc.frontends.onnx_import import load_model
    from vcc.frontends.torch_export import export_torch
    from vcc.passes import PassManager, default_fp32_pipeline
    from vcc.passes.quantize import insert_qdq, plan_quantization
    from vcc.runtime.lower import lower_to_relax

    shape = (1, 3, 64, 64)
    path = tmp_path / "bisenet_shaped.onnx"
    export_torch(seeded(BiSeNetShaped(num_classes=5, width=16)), shape, path)
    g = PassManager(default_fp32_pipeline()).run(load_model(path))
    plan = plan_quantization(g)
    x = RNG.standard_normal(shape).astype(np.float32)
    qg = insert_qdq(g, plan, _observed_quant(g, plan, x))
    mod = lower_to_relax(qg)
    report = verify(mod, x)
    counts = schedules(report)
    assert counts.get("conv_int8", 0) >= 5, report.table()
    assert report.macs(("conv_int8",)) > 0.8 * report.macs(), report.table()


def test_no_vnni_target_keeps_int8_convs_generic():
    from vcc.runtime.schedules.vnni_intrin import has_vnni

    plain = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"})
    assert has_vnni(VNNI) and not has_vnni(plain)
    assert not has_vnni(tvm.target.Target("llvm"))

    def body(bb, x):
        return dequantize(bb, qconv(bb, quantize(bb, x, 0.02, "uint8"), 16, 16), 0.05)

    _, report = optimize_for_cpu(graph(body, (1, 16, 8, 8)), plain)
    assert report.layout.get("conv_int8_plain") == 1 and "conv_int8" not in report.layout
    assert "conv_int8" not in schedules(report), report.table()


def qconv_transpose(bb, xq, cin, cout, k, stride, pad, output_padding=0, relu=True,
                    out_dtype="uint8", out_scale=0.05):
    """int8 ConvTranspose (IOHW weight) + bias + rescale (+ ReLU) + requantize, as lower.py
    emits it."""
    w = RNG.integers(-128, 128, (cin, cout, k, k)).astype(np.int8)
    acc = bb.emit(R.nn.conv2d_transpose(xq, relax.const(w), strides=stride, padding=(pad,) * 4,
                                        output_padding=output_padding, kernel_layout="IOHW",
                                        out_dtype="int32"))
    return requantize(bb, acc, cout, relu, out_dtype, out_scale)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("k,stride,pad,output_padding", [(4, 2, 1, 0), (2, 2, 0, 0), (3, 2, 1, 1)])
def test_int8_conv_transpose_runs_as_one_vnni_conv(dtype, k, stride, pad, output_padding):
    """A stride-2 int8 transposed conv becomes one VNNI int8 conv over its interleaved output
    (the 4 phase weights stacked, zero-extended to the most taps; the phase picked by the output
    row and column), its requantize fused in; packed input (32 channels) and plain input (24),
    whole (16) and padded (20) output channels, phases with 1 and 2 taps; bit-identical to
    TOPI's conv2d_transpose."""
    signed = dtype == "int8"

    def body(bb, x):
        q = quantize(bb, x, 0.02, dtype)
        y = bb.emit(R.nn.conv2d(bb.emit(R.astype(q, "float32")), relax.const(
            RNG.standard_normal((32, 3, 1, 1)).astype(np.float32)), padding=(0, 0, 0, 0)))
        q = quantize(bb, y, 0.03, dtype)
        q = qconv_transpose(bb, q, 32, 16, k, stride, pad, output_padding, relu=not signed,
                            out_dtype=dtype)
        q = qconv(bb, q, 16, 24, k=1, relu=not signed, out_dtype=dtype)
        q = qconv_transpose(bb, q, 24, 20, k, stride, pad, output_padding, relu=not signed,
                            out_dtype=dtype)
        return dequantize(bb, q, 0.05)

    shape = (1, 3, 5, 7)
    report = check(graph(body, shape), shape)
    assert report.layout.get("conv_transpose_int8_phases") == 8, report.layout
    assert "conv_transpose_phases" not in report.layout, report.layout
    assert schedules(report).get("conv_int8") == 3, report.table()
    rest = [f for f in report.functions if f.macs and f.schedule != "conv_int8"]
    assert len(rest) == 1 and rest[0].macs == 32 * 3 * 5 * 7, report.table()  # the fp32 1x1
    names = [f.name for f in report.functions]
    transposed = [f for f in report.functions if "qconv2d_nchwc_t" in f.name]
    assert len(transposed) == 2 and all(f.schedule == "conv_int8" for f in transposed), names
    # no phase outputs to interleave: no reshape / concat gather, no interleave compute
    assert not any("concatenate" in n or "reshape" in n or "interleave" in n for n in names), names
    # the 16-channel one writes its requantized output directly
    assert sum("qconv2d_nchwc_t" in n and "multiply" in n for n in names) == 1, names
    # the MACs of each phase, its taps zero-extended to the longest phase's
    taps = max(len(range((r + pad) % stride, k, stride)) for r in range(stride)) ** 2
    up = [[(v - 1) * stride - 2 * pad + k + output_padding for v in shape[2:]]]
    up.append([(v - 1) * stride - 2 * pad + k + output_padding for v in up[0]])
    want = [16 * 32 * taps * up[0][0] * up[0][1], 32 * 24 * taps * up[1][0] * up[1][1]]
    assert sorted(f.macs for f in transposed) == sorted(want), [f.macs for f in transposed]


def test_insert_qdq_conv_transpose_bit_identical(tmp_path):
    """vcc's QDQ rewrite with quantize_conv_transpose=True lowers the ConvTranspose to an int8
    conv2d_transpose; optimize_for_cpu runs it as one VNNI conv over its phases, bit-identical."""
    import torch
    from subjects import seeded

    from vcc.frontends.onnx_import import load_model
    from vcc.frontends.torch_export import export_torch
    from vcc.passes import PassManager, default_fp32_pipeline
    from vcc.passes.quantize import insert_qdq, plan_quantization
    from vcc.runtime.lower import lower_to_relax

    class _Decoder(torch.nn.Module):
        """conv -> ConvTranspose (U-Net up-sampling) -> conv."""

        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1), torch.nn.ReLU())
            self.up = torch.nn.Sequential(torch.nn.ConvTranspose2d(16, 24, 4, 2, 1), torch.nn.ReLU())
            self.head = torch.nn.Conv2d(24, 4, 1)

        def forward(self, x):
            return self.head(self.up(self.stem(x)))

    shape = (1, 3, 32, 32)
    path = tmp_path / "decoder.onnx"
    export_torch(seeded(_Decoder()), shape, path)
    g = PassManager(default_fp32_pipeline()).run(load_model(path))
    plan = plan_quantization(g, quantize_conv_transpose=True)
    assert any(n.op == "ConvTranspose" and n.name in plan.nodes for n in g.nodes)
    x = RNG.standard_normal(shape).astype(np.float32)
    mod = lower_to_relax(insert_qdq(g, plan, _observed_quant(g, plan, x)))
    assert any("conv2d_transpose" in line and "int32" in line for line in mod.script().splitlines())
    report = verify(mod, x)
    assert report.layout.get("conv_transpose_int8_phases") == 4, report.layout
    assert schedules(report).get("conv_int8", 0) >= 2, report.table()
    assert [f.schedule for f in report.functions if "qconv2d_nchwc_t" in f.name] == ["conv_int8"], \
        report.table()
