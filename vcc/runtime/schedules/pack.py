"""Channel packing: NCHW -> NCHW16c for the whole graph, decided once.

`pack_channels(mod)` rewrites "main" so that every convolution whose channels allow it runs in a
packed form (see conv_compute.py) with its weights re-laid out in numpy (no layout op left to
fold), and the packed layout flows through the ops that can take it (elementwise with
broadcasting, resize, pooling, concat / split / slice on whole 16-blocks, global mean/max, pad).
A value is converted (nchw_to_nchwc / nchwc_to_nchw) only where a consumer needs the other layout, at most
once per value and direction; the function's inputs and outputs stay NCHW.

One rule per op in `RULES`; an op without a rule gets plain (NCHW) inputs and is left as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, te, tirx

from vcc.errors import VccError

from .conv_compute import BLOCK
from .int8_conv import (
    DW_TAPS,
    linear_offsets,
    pack_dw_weight,
    pack_int8_weight,
    qconv2d_depthwise,
    qconv2d_depthwise_vnni,
    qconv2d_packed,
    qconv2d_packed_signed,
    qconv2d_transpose_packed,
    signed_correction,
)

R = relax.op
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


# --- convolution -------------------------------------------------------------------------------

def _conv_plan(cin: int, cout: int, groups: int) -> str | None:
    if groups == 1:
        return "packed" if cin % BLOCK == 0 else "plain_input"
    if groups == cin == cout and cin % BLOCK == 0:
        return "depthwise"
    if (cin // groups) % BLOCK == 0 and (cout // groups) % BLOCK == 0:
        return "packed"
    return None


def _pack_weight(w: np.ndarray, form: str) -> np.ndarray:
    o, i, kh, kw = w.shape
    if form == "packed":  # OIHW -> OIHW16i16o
        return np.ascontiguousarray(
            w.reshape(o // BLOCK, BLOCK, i // BLOCK, BLOCK, kh, kw).transpose(0, 2, 4, 5, 3, 1))
    # OIHW -> OIHW16o (plain input, depthwise)
    return np.ascontiguousarray(w.reshape(o // BLOCK, BLOCK, i, kh, kw).transpose(0, 2, 3, 4, 1))


KERNEL_LAYOUT = {"packed": "OIHW16i16o", "plain_input": "OIHW16o", "depthwise": "OIHW16o"}


def _int8_conv(p: Packer, call: relax.Call) -> Value | None:
    """u8/s8 x s8 -> s32 conv: groups 1 as a VNNI-packed conv, on NCHW16c input when its
    channels are a multiple of 16, else on the plain input (at most 64 channels: one block), else
    on an NCHW16c copy zero-padded to whole blocks (HRNet's 72- and 270-channel inputs);
    depthwise (channels % 16 == 0) packed in int32 vectors; None for anything else (grouped):
    the caller keeps it plain (generic schedule)."""
    a = call.attrs
    data, weight = call.args
    dshape = static_shape(data)
    signed = _dtype(data) == "int8"
    w = _const_np(weight)
    if w.dtype == np.int8 and dshape is not None and len(dshape) == 4 \
            and int(a.groups) == dshape[1] == w.shape[0] and dshape[1] % BLOCK == 0:
        common = dict(strides=[int(v) for v in a.strides], padding=[int(v) for v in a.padding],
                      dilation=[int(v) for v in a.dilation])
        if w.shape[2] <= DW_TAPS and w.shape[3] > 1:  # VNNI: the kernel rows in one int32 lane
            corr = relax.const(signed_correction(w)) if signed else None
            y = p.bb.call_te(qconv2d_depthwise_vnni, p.packed(data), relax.const(pack_dw_weight(w)),
                             corr, kernel_rows=int(w.shape[2]), primfunc_name_hint="qconv2d_nchwc_dw",
                             **common)
            p.count("conv_int8_depthwise_vnni")
        else:
            y = p.bb.call_te(qconv2d_depthwise, p.packed(data), relax.const(_pack_weight(w, "depthwise")),
                             primfunc_name_hint="dwconv2d_nchwc", **common)
        p.count("conv_int8_depthwise")
        return Value(y, PACKED)
    if int(a.groups) != 1 or w.dtype != np.int8 or dshape is None or len(dshape) != 4 \
            or w.shape[1] != dshape[1]:
        return None
    x, cin_pad = _int8_input(p, data, dshape)
    y = _vnni_conv(p, x, w, cin_pad, signed, strides=[int(v) for v in a.strides],
                   padding=[int(v) for v in a.padding], dilation=[int(v) for v in a.dilation])
    p.count("conv_int8_signed" if signed else "conv_int8")
    if dshape[1] % BLOCK and not cin_pad:
        p.count("conv_int8_plain_input")
    cout = w.shape[0]
    if not cout % BLOCK:
        return Value(y, PACKED)
    p.count("conv_out_padded")
    return Value(p.unpack(y, cout), PLAIN)


def _int8_input(p: Packer, data: relax.Expr, dshape: tuple[int, ...]) -> tuple[relax.Expr, int]:
    """The input of a groups-1 VNNI conv and how many zero channels it was padded by: NCHW16c
    when the channels are a multiple of 16, plain NCHW when they fit one block (<= 64), else an
    NCHW16c copy zero-padded to whole blocks."""
    cin_pad = -dshape[1] % BLOCK if dshape[1] > 4 * BLOCK else 0
    if cin_pad:
        p.count("conv_int8_padded_input")
        x = p.bb.emit(p.bb.call_te(nchw_to_nchwc_padded, p.plain(data), dshape[1] + cin_pad,
                                   primfunc_name_hint=TO_NCHWC))
        return x, cin_pad
    return (p.plain(data) if dshape[1] % BLOCK else p.packed(data)), 0


def _vnni_conv(p: Packer, x: relax.Expr, w: np.ndarray, cin_pad: int, signed: bool,
               strides, padding, dilation) -> relax.Var:
    """u8/s8 input `x` (from `_int8_input`) x OIHW int8 `w` -> NCHW16c int32, the output
    channels zero-padded to whole blocks (the caller slices them off)."""
    if cin_pad:  # zero input channels meet zero weights (an int8 zero shifts to 128 x 0)
        w = np.concatenate([w, np.zeros((w.shape[0], cin_pad, *w.shape[2:]), np.int8)], axis=1)
    cout_pad = -w.shape[0] % BLOCK
    if cout_pad:
        w = np.concatenate([w, np.zeros((cout_pad, *w.shape[1:]), np.int8)])
    common = dict(strides=list(strides), padding=list(padding), dilation=list(dilation))
    wq = relax.const(pack_int8_weight(w))
    if signed:
        return p.bb.emit(p.bb.call_te(qconv2d_packed_signed, x, wq, relax.const(signed_correction(w)),
                                      primfunc_name_hint="qconv2d_nchwc", **common))
    return p.bb.emit(p.bb.call_te(qconv2d_packed, x, wq, primfunc_name_hint="qconv2d_nchwc",
                                  **common))


def _is_int8_conv(call: relax.Call) -> bool:
    a = call.attrs
    data, weight = call.args
    return (str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) == ("NCHW", "OIHW", "NCHW") \
        and _is_const(weight) and _dtype(data) in ("uint8", "int8") \
        and a.out_dtype is not None and str(a.out_dtype) == "int32"


@rule("relax.nn.conv2d")
def _conv2d(p: Packer, call: relax.Call) -> Value:
    a = call.attrs
    data, weight = call.args
    dshape = static_shape(data)
    if _is_int8_conv(call):
        val = _int8_conv(p, call) if p.int8_vnni else None
        if val is not None:
            return val
        p.count("conv_int8_plain")
        return p.keep_plain(call)
    if (str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) != ("NCHW", "OIHW", "NCHW") \
            or not _is_const(weight) or dshape is None or _dtype(data) != "float32" \
            or (a.out_dtype is not None and str(a.out_dtype) not in ("", "float32")):
        return p.keep_plain(call)
    w = _const_np(weight).astype(np.float32)
    cout, groups = w.shape[0], int(a.groups)
    cout_pad = -cout % BLOCK
    if cout_pad and groups != 1:
        return p.keep_plain(call)
    if cout_pad:  # zero output channels up to a whole block, sliced off after the conv
        w = np.concatenate([w, np.zeros((cout_pad, *w.shape[1:]), np.float32)])
    form = _conv_plan(dshape[1], w.shape[0], groups)
    if form is None:
        return p.keep_plain(call)
    x = p.plain(data) if form == "plain_input" else p.packed(data)
    y = R.nn.conv2d(x, relax.const(_pack_weight(w, form)), strides=a.strides, padding=a.padding,
                    dilation=a.dilation, groups=groups,
                    data_layout="NCHW" if form == "plain_input" else "NCHW16c",
                    kernel_layout=KERNEL_LAYOUT[form], out_layout="NCHW16c", out_dtype="float32")
    p.count(f"conv_{form}")
    if not cout_pad:
        return Value(y, PACKED)
    p.count("conv_out_padded")
    return Value(p.unpack(p.bb.emit(y), cout), PLAIN)


@dataclass(frozen=True)
class _Phase:
    """One output phase r of a stride-s transposed convolution along one axis, as a conv."""

    taps: tuple[int, ...]  # kernel indices, in correlation order
    pad_before: int
    pad_after: int


def _transpose_phases(size_in: int, kernel: int, stride: int, pad_begin: int,
                      size_out: int) -> list[_Phase] | None:
    """out[s*q + r] = sum_j x[q - pad_before + j] * w[taps[j]]: a stride-1 conv per phase r.

    None when a phase needs cropping, has no taps, or the phases differ in length (the output
    size is no multiple of the stride).
    """
    if size_out % stride:
        return None
    phases = []
    for r in range(stride):
        k0 = (r + pad_begin) % stride
        taps = list(range(k0, kernel, stride))
        if not taps:
            return None
        c = (r + pad_begin - k0) // stride
        before = len(taps) - 1 - c
        after = size_out // stride - size_in - before + len(taps) - 1
        if before < 0 or after < 0:
            return None
        phases.append(_Phase(tuple(reversed(taps)), before, after))
    return phases


PHASE_INTERLEAVE = "phase_interleave"


def interleave_phases(phases: list[te.Tensor], sy: int, sx: int) -> te.Tensor:
    """Phase outputs (N, C/16, qy, qx, 16), row-major over (ry, rx) -> (N, C/16, qy*sy, qx*sx, 16)
    with out[sy*q + ry, sx*u + rx] = phase (ry, rx)[q, u]: one compute whose select on the phase
    is the same for the 16 channels of a vector (a branch per output pixel, no gather), so the
    requantize epilogue fuses into it and the phases are read once."""
    n, cb, qy, qx, ci = (int(v) for v in phases[0].shape)

    def body(b, c, y, x, k):
        q, ry, u, rx = y // sy, y % sy, x // sx, x % sx

        def pick(row: int, col: int):
            if col == sx - 1:
                return phases[row * sx + col][b, c, q, u, k]
            return tirx.if_then_else(rx == col, phases[row * sx + col][b, c, q, u, k], pick(row, col + 1))

        def pick_row(row: int):
            return pick(row, 0) if row == sy - 1 else tirx.if_then_else(ry == row, pick(row, 0), pick_row(row + 1))

        return pick_row(0)

    return te.compute((n, cb, qy * sy, qx * sx, ci), body, name=PHASE_INTERLEAVE)


def _interleave(p: Packer, phases: list[list[relax.Expr]], n: int, cb: int, qy: int, qx: int,
                sy: int, sx: int) -> relax.Var:
    """Phase outputs phases[ry][rx] (N, C/16, qy, qx, 16) -> (N, C/16, qy*sy, qx*sx, 16) with
    out[sy*q + ry, sx*u + rx] = phases[ry][rx][q, u] (`interleave_phases`)."""
    flat = [y for row in phases for y in row]
    p.count("phase_interleave")
    return p.bb.emit(p.bb.call_te(interleave_phases, flat, sy, sx, primfunc_name_hint=PHASE_INTERLEAVE))


def _phase_weight(w: np.ndarray, ry: _Phase, rx: _Phase) -> np.ndarray:
    """IOHW transposed-conv weight -> the OIHW weight of phase (ry, rx)."""
    return np.ascontiguousarray(w[:, :, list(ry.taps), :][:, :, :, list(rx.taps)].transpose(1, 0, 2, 3))


def _vnni_conv_transpose(p: Packer, x: relax.Expr, w: np.ndarray, rows: list[_Phase], cols: list[_Phase],
                         cin_pad: int, signed: bool, in_hw: tuple[int, int],
                         out_hw: tuple[int, int]) -> relax.Var:
    """int8 transposed conv (IOHW `w`) as one VNNI conv over the interleaved output
    (`qconv2d_transpose_packed`): the phase weights zero-extended to the most taps of any phase
    and stacked, the input padded once for every phase; output channels zero-padded to whole
    blocks (the caller slices them off)."""
    th, tw = max(len(r.taps) for r in rows), max(len(c.taps) for c in cols)
    top, left = max(r.pad_before for r in rows), max(c.pad_before for c in cols)
    off_y = [top - r.pad_before for r in rows]
    off_x = [left - c.pad_before for c in cols]
    qy, qx = out_hw[0] // len(rows), out_hw[1] // len(cols)
    bottom = max(0, max(qy - 1 + o + th for o in off_y) - top - in_hw[0])
    right = max(0, max(qx - 1 + o + tw for o in off_x) - left - in_hw[1])
    packed, corrections = [], []
    for ry in rows:
        packed_row, corr_row = [], []
        for rx in cols:
            sub = _phase_weight(w, ry, rx)  # (O, I, len(ry.taps), len(rx.taps)), then zero taps
            sub = np.pad(sub, ((0, -sub.shape[0] % BLOCK), (0, cin_pad), (0, th - sub.shape[2]),
                               (0, tw - sub.shape[3])))
            packed_row.append(pack_int8_weight(sub))
            corr_row.append(signed_correction(sub).reshape(-1, BLOCK))
        packed.append(np.stack(packed_row))
        corrections.append(np.stack(corr_row))
    corr = relax.const(np.stack(corrections)) if signed else None
    return p.bb.emit(p.bb.call_te(qconv2d_transpose_packed, x, relax.const(np.stack(packed)), corr,
                                  offsets_y=off_y, offsets_x=off_x, padding=[top, left, bottom, right],
                                  out_hw=list(out_hw), primfunc_name_hint="qconv2d_nchwc_t"))


@rule("relax.nn.conv2d_transpose")
def _conv2d_transpose(p: Packer, call: relax.Call) -> Value:
    """Stride-s transposed conv -> s*s packed stride-1 convs on the input, interleaved.

    TOPI's form convolves a zero-dilated input (s*s times the work); the sub-pixel phases do
    only the useful multiply-adds. fp32: each phase runs under the conv-tiled schedule and
    `interleave_phases` puts them together. int8 (u8/s8 data x const s8 weight -> s32: exact,
    the padding is the (shifted) zero): one VNNI conv over the interleaved output computes
    every phase (`qconv2d_transpose_packed`), with its requantize fused; phase offsets that
    are no arithmetic progression (strides > 2 only) keep TOPI's form.
    """
    a = call.attrs
    data, weight = call.args
    dshape, oshape = static_shape(data), static_shape(call)
    out_dtype = str(a.out_dtype) if a.out_dtype is not None else ""
    int8 = _dtype(data) in ("uint8", "int8") and out_dtype == "int32" and _is_const(weight) \
        and _const_np(weight).dtype == np.int8
    if (str(a.data_layout), str(a.kernel_layout)) != ("NCHW", "IOHW") or int(a.groups) != 1 \
            or any(int(d) != 1 for d in a.dilation) or not _is_const(weight) or dshape is None \
            or oshape is None or len(dshape) != 4 or str(a.out_layout) not in ("NCHW", "") \
            or not (int8 and p.int8_vnni
                    or _dtype(data) == "float32" and out_dtype in ("", "float32")):
        return p.keep_plain(call)
    w = _const_np(weight)  # (in, out, kh, kw)
    cin, cout, kh, kw = w.shape
    sy, sx = (int(s) for s in a.strides)
    pt, pl = int(a.padding[0]), int(a.padding[1])
    rows = _transpose_phases(dshape[2], kh, sy, pt, oshape[2])
    cols = _transpose_phases(dshape[3], kw, sx, pl, oshape[3])
    cout_pad = -cout % BLOCK
    form = _conv_plan(cin, cout + cout_pad, 1)
    if rows is None or cols is None or form is None or cin != dshape[1]:
        return p.keep_plain(call)
    n, cb = oshape[0], (cout + cout_pad) // BLOCK
    qy, qx = oshape[2] // sy, oshape[3] // sx
    phases = []
    if int8 and not (linear_offsets([r.pad_before for r in rows]) and linear_offsets([c.pad_before for c in cols])):
        return p.keep_plain(call)
    if int8:
        x, cin_pad = _int8_input(p, data, dshape)
        y = _vnni_conv_transpose(p, x, w, rows, cols, cin_pad, _dtype(data) == "int8",
                                 (dshape[2], dshape[3]), (oshape[2], oshape[3]))
        p.count("conv_transpose_int8_phases", len(rows) * len(cols))
        if not cout_pad:
            return Value(y, PACKED)
        p.count("conv_out_padded")
        return Value(p.unpack(y, cout), PLAIN)
    else:
        w = w.astype(np.float32)
        x = p.plain(data) if form == "plain_input" else p.packed(data)
        for ry in rows:
            row = []
            for rx in cols:
                sub = _phase_weight(w, ry, rx)
                if cout_pad:
                    sub = np.concatenate([sub, np.zeros((cout_pad, *sub.shape[1:]), np.float32)])
                row.append(p.bb.emit(R.nn.conv2d(
                    x, relax.const(_pack_weight(sub, form)),
                    padding=(ry.pad_before, rx.pad_before, ry.pad_after, rx.pad_after),
                    data_layout="NCHW" if form == "plain_input" else "NCHW16c",
                    kernel_layout=KERNEL_LAYOUT[form], out_layout="NCHW16c", out_dtype="float32")))
            phases.append(row)
        p.count("conv_transpose_phases", len(rows) * len(cols))
    full = _interleave(p, phases, n, cb, qy, qx, sy, sx)
    if not cout_pad:
        return Value(full, PACKED)
    p.count("conv_out_padded")
    return Value(p.unpack(full, cout), PLAIN)


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


# --- driver ------------------------------------------------------------------------------------

def _bindings(func: relax.Function) -> list[relax.VarBinding] | None:
    body = func.body
    if not isinstance(body, relax.SeqExpr):
        return None
    out = []
    for block in body.blocks:
        if not isinstance(block, relax.DataflowBlock):
            return None
        for b in block.bindings:
            if not isinstance(b, relax.VarBinding):
                return None
            out.append(b)
    return out


def _rewrite(p: Packer, value: relax.Expr) -> Value:
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
        fn = RULES.get(str(value.op.name))
        return fn(p, value) if fn is not None else p.keep_plain(value)
    if isinstance(value, relax.Call):
        return p.keep_plain(value)
    return p.value(value)


def relax_entries(mod: tvm.IRModule) -> list[str]:
    """Every Relax function of `mod`: dead-code elimination must keep them all."""
    return [gv.name_hint for gv, f in mod.functions.items() if isinstance(f, relax.Function)]


def pack_channels(mod: tvm.IRModule, int8_vnni: bool = True) -> tuple[tvm.IRModule, dict[str, int]]:
    """Rewrite "main" to the packed layout; returns the module and counts of what was done.

    `int8_vnni=False` (a CPU without AVX512-VNNI) leaves the int8 convolutions plain.

    A "main" that is not one or more dataflow blocks of plain bindings is returned unchanged
    (with counts {"skipped": 1}).
    """
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise VccError("optimize_for_cpu: the module has no function 'main'")
    func = mod["main"]
    bindings = _bindings(func)
    if bindings is None:
        return mod, {"skipped": 1}
    others = {gv: f for gv, f in mod.functions.items() if gv.name_hint != "main"}
    bb = relax.BlockBuilder(tvm.IRModule(others, attrs=mod.attrs))
    packer = Packer(bb, int8_vnni)
    attrs = dict(func.attrs) if func.attrs is not None else None
    with bb.function("main", list(func.params), attrs=attrs, pure=func.is_pure):
        with bb.dataflow():
            for param in func.params:
                packer.env[param] = Value(param, PLAIN)
            for b in bindings:
                if isinstance(b.value, relax.Tuple):
                    packer.tuple_source[b.var] = b.value
                val = _rewrite(packer, b.value)
                expr = val.expr
                if not isinstance(expr, relax.Var):
                    expr = bb.emit(expr, name_hint=str(b.var.name))
                packer.env[b.var] = Value(expr, val.layout)
            ret = packer.plain(func.body.body)
            out = bb.emit_output(ret)
        bb.emit_func_output(out)
    new_mod = bb.get()
    new_mod = relax.transform.DeadCodeElimination(relax_entries(new_mod))(new_mod)
    return new_mod, packer.counts
