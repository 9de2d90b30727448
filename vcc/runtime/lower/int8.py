"""The int8 path of the lowering: integer operands and the requantize machinery.

A compute node reading DequantizeLinear(q activation) and DequantizeLinear(int8 weight) runs on
the integers (`integer_operands`) and rescales its int32 accumulator once (`_rescale`); ReLU /
Clip and residual Adds of such values are tracked (`_clipped`, `_summed`) so that a
QuantizeLinear of one requantizes the integers with one multiplier each (`_requantize`). Pools
and concats of dequantized activations run on the integers too (`_dequantized_activation`,
`_integer_result`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from vcc.ir.graph import Node

from .table import LowerContext, R, Rescaled


@dataclass
class IntegerOperands:
    """A compute node reading DequantizeLinear(q activation) and DequantizeLinear(int8 weight):
    it runs on the integers and rescales the int32 accumulator once."""

    x: relax.Expr  # the uint8 / int8 activation
    w: np.ndarray  # int8 weights
    bias: np.ndarray | None  # int32
    scale: np.ndarray  # s_x * s_w, per output channel (or scalar)


def _dq_const(cx: LowerContext, name: str) -> tuple[np.ndarray, np.ndarray, int | None] | None:
    p = cx.producers.get(name)
    if p is None or p.op != "DequantizeLinear" or not cx.graph.is_const(p.inputs[0]):
        return None
    zp = cx.graph.constants.get(p.inputs[2]) if len(p.inputs) > 2 and p.inputs[2] else None
    if zp is not None and np.any(zp != 0):
        return None
    return cx.graph.constants[p.inputs[0]], cx.graph.constants[p.inputs[1]], p.attrs.get("axis")


def integer_operands(cx: LowerContext, n: Node) -> IntegerOperands | None:
    xq = _dequantized_activation(cx, cx.producers.get(n.inputs[0]))
    if xq is None:
        return None
    w = _dq_const(cx, n.inputs[1])
    if w is None:
        return None
    bias = None
    if len(n.inputs) > 2 and n.inputs[2]:
        b = _dq_const(cx, n.inputs[2])
        if b is None or b[0].dtype != np.int32:
            return None
        bias = b[0]
    scale = (np.float64(xq[1]) * w[1].astype(np.float64)).astype(np.float32)
    return IntegerOperands(xq[0], w[0], bias, scale)


def _rescale(cx: LowerContext, n: Node, acc: relax.Expr, io: IntegerOperands, shape: tuple) -> relax.Expr:
    if io.bias is not None:
        acc = cx.bb.emit(R.add(acc, relax.const(io.bias.reshape(shape))))
    scale = io.scale.reshape(shape) if io.scale.size > 1 else io.scale.reshape(())
    cx.rescaled[n.outputs[0]] = Rescaled([(acc, scale)])
    y = cx.bb.emit(R.astype(acc, "float32"))
    return R.multiply(y, relax.const(scale))


def _clipped(cx: LowerContext, n: Node, lo: float, hi: float) -> None:
    """Record that `n` (ReLU / Clip) clips a rescaled value to [lo, hi]."""
    r = cx.rescaled.get(n.inputs[0])
    if r is not None:
        cx.rescaled[n.outputs[0]] = Rescaled(r.terms, max(r.lo, lo), min(r.hi, hi))


def _summed(cx: LowerContext, n: Node) -> None:
    """Record that the Add `n` sums two unclipped rescaled values of one shape (at most three
    terms in all: a residual Add of a conv and a skip, not a long chain in one epilogue)."""
    a, b = (cx.rescaled.get(i) for i in n.inputs)
    if a is not None and b is not None and cx.shape(n.inputs[0]) == cx.shape(n.inputs[1]) \
            and not any(np.isfinite([a.lo, a.hi, b.lo, b.hi])) and len(a.terms) + len(b.terms) <= 3:
        cx.rescaled[n.outputs[0]] = Rescaled(a.terms + b.terms)


def _requantize(cx: LowerContext, r: Rescaled, s: np.float32, dtype: np.dtype) -> relax.Expr:
    """QuantizeLinear(clip(sum of float32(term) * scale, lo, hi), s, zero point 0) with one
    multiplier per term: clip(round(sum of float32(term) * (scale / s)), round(lo / s), round(hi / s))
    saturated to `dtype`. Rounding and clipping commute (both monotone), so this is the
    quantization of the float value except that (acc * scale) / s is rounded once instead of
    twice: where the two differ at a rounding tie the result is one step apart. It is how ONNX
    Runtime runs a QDQ conv too (its QLinearConv requantizes with one float multiplier, its
    QLinearAdd with one per input) and saves the epilogue a multiply, a clip and the divide."""
    info = np.iinfo(dtype)
    lo, hi = float(info.min), float(info.max)
    if np.isfinite(r.lo):
        lo = max(lo, float(np.round(np.float32(r.lo) / s)))
    if np.isfinite(r.hi):
        hi = min(hi, float(np.round(np.float32(r.hi) / s)))
    y = None
    for t, scale in r.terms:
        m = (scale.astype(np.float64) / np.float64(s)).astype(np.float32)
        part = cx.bb.emit(R.multiply(cx.bb.emit(R.astype(t, "float32")), relax.const(m)))
        y = part if y is None else cx.bb.emit(R.add(y, part))
    y = cx.bb.emit(R.clip(cx.bb.emit(R.round(y)), lo, max(lo, hi)))
    return R.astype(y, dtype.name)


def _integer_result(cx: LowerContext, n: Node, y: relax.Var, scale: np.ndarray, dtype: str) -> relax.Expr:
    """Dequantize the integer result `y` of `n`, remembering it for a QuantizeLinear to the same
    scale (which then costs nothing)."""
    cx.integer_form[n.outputs[0]] = (y, scale, dtype)
    return R.multiply(cx.bb.emit(R.astype(y, "float32")), relax.const(scale))


def _dequantized_activation(cx: LowerContext, p: Node | None) -> tuple[relax.Expr, np.ndarray] | None:
    """(integer tensor, scalar scale) when `p` is a per-tensor, zero-point-0 DequantizeLinear of an
    activation; None otherwise."""
    if p is None or p.op != "DequantizeLinear" or cx.graph.is_const(p.inputs[0]):
        return None
    scale = cx.graph.constants.get(p.inputs[1])
    zp = cx.graph.constants.get(p.inputs[2]) if len(p.inputs) > 2 and p.inputs[2] else None
    if scale is None or scale.size != 1 or (zp is not None and np.any(zp != 0)):
        return None
    return cx.arg(p.inputs[0]), scale.reshape(()).astype(np.float32)
