"""Lowerings of the elementwise ops: unary and binary arithmetic, activations, Clip, Cast."""

from __future__ import annotations

import numpy as np

from .int8 import _clipped, _summed
from .table import R, lowering

_UNARY = {"Relu": R.nn.relu, "Sigmoid": R.sigmoid, "Tanh": R.tanh, "Exp": R.exp, "Abs": R.abs,
          "Neg": R.negative, "Sqrt": R.sqrt, "Erf": R.erf, "Floor": R.floor, "Ceil": R.ceil,
          "Log": R.log, "Softplus": R.nn.softplus}
_BINARY = {"Add": R.add, "Sub": R.subtract, "Mul": R.multiply, "Div": R.divide,
           "Max": R.maximum, "Min": R.minimum, "Pow": R.power}


@lowering(*_UNARY)
def _unary(cx, n):
    if n.op == "Relu":
        _clipped(cx, n, 0.0, np.inf)
    return _UNARY[n.op](cx.arg(n.inputs[0]))


@lowering(*_BINARY)
def _binary(cx, n):
    if n.op == "Add":
        _summed(cx, n)
    return _BINARY[n.op](cx.arg(n.inputs[0]), cx.arg(n.inputs[1]))


@lowering("Reciprocal")
def _reciprocal(cx, n):
    return R.divide(cx.fconst(1.0), cx.arg(n.inputs[0]))


@lowering("Identity", "Dropout")
def _identity(cx, n):
    return cx.arg(n.inputs[0])


@lowering("Clip")
def _clip(cx, n):
    x = cx.arg(n.inputs[0])
    lo, hi = n.attrs["min"], n.attrs["max"]
    _clipped(cx, n, float(lo), float(hi))
    if np.isfinite(lo) and np.isfinite(hi):
        return R.clip(x, float(lo), float(hi))
    if np.isfinite(lo):
        x = cx.bb.emit(R.maximum(x, cx.fconst(lo)))
    if np.isfinite(hi):
        x = R.minimum(x, cx.fconst(hi))
    return x


@lowering("LeakyRelu")
def _leaky(cx, n):
    return R.nn.leakyrelu(cx.arg(n.inputs[0]), float(n.attrs["alpha"]))


@lowering("PRelu")
def _prelu(cx, n):
    x, slope = cx.arg(n.inputs[0]), cx.arg(n.inputs[1])
    neg = cx.bb.emit(R.multiply(R.minimum(x, cx.fconst(0.0)), slope))
    return R.add(R.nn.relu(x), neg)


@lowering("Elu")
def _elu(cx, n):
    x = cx.arg(n.inputs[0])
    neg = cx.bb.emit(R.multiply(cx.fconst(n.attrs["alpha"]),
                                R.subtract(R.exp(R.minimum(x, cx.fconst(0.0))), cx.fconst(1.0))))
    return R.add(R.nn.relu(x), neg)


def _hard_sigmoid(cx, x, alpha: float, beta: float):
    lin = cx.bb.emit(R.add(R.multiply(x, cx.fconst(alpha)), cx.fconst(beta)))
    return R.clip(lin, 0.0, 1.0)


@lowering("HardSigmoid")
def _hardsigmoid(cx, n):
    return _hard_sigmoid(cx, cx.arg(n.inputs[0]), n.attrs["alpha"], n.attrs["beta"])


@lowering("HardSwish")
def _hardswish(cx, n):
    x = cx.arg(n.inputs[0])
    return R.multiply(x, cx.bb.emit(_hard_sigmoid(cx, x, 1.0 / 6.0, 0.5)))


@lowering("Cast")
def _cast(cx, n):
    return R.astype(cx.arg(n.inputs[0]), n.attrs["to"])
