"""Packing rules for the convolutions: conv2d and conv2d_transpose.

fp32 convs become packed NCHW16c convs (their weights re-laid out in numpy, output channels
zero-padded to whole blocks); u8/s8 x s8 -> s32 convs become the VNNI-packed convs of
int8_conv.py, emitted with `call_te`. A stride-s transposed conv becomes its s*s sub-pixel
phases: fp32 as s*s stride-1 packed convs put together by `interleave_phases`, int8 as one
VNNI conv over the interleaved output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax, te, tirx

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
from .pack_core import (
    PACKED,
    PLAIN,
    TO_NCHWC,
    Packer,
    Value,
    _const_np,
    _dtype,
    _is_const,
    nchw_to_nchwc_padded,
    rule,
    static_shape,
)

R = relax.op

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

# --- transposed convolution ------------------------------------------------------------------

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
