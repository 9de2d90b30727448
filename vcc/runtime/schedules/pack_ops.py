"""Packing rules for the ops the packed layout flows through, besides the convolutions.

Elementwise ops (unary, astype, binary with broadcasting), data movement (concat / split /
strided_slice on whole 16-blocks, pad), resize, pooling and spatial reductions (global
mean / max / sum / min): each takes its input in NCHW16c when it already is, else stays plain.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .conv_compute import BLOCK
from .pack_core import (
    PACKED,
    Packer,
    Value,
    _const_np,
    _is_const,
    pack_array,
    packable,
    rule,
    static_shape,
)

R = relax.op

# --- elementwise -------------------------------------------------------------------------------

UNARY = ("relax.nn.relu", "relax.sigmoid", "relax.tanh", "relax.exp", "relax.clip",
         "relax.nn.leakyrelu", "relax.negative", "relax.abs", "relax.sqrt", "relax.rsqrt",
         "relax.erf", "relax.floor", "relax.ceil", "relax.log", "relax.nn.softplus",
         "relax.nn.gelu", "relax.nn.silu", "relax.square", "relax.round", "relax.sign")
BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum",
          "relax.minimum", "relax.power")


@rule("relax.astype")
def _astype(p: Packer, call: relax.Call) -> Value:
    x = call.args[0]
    if not p.is_packed(x):
        return p.keep_plain(call)
    return Value(R.astype(p.packed(x), str(call.attrs.dtype)), PACKED)


@rule(*UNARY)
def _unary(p: Packer, call: relax.Call) -> Value:
    x = call.args[0]
    if not p.is_packed(x):
        return p.keep_plain(call)
    return Value(relax.Call(call.op, [p.packed(x), *call.args[1:]], call.attrs, call.ty_args), PACKED)


def _broadcast_operand(p: Packer, e: relax.Expr, channels: int) -> relax.Expr | None:
    """`e` as an operand of a packed (N, C/16, H, W, 16) op, or None if it cannot be one."""
    shape = static_shape(e)
    if shape is None or len(shape) > 4:
        return None
    if int(np.prod(shape)) == 1 and _is_const(e):
        return relax.const(_const_np(e).reshape(()))
    full = (1,) * (4 - len(shape)) + shape
    if full[1] == channels:
        if _is_const(e):
            return relax.const(pack_array(_const_np(e).reshape(full)))
        return p.packed(e) if len(shape) == 4 else None
    if full[1] == 1:
        five = (full[0], 1, full[2], full[3], 1)
        if _is_const(e):
            return relax.const(_const_np(e).reshape(five))
        return p.bb.emit(R.reshape(p.plain(e), five))
    return None


@rule(*BINARY)
def _binary(p: Packer, call: relax.Call) -> Value:
    out = static_shape(call)
    if not packable(out) or not any(p.is_packed(a) for a in call.args):
        return p.keep_plain(call)
    args = [_broadcast_operand(p, a, out[1]) for a in call.args]
    if any(a is None for a in args):
        return p.keep_plain(call)
    return Value(relax.Call(call.op, args, call.attrs, call.ty_args), PACKED)


# --- data movement -----------------------------------------------------------------------------

def _axis(axis: int, ndim: int = 4) -> int:
    return axis + ndim if axis < 0 else axis


@rule("relax.concat")
def _concat(p: Packer, call: relax.Call) -> Value:
    parts = list(call.args[0].fields) if isinstance(call.args[0], relax.Tuple) else None
    axis = _axis(int(call.attrs.axis))
    if parts is None or not all(packable(static_shape(t)) for t in parts) \
            or not any(p.is_packed(t) for t in parts) or axis not in (1, 2, 3):
        return p.keep_plain(call)
    return Value(R.concat([p.packed(t) for t in parts], axis=axis), PACKED)


@rule("relax.split")
def _split(p: Packer, call: relax.Call) -> Value:
    x = call.args[0]
    axis = _axis(int(call.attrs.axis))
    shape = static_shape(x)
    ios = call.attrs.indices_or_sections
    if not p.is_packed(x) or axis not in (1, 2, 3):
        return p.keep_plain(call)
    if isinstance(ios, tvm.tirx.IntImm | int):
        sections = int(ios)
        n_out = sections
        if axis == 1 and (shape[1] // sections) % BLOCK:
            return p.keep_plain(call)
        new = R.split(p.packed(x), sections, axis=axis)
    else:
        idx = [int(i) for i in ios]
        n_out = len(idx) + 1
        if axis == 1:
            if any(i % BLOCK for i in idx):
                return p.keep_plain(call)
            idx = [i // BLOCK for i in idx]
        new = R.split(p.packed(x), idx, axis=axis)
    return Value(new, tuple(PACKED for _ in range(n_out)))


def _ints(e) -> list[int]:
    return [int(f.value) if hasattr(f, "value") else int(f) for f in e.fields]


@rule("relax.strided_slice")
def _strided_slice(p: Packer, call: relax.Call) -> Value:
    x = call.args[0]
    shape = static_shape(x)
    if not p.is_packed(x) or len(call.args) < 4 or not all(isinstance(a, relax.Tuple) for a in call.args[1:]):
        return p.keep_plain(call)
    axes = [_axis(v) for v in _ints(call.args[1])]
    begin, end = _ints(call.args[2]), _ints(call.args[3])
    strides = _ints(call.args[4]) if len(call.args) > 4 else [1] * len(axes)
    for k, ax in enumerate(axes):
        if ax != 1:
            continue
        b, e = begin[k] % shape[1] if begin[k] < 0 else begin[k], min(end[k], shape[1])
        if strides[k] != 1 or b % BLOCK or e % BLOCK:
            return p.keep_plain(call)
        begin[k], end[k] = b // BLOCK, e // BLOCK
    return Value(R.strided_slice(p.packed(x), axes=axes, begin=begin, end=end, strides=strides,
                                 assume_inbound=bool(call.attrs.assume_inbound)), PACKED)


@rule("relax.nn.pad")
def _pad(p: Packer, call: relax.Call) -> Value:
    x = call.args[0]
    pw = [int(v) for v in call.attrs.pad_width]
    if not p.is_packed(x) or len(pw) != 8 or any(pw[:4]):
        return p.keep_plain(call)
    return Value(R.nn.pad(p.packed(x), pw + [0, 0], pad_mode=str(call.attrs.pad_mode),
                          pad_value=float(call.attrs.pad_value)), PACKED)


# --- resize, pooling, reductions ---------------------------------------------------------------

@rule("relax.image.resize2d")
def _resize2d(p: Packer, call: relax.Call) -> Value:
    a = call.attrs
    x = call.args[0]
    if not p.is_packed(x) or str(a.layout) != "NCHW" or not isinstance(call.args[1], relax.ShapeExpr):
        return p.keep_plain(call)
    new = R.image.resize2d(
        p.packed(x), call.args[1], roi=[float(v) for v in a.roi], layout="NCHW16c",
        method=str(a.method), coordinate_transformation_mode=str(a.coordinate_transformation_mode),
        rounding_method=str(a.rounding_method), cubic_alpha=float(a.cubic_alpha),
        cubic_exclude=int(a.cubic_exclude), extrapolation_value=float(a.extrapolation_value),
        out_dtype=a.out_dtype)
    return Value(new, PACKED)


@rule("relax.nn.max_pool2d", "relax.nn.avg_pool2d")
def _pool2d(p: Packer, call: relax.Call) -> Value:
    a = call.attrs
    x = call.args[0]
    if not p.is_packed(x) or str(a.layout) != "NCHW" or str(a.out_layout) != "NCHW":
        return p.keep_plain(call)
    make = R.nn.max_pool2d if call.op.name == "relax.nn.max_pool2d" else R.nn.avg_pool2d
    new = make(p.packed(x), pool_size=[int(v) for v in a.pool_size],
               strides=[int(v) for v in a.strides], padding=[int(v) for v in a.padding],
               dilation=[int(v) for v in a.dilation], ceil_mode=bool(a.ceil_mode),
               count_include_pad=bool(a.count_include_pad), layout="NCHW16c", out_layout="NCHW16c")
    return Value(new, PACKED)


@rule("relax.mean", "relax.max", "relax.sum", "relax.min")
def _spatial_reduce(p: Packer, call: relax.Call) -> Value:
    x = call.args[0]
    a = call.attrs
    axes = sorted(_axis(int(v)) for v in a.axis) if a.axis is not None else None
    if not p.is_packed(x) or axes != [2, 3] or not bool(a.keepdims):
        return p.keep_plain(call)
    return Value(relax.Call(call.op, [p.packed(x)], a, call.ty_args), PACKED)
