"""The machinery of channel packing (pack.py): layouts, the Packer, and the registry of rules.

`Value` is a rewritten expression with its layout (PLAIN, PACKED, or a tuple of them); the
`Packer` rebuilds "main" binding by binding and converts a value between NCHW and NCHW16c only
where a consumer needs the other layout (`plain` / `packed`, at most once per value and
direction), through the injective TE transforms here (`nchw_to_nchwc`, `nchwc_to_nchw`).
`@rule(op, ...)` files a rewrite for an op in `RULES`; the rules live in pack_conv.py and
pack_ops.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te, tirx

from .conv_compute import BLOCK

TO_NCHWC = "nchw_to_nchwc"
TO_NCHW = "nchwc_to_nchw"
PLAIN = "plain"
PACKED = "packed"
Layout = str | tuple  # PLAIN, PACKED, or a tuple of layouts for a tuple value


@dataclass
class Value:
    expr: relax.Expr  # in the new function
    layout: Layout


def _is_const(e) -> bool:
    return isinstance(e, tvm.ir.expr.Constant)


def _const_np(e) -> np.ndarray:
    return e.value.numpy()


def static_shape(e) -> tuple[int, ...] | None:
    ty = e.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return tuple(int(v) for v in ty.shape.values)
    except (TypeError, AttributeError):
        return None


def _dtype(e) -> str:
    return str(e.ty.dtype)


def packable(shape: tuple[int, ...] | None) -> bool:
    return shape is not None and len(shape) == 4 and shape[1] % BLOCK == 0 and shape[1] > 0


def pack_array(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C/16, H, W, 16)."""
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, c // BLOCK, BLOCK, h, w).transpose(0, 1, 3, 4, 2))


def nchw_to_nchwc(x: te.Tensor) -> te.Tensor:
    """The packing transform, iterating over its output: vector stores, gathered loads."""
    n, c, h, w = (int(v) for v in x.shape)
    return te.compute((n, c // BLOCK, h, w, BLOCK),
                      lambda b, cb, y, z, ci: x[b, cb * BLOCK + ci, y, z], name=TO_NCHWC)


def nchw_to_nchwc_padded(x: te.Tensor, channels: int) -> te.Tensor:
    """Packing with the channels zero-padded up to `channels` (a multiple of 16)."""
    n, c, h, w = (int(v) for v in x.shape)
    zero = tirx.const(0, x.dtype)
    return te.compute((n, channels // BLOCK, h, w, BLOCK),
                      lambda b, cb, y, z, ci: tirx.if_then_else(
                          cb * BLOCK + ci < c, x[b, tirx.min(cb * BLOCK + ci, c - 1), y, z], zero),
                      name=TO_NCHWC)


def nchwc_to_nchw(x: te.Tensor, channels: int) -> te.Tensor:
    """Unpacking, keeping the first `channels` channels (the rest pads a conv's output)."""
    n, _, h, w, _ = (int(v) for v in x.shape)
    return te.compute((n, channels, h, w),
                      lambda b, c, y, z: x[b, c // BLOCK, y, z, c % BLOCK], name=TO_NCHW)


class Packer:
    """Rebuilds "main" binding by binding; `env` maps old vars to their new Value."""

    def __init__(self, bb: relax.BlockBuilder, int8_vnni: bool = True):
        self.bb = bb
        self.int8_vnni = int8_vnni  # pack int8 convs for the VNNI dot product
        self.env: dict[relax.Var, Value] = {}
        self._plain: dict[relax.Var, relax.Expr] = {}
        self._packed: dict[relax.Var, relax.Expr] = {}
        self.counts: dict[str, int] = {}
        self.tuple_source: dict[relax.Var, relax.Tuple] = {}  # vars bound to a tuple literal

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def unpack(self, x: relax.Expr, channels: int | None = None) -> relax.Var:
        """Emit NCHW16c -> NCHW as an injective TE function (relax.layout_transform is opaque
        to FuseOps and iterates over its input, which makes its stores scatter)."""
        if not isinstance(x, relax.Var):
            x = self.bb.emit(x)
        channels = channels if channels is not None else static_shape(x)[1] * BLOCK
        self.count("to_nchw")
        return self.bb.emit(self.bb.call_te(nchwc_to_nchw, x, channels, primfunc_name_hint=TO_NCHW))

    def pack(self, x: relax.Expr) -> relax.Var:
        if not isinstance(x, relax.Var):
            x = self.bb.emit(x)
        self.count("to_nchw16c")
        return self.bb.emit(self.bb.call_te(nchw_to_nchwc, x, primfunc_name_hint=TO_NCHWC))

    # --- values -------------------------------------------------------------------------------
    def value(self, old: relax.Expr) -> Value:
        if isinstance(old, relax.Var):
            return self.env[old]
        if isinstance(old, relax.Tuple):
            vals = [self.value(f) for f in old.fields]
            return Value(relax.Tuple([v.expr for v in vals]), tuple(v.layout for v in vals))
        if isinstance(old, relax.TupleGetItem):
            tup = self.value(old.tuple_value)
            layout = tup.layout[old.index] if isinstance(tup.layout, tuple) else PLAIN
            return Value(relax.TupleGetItem(tup.expr, old.index), layout)
        return Value(old, PLAIN)

    def plain(self, old: relax.Expr) -> relax.Expr:
        """The new expression of `old` in its original layout."""
        val = self.value(old)
        if val.layout == PLAIN:
            return val.expr
        if isinstance(val.layout, tuple):
            return self._plain_tuple(old, val)
        if isinstance(old, relax.Var) and old in self._plain:
            return self._plain[old]
        out = self.unpack(val.expr)
        if isinstance(old, relax.Var):
            self._plain[old] = out
        return out

    def _plain_tuple(self, old: relax.Expr, val: Value) -> relax.Expr:
        if isinstance(old, relax.Var) and old in self.tuple_source:
            old = self.tuple_source[old]
        if isinstance(old, relax.Tuple):
            return relax.Tuple([self.plain(f) for f in old.fields])
        items = []
        for k, lay in enumerate(val.layout):
            item = relax.TupleGetItem(val.expr, k)
            if lay == PACKED:
                item = self.unpack(self.bb.emit(item))
            items.append(item)
        return relax.Tuple(items)

    def packed(self, old: relax.Expr) -> relax.Expr:
        """The new expression of `old` (a 4-D value with C % 16 == 0) in NCHW16c."""
        if _is_const(old):
            return relax.const(pack_array(_const_np(old)))
        val = self.value(old)
        if val.layout == PACKED:
            return val.expr
        if isinstance(old, relax.Var) and old in self._packed:
            return self._packed[old]
        out = self.pack(val.expr)
        if isinstance(old, relax.Var):
            self._packed[old] = out
        return out

    def is_packed(self, old: relax.Expr) -> bool:
        return not _is_const(old) and self.value(old).layout == PACKED

    # --- the default for any op -----------------------------------------------------------------
    def keep_plain(self, call: relax.Call) -> Value:
        args = [self.plain(a) if isinstance(a, relax.Var | relax.Tuple | relax.TupleGetItem)
                else a for a in call.args]
        new = relax.Call(call.op, args, call.attrs, call.ty_args)
        return Value(new, _plain_layout_of(call))


def _plain_layout_of(call: relax.Call) -> Layout:
    ty = call.ty
    if isinstance(ty, relax.TupleType):
        return tuple(PLAIN for _ in ty.fields)
    return PLAIN


Rule = Callable[[Packer, relax.Call], Value]
RULES: dict[str, Rule] = {}


def rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in ops:
            RULES[op] = fn
        return fn

    return deco
