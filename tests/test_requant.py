"""The requantization epilogue: division by a constant as a multiply + FMAs (bit-identical),
nearbyint vectorised, and QuantizeLinear of a conv's result folded into one multiplier (within
one quantization step of QuantizeLinear's definition)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from subjects import seeded
from tvm import relax, te

from vcc.frontends.onnx_import import load_model
from vcc.frontends.torch_export import export_torch
from vcc.passes import PassManager, default_fp32_pipeline
from vcc.passes.quantize import TensorQuant, insert_qdq, plan_quantization
from vcc.runtime import lower
from vcc.runtime.codegen import compile_relax, cpu_target
from vcc.runtime.schedules import optimize_for_cpu
from vcc.runtime.schedules.divide import exact_reciprocal_divide

R = relax.op
RNG = np.random.default_rng(0)


def _divide_kernel(divisor: np.float32):
    x = te.placeholder((1 << 20,), "float32", name="x")
    y = exact_reciprocal_divide(x, float(divisor))
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, y]))
    (i,) = sch.get_loops(sch.get_sblock("T_divide"))
    _, inner = sch.split(i, [None, 16])
    sch.vectorize(inner)
    return tvm.compile(sch.mod, target=cpu_target())


@pytest.mark.parametrize("divisor", [0.0023790016, 0.1, 1.0 / 3.0, 7.25e-5, 3.5, 0.125, 1.0e6, -0.3])
def test_exact_reciprocal_divide_is_the_division_bit_for_bit(divisor):
    divisor = np.float32(divisor)
    f = _divide_kernel(divisor)
    n = 1 << 20
    total = 0
    for spread in (1e-3, 1.0, 300.0, 1e6):
        x = (RNG.standard_normal(n) * spread * abs(float(divisor))).astype(np.float32)
        # a quarter exactly at rounding ties of the quotient (k + 0.5) * divisor, the hard cases
        ties = ((np.round(x[: n // 4] / divisor) + np.float32(0.5)) * divisor).astype(np.float32)
        x[: n // 4] = ties
        x[:8] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40, -1e-42, np.finfo(np.float32).max]
        y = tvm.runtime.tensor(np.empty(n, np.float32))
        with np.errstate(over="ignore"):
            ref = x / divisor
        f(tvm.runtime.tensor(x), y)
        got = y.numpy()
        same = (got.view(np.int32) == ref.view(np.int32)) | (np.isnan(got) & np.isnan(ref))
        # x below 2^-100 or a subnormal quotient: the remainder underflows, within one ulp
        tiny = (np.abs(x) < 2.0 ** -100) | (np.abs(ref) < np.finfo(np.float32).tiny)
        assert same[~tiny].all(), (divisor, x[~same & ~tiny][:5], got[~same & ~tiny][:5], ref[~same & ~tiny][:5])
        assert (np.abs(got[tiny].view(np.int32) - ref[tiny].view(np.int32)) <= 1).all()
        total += n
    assert total == 4 << 20


def test_divide_legalization_keeps_tensor_divisors():
    """A tensor divisor is TOPI's division; a scalar one the exact reciprocal form."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 4, 4), "float32"))
    d = relax.Var("d", relax.TensorType((1, 16, 4, 4), "float32"))
    with bb.function("main", [x, d]):
        with bb.dataflow():
            a = bb.emit(R.divide(x, d))
            out = bb.emit_output(R.divide(a, relax.const(np.float32(0.37))))
        bb.emit_func_output(out)
    opt, _ = optimize_for_cpu(bb.get(), cpu_target())
    xs = RNG.standard_normal((1, 16, 4, 4)).astype(np.float32)
    ds = RNG.uniform(0.5, 2.0, (1, 16, 4, 4)).astype(np.float32)
    vm = relax.VirtualMachine(tvm.compile(opt, target=cpu_target()), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(xs), tvm.runtime.tensor(ds)).numpy()
    np.testing.assert_array_equal(got, (xs / ds) / np.float32(0.37))


