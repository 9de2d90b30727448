"""Lowerings of the data-movement ops: Reshape, Expand, Transpose, Concat, Split, Slice, Pad,
Gather, Resize."""

from __future__ import annotations

import numpy as np
from tvm import relax

from .int8 import _dequantized_activation, _integer_result
from .table import R, lowering


def _pairs(pads: list[int]) -> list[int]:
    """ONNX [b1..bN, e1..eN] -> Relax [b1, e1, ..., bN, eN]."""
    n = len(pads) // 2
    return [p for k in range(n) for p in (pads[k], pads[n + k])]


@lowering("Reshape")
def _reshape(cx, n):
    return R.reshape(cx.arg(n.inputs[0]), tuple(n.attrs["shape"]))


@lowering("Expand")
def _expand(cx, n):
    return R.broadcast_to(cx.arg(n.inputs[0]), tuple(n.attrs["shape"]))


@lowering("Transpose")
def _transpose(cx, n):
    return R.permute_dims(cx.arg(n.inputs[0]), n.attrs["perm"])


@lowering("Concat")
def _concat(cx, n):
    # inputs dequantized with one scale (a shared-scale group: FFM / ASPP / PPM concats, U-Net
    # skips): concatenate the integers and dequantize once; bit-identical, a quarter of the bytes
    dqs = [cx.producers.get(i) for i in n.inputs]
    qs = [_dequantized_activation(cx, p) for p in dqs]
    if len(qs) > 1 and all(q is not None for q in qs) and \
            len({(q[1].item(), cx.graph.values[p.inputs[0]].dtype) for q, p in zip(qs, dqs, strict=True)}) == 1:
        y = cx.bb.emit(R.concat([q[0] for q in qs], axis=n.attrs["axis"]))
        return _integer_result(cx, n, y, qs[0][1], cx.graph.values[dqs[0].inputs[0]].dtype)
    return R.concat(cx.args(n), axis=n.attrs["axis"])


@lowering("Split")
def _split(cx, n):
    sizes = n.attrs["split"]
    indices = list(np.cumsum(sizes)[:-1].tolist())
    tup = cx.bb.emit(R.split(cx.arg(n.inputs[0]), indices, axis=n.attrs["axis"]))
    return [relax.TupleGetItem(tup, k) for k in range(len(sizes))]


@lowering("Slice")
def _slice(cx, n):
    a = n.attrs
    x = cx.arg(n.inputs[0])
    if all(s > 0 for s in a["steps"]):
        return R.strided_slice(x, axes=a["axes"], begin=a["starts"], end=a["ends"], strides=a["steps"],
                               assume_inbound=True)
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=True):
        idx = np.arange(s, e, st, dtype=np.int64)
        x = cx.bb.emit(R.take(x, relax.const(idx), axis=ax))
    return x


@lowering("Pad")
def _pad(cx, n):
    a = n.attrs
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[a["mode"]]
    return R.nn.pad(cx.arg(n.inputs[0]), _pairs(a["pads"]), pad_mode=mode, pad_value=float(a["value"]))


@lowering("Gather")
def _gather(cx, n):
    idx = np.asarray(n.attrs["indices"], dtype=np.int64).reshape(n.attrs["indices_shape"])
    return R.take(cx.arg(n.inputs[0]), relax.const(idx), axis=n.attrs["axis"])


@lowering("Resize")
def _resize(cx, n):
    a = n.attrs
    method = {"nearest": "nearest_neighbor", "linear": "linear", "cubic": "cubic"}[a["mode"]]
    return R.image.resize2d(cx.arg(n.inputs[0]), size=tuple(a["size"]), layout="NCHW", method=method,
                            coordinate_transformation_mode=a["coordinate_transformation_mode"],
                            rounding_method=a["nearest_mode"] if a["mode"] == "nearest" else "",
                            cubic_alpha=a["cubic_coeff_a"], cubic_exclude=a["exclude_outside"])
