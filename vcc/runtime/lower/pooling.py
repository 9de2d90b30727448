"""Lowerings of pooling and reductions: global / max / average pools, Reduce*, Softmax,
LogSoftmax, ArgMax."""

from __future__ import annotations

from .int8 import _dequantized_activation, _integer_result
from .table import R, lowering


@lowering("GlobalAveragePool")
def _gap(cx, n):
    return R.mean(cx.arg(n.inputs[0]), axis=[2, 3], keepdims=True)


@lowering("GlobalMaxPool")
def _gmp(cx, n):
    return R.max(cx.arg(n.inputs[0]), axis=[2, 3], keepdims=True)


@lowering("MaxPool")
def _maxpool(cx, n):
    a = n.attrs
    # max-pooling commutes with dequantization (a positive scale, zero point 0): pool the integers
    # and dequantize after, so the producer writes uint8 / int8 instead of float32 and the pool
    # reads a quarter of the bytes (its padding is the dtype's minimum: never the max of a window)
    p = cx.producers.get(n.inputs[0])
    q = _dequantized_activation(cx, p)
    x = q[0] if q is not None else cx.arg(n.inputs[0])
    y = R.nn.max_pool2d(x, pool_size=a["kernel_shape"], strides=a["strides"], padding=a["pads"],
                        dilation=a["dilations"], ceil_mode=bool(a["ceil_mode"]))
    if q is None:
        return y
    return _integer_result(cx, n, cx.bb.emit(y), q[1], cx.graph.values[p.inputs[0]].dtype)


@lowering("AveragePool")
def _avgpool(cx, n):
    a = n.attrs
    return R.nn.avg_pool2d(cx.arg(n.inputs[0]), pool_size=a["kernel_shape"], strides=a["strides"],
                           padding=a["pads"], ceil_mode=bool(a["ceil_mode"]),
                           count_include_pad=bool(a["count_include_pad"]))


_REDUCE = {"ReduceMean": R.mean, "ReduceMax": R.max, "ReduceMin": R.min, "ReduceSum": R.sum}


@lowering(*_REDUCE)
def _reduce(cx, n):
    if not n.attrs["axes"]:
        return cx.arg(n.inputs[0])
    return _REDUCE[n.op](cx.arg(n.inputs[0]), axis=n.attrs["axes"], keepdims=bool(n.attrs["keepdims"]))


@lowering("Softmax")
def _softmax(cx, n):
    return R.nn.softmax(cx.arg(n.inputs[0]), axis=n.attrs["axis"])


@lowering("LogSoftmax")
def _log_softmax(cx, n):
    return R.nn.log_softmax(cx.arg(n.inputs[0]), axis=n.attrs["axis"])


@lowering("ArgMax")
def _argmax(cx, n):
    return R.argmax(cx.arg(n.inputs[0]), axis=n.attrs["axis"], keepdims=bool(n.attrs["keepdims"]))
