"""Lowerings of QuantizeLinear and DequantizeLinear.

A QuantizeLinear of a value the int8 path tracked requantizes its integers (`.int8`); otherwise
both follow the ONNX definitions.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from .int8 import _dequantized_activation, _requantize
from .table import R, Rescaled, lowering


def _per_axis(arr: np.ndarray, axis: int | None, rank: int) -> np.ndarray:
    if arr.size == 1:
        return arr.reshape(())
    shape = [1] * rank
    shape[axis if axis is not None else 1] = -1
    return arr.reshape(shape)


@lowering("QuantizeLinear")
def _quantize(cx, n):
    rank = len(cx.shape(n.inputs[0]))
    scale = _per_axis(cx.graph.constants[n.inputs[1]], n.attrs.get("axis"), rank)
    zp = cx.graph.constants[n.inputs[2]]
    same = cx.integer_form.get(n.inputs[0])
    if same is not None and scale.size == 1 and np.float32(scale.reshape(())) == same[1] \
            and not np.any(zp != 0) and zp.dtype.name == same[2]:
        return same[0]  # round(q * s / s) == q: requantizing to the same scale is the identity
    r = cx.rescaled.get(n.inputs[0]) if cx.fold_requantize else None
    if r is not None and scale.size == 1 and not np.any(zp != 0):
        return _requantize(cx, r, np.float32(scale.reshape(())), zp.dtype)
    info = np.iinfo(zp.dtype)
    y = cx.bb.emit(R.round(R.divide(cx.arg(n.inputs[0]), relax.const(scale.astype(np.float32)))))
    if np.any(zp != 0):
        y = cx.bb.emit(R.add(y, relax.const(_per_axis(zp, n.attrs.get("axis"), rank).astype(np.float32))))
    y = cx.bb.emit(R.clip(y, float(info.min), float(info.max)))
    return R.astype(y, zp.dtype.name)


@lowering("DequantizeLinear")
def _dequantize(cx, n):
    q = _dequantized_activation(cx, n)
    if q is not None:
        cx.rescaled[n.outputs[0]] = Rescaled([q])
    rank = len(cx.shape(n.inputs[0]))
    axis = n.attrs.get("axis")
    scale = _per_axis(cx.graph.constants[n.inputs[1]], axis, rank).astype(np.float32)
    y = cx.bb.emit(R.astype(cx.arg(n.inputs[0]), "float32"))
    if len(n.inputs) > 2 and n.inputs[2]:
        zp = cx.graph.constants[n.inputs[2]]
        if np.any(zp != 0):
            y = cx.bb.emit(R.subtract(y, relax.const(_per_axis(zp, axis, rank).astype(np.float32))))
    return R.multiply(y, relax.const(scale))
