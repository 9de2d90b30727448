"""optimize_for_cpu on int8 convolutions: VNNI-packed, bit-identical to the default build.

QDQ conv chains shaped the way `vcc.runtime.lower` lowers them (conv2d u8/s8 x s8 -> s32, int32
bias, astype, per-channel scale, ReLU, round(divide) / clip / astype) are compiled with and
without optimize_for_cpu; the outputs must be equal bit for bit, and the report must say which
convs ran on the VNNI schedule and which fell back.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from vcc.runtime.schedules import optimize_for_cpu
from vcc.runtime.schedules.int8_conv import pack_int8_weight, signed_correction

R = relax.op
TARGET = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu",
                            "mcpu": "sapphirerapids", "num-cores": 2})
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


def run(mod: tvm.IRModule, x: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, target=TARGET), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def check(mod: tvm.IRModule, shape):
    x = RNG.uniform(-1.0, 3.0, shape).astype(np.float32)
    ref = run(mod, x)
    opt, report = optimize_for_cpu(mod, TARGET)
    got = run(opt, x)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    return report


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


def test_fallbacks_depthwise_and_odd_channels():
    def body(bb, x):
        q = quantize(bb, x, 0.02, "uint8")  # 3 input channels: no VNNI packing
        q = qconv(bb, q, 3, 32)
        q = qconv(bb, q, 32, 32, groups=32)  # depthwise int8: generic
        q = qconv(bb, q, 32, 24)  # 24 output channels: padded to 32, sliced after
        return dequantize(bb, q, 0.05)

    report = check(graph(body, (1, 3, 10, 16)), (1, 3, 10, 16))
    assert report.layout.get("conv_int8_plain") == 2, report.layout
    assert report.layout.get("conv_int8") == 1
    assert schedules(report).get("conv_int8") == 1, report.table()


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