def test_nearbyint_is_vectorised():
    """R.round legalizes to tirx.nearbyint; codegen marks it vectorizable so a requantize epilogue
    stays 16-lane vectors (TVM 0.27 scalarized it: 16 scalar converts per vector)."""
    assert tvm.ir.Op.get("tirx.nearbyint").get_attr("TVectorizable")
    x = te.placeholder((64, 16), "int32", name="x")
    m = te.placeholder((16,), "float32", name="m")
    y = te.compute((64, 16), lambda i, j: te.max(te.min(tvm.tirx.nearbyint(
        x[i, j].astype("float32") * m[j]), 255.0), 0.0).astype("uint8"), name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, m, y]))
    _, j = sch.get_loops(sch.get_sblock("y"))
    sch.vectorize(j)
    ll = tvm.compile(sch.mod, target=cpu_target()).mod.inspect_source("ll")
    assert "<16 x float> @llvm.nearbyint.v16f32" in ll
    assert "call float @llvm.nearbyint.f32" not in ll


class _ConvActs(torch.nn.Module):
    """Convs followed by ReLU6, ReLU and a residual Add: the requantize shapes of a QDQ net."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.b = torch.nn.Conv2d(16, 32, 1)
        self.c = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.d = torch.nn.Conv2d(32, 16, 1)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.a(x))
        x = torch.relu(self.b(x))
        x = self.c(x) + x  # a residual Add: QuantizeLinear(conv + dequantized skip)
        return torch.nn.functional.relu6(self.d(x))


def _qdq(module: torch.nn.Module, shape, tmp_path):
    path = tmp_path / "m.onnx"
    export_torch(seeded(module), shape, path)
    g = PassManager(default_fp32_pipeline()).run(load_model(path))
    plan = plan_quantization(g, output_fp32=False, quantize_outputs=True)
    producers = g.producers()
    unsigned = {t: t in producers and producers[t].op in ("Relu", "Clip") for t in plan.tensors}
    quant = {t: TensorQuant.from_threshold(2.5 if t == g.inputs[0] else 6.0, unsigned[t]) for t in plan.tensors}
    return insert_qdq(g, plan, quant), quant


def _run(mod, x, schedule: bool) -> np.ndarray:
    target = cpu_target()
    if schedule:
        mod, _ = optimize_for_cpu(mod, target)
    vm = relax.VirtualMachine(compile_relax(mod, target), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def test_folded_requantize_drops_the_divide_and_schedules_keep_it_exact(tmp_path):
    qg, _ = _qdq(_ConvActs(), (1, 3, 20, 28), tmp_path)
    folded = lower.lower_to_relax(qg)
    exact = lower.lower_to_relax(qg, fold_requantize=False)
    quantizes = sum(n.op == "QuantizeLinear" for n in qg.nodes)
    # every QuantizeLinear after a conv is folded: the model input's is the only division left
    assert exact.script().count("R.divide(") == quantizes >= 4
    assert folded.script().count("R.divide(") == 1
    x = RNG.standard_normal((1, 3, 20, 28)).astype(np.float32)
    got = _run(folded, x, schedule=False)
    np.testing.assert_array_equal(_run(folded, x, schedule=True), got)
    ref = _run(exact, x, schedule=True)
    assert np.mean(got == ref) > 0.95


def test_folded_requantize_is_within_one_step(tmp_path):
    """conv + ReLU6 quantized: the folded integers, round(acc * (s_in s_w / s_out)) clipped to
    [0, round(6 / s_out)], are QuantizeLinear(clip(acc * s_in s_w, 0, 6)) or one step from it."""
    class One(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 32, 3, padding=1)

        def forward(self, x):  # the 1x1 max-pool reads the quantized ReLU6 and pools the integers
            return torch.nn.functional.max_pool2d(torch.nn.functional.relu6(self.a(x)), 1)

    qg, quant = _qdq(One(), (1, 3, 64, 64), tmp_path)
    x = RNG.standard_normal((1, 3, 64, 64)).astype(np.float32)
    got = _run(lower.lower_to_relax(qg), x, schedule=True)
    ref = _run(lower.lower_to_relax(qg, fold_requantize=False), x, schedule=True)
    step = quant[next(t for t in quant if t != qg.inputs[0])].scale
    diff = np.abs(got - ref) / step
    assert diff.max() <= 1.0 + 1e-4, diff.max()
    assert 0.0 <= got.min() and got.max() <= 6.0 + 1e-5
    assert np.mean(diff > 1e-4) < 0.01
