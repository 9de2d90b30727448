"""Packed int8 convolutions on the VNNI dot product (u8 x s8 -> s32, 16 lanes x 4).

    data     NCHW16c  uint8 (int8 activations are shifted by +128 in the padding stage), or
             NCHW when the input channels are no multiple of 16 (an RGB stem): the padding
             stage then gathers them into one block, channels rounded up to 4
    kernel   OIHW4i16o4i int8: (O/16, I/16, KH, KW, 4, 16, 4), re-laid out in numpy
    out      NCHW16c  int32, exact: for int8 data the constant 128 * sum(w) per output channel
             is subtracted again in an elementwise stage that inlines into the epilogue

`pack_conv.py` emits these convs directly (`call_te`), so LegalizeOps never sees them; FuseOps
fuses the requantization epilogue (bias, astype, scale, ReLU, round / clip / astype) into the
function, and `schedule_int8_conv_func` (int8_schedule.py) tiles it like the fp32 conv (output
tile accumulated in registers, epilogue inlined into the write-back) with the innermost 16 x 4
tensorized (vnni_intrin.py).

Two more forms share the schedule machinery: depthwise convs with up to 4 kernel rows pack the
kernel rows of a channel into the 4 bytes of a VNNI lane (`qconv2d_depthwise_vnni`, one
vpdpbusd per kernel column for 16 channels; its block is named for its kernel rows so the
report's MAC count includes them, `dw_lane_taps`), and stride-s transposed convs compute all
their output phases in one conv over the interleaved output (`qconv2d_transpose_packed`).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from .conv_compute import BLOCK, DWCONV_BLOCK, PAD_BLOCK, _ints, _out_hw

QCONV_BLOCK = "qconv2d_nchwc"
QPAD_BLOCK = "qconv_pad"
QDW_BLOCK = QCONV_BLOCK + "_dw"  # the VNNI depthwise conv (found by find_qconv_block too),
# named QDW_BLOCK + its kernel rows ("qconv2d_nchwc_dw3"): the rows ride in the lanes, not in a loop, and
# the MAC count (pipeline.conv_macs) reads them from the name
QDW_ROWS_BLOCK = "qdw_rows"
DW_TAPS = 4  # kernel rows packed into the 4 bytes of one int32 lane
LANES = 4  # input channels per VNNI dot product
SHIFT = 128  # int8 -> uint8 offset


def dw_lane_taps(block: str) -> int:
    """Kernel rows packed into each lane by a VNNI depthwise block named `block` (1 otherwise)."""
    rest = block[len(QDW_BLOCK):] if block.startswith(QDW_BLOCK) else ""
    return int(rest) if rest.isdigit() else 1


# --- weights and compute -------------------------------------------------------------------------

def pack_int8_weight(w: np.ndarray) -> np.ndarray:
    """OIHW int8 (O % 16 == 0) -> (O/16, I/16, KH, KW, 4, 16, 4) when I % 16 == 0 (packed
    input), else (O/16, 1, KH, KW, I4/4, 16, 4) with I zero-padded to I4, a multiple of 4
    (plain NCHW input, one input-channel block)."""
    o, i, kh, kw = w.shape
    if i % BLOCK:
        w = np.concatenate([w, np.zeros((o, -i % LANES, kh, kw), w.dtype)], axis=1)
        i = w.shape[1]
    block = BLOCK if i % BLOCK == 0 else i
    blocks = w.reshape(o // BLOCK, BLOCK, i // block, block // LANES, LANES, kh, kw)
    return np.ascontiguousarray(blocks.transpose(0, 2, 5, 6, 3, 1, 4).astype(np.int8))


def signed_correction(w: np.ndarray) -> np.ndarray:
    """128 * sum(w) per output channel, packed (1, O/16, 1, 1, 16) int32: what the +128 shift
    of int8 activations adds to each accumulator."""
    o = w.shape[0]
    total = SHIFT * w.reshape(o, -1).astype(np.int64).sum(axis=1)
    return total.astype(np.int32).reshape(1, o // BLOCK, 1, 1, BLOCK)


def _pad_u8(data: te.Tensor, padding: list[int], signed: bool, channels: int) -> te.Tensor:
    """Padded uint8 copy of the input in (N, C/c, H, W, c) blocks: int8 data shifted by +128,
    padding the shifted 0. A 5-D input is already packed (c = 16); a 4-D (NCHW) input becomes
    one block of `channels` (its channels rounded up to 4; the extra ones hold the shifted 0
    and meet zero weights)."""
    top, left, bottom, right = padding
    packed = len(data.shape) == 5
    if packed:
        n, cb, h, w, ci = _ints(data.shape)
    else:
        n, c_in, h, w = _ints(data.shape)
        cb, ci = 1, channels
    fill = tirx.const(SHIFT if signed else 0, "uint8")

    def body(b, c, y, x, k):
        if packed:
            v = data[b, c, y - top, x - left, k]
            inside = tirx.all(y >= top, y < h + top, x >= left, x < w + left)
        else:
            v = data[b, k, y - top, x - left]
            inside = tirx.all(y >= top, y < h + top, x >= left, x < w + left, k < c_in)
        u8 = (v.astype("int32") + SHIFT).astype("uint8") if signed else v
        return tirx.if_then_else(inside, u8, fill)

    return te.compute((n, cb, h + top + bottom, w + left + right, ci), body, name=QPAD_BLOCK)


def qconv2d_packed(data: te.Tensor, weight: te.Tensor, strides, padding, dilation) -> te.Tensor:
    """NCHW16c (or NCHW) uint8 x packed int8 weights (`pack_int8_weight`) -> NCHW16c int32."""
    return _qconv(data, weight, None, strides, padding, dilation)


def qconv2d_packed_signed(data: te.Tensor, weight: te.Tensor, correction: te.Tensor, strides,
                          padding, dilation) -> te.Tensor:
    """The same for int8 data: computed on data + 128, minus `correction` (int32, packed)."""
    return _qconv(data, weight, correction, strides, padding, dilation)


def _qconv(data, weight, correction, strides, padding, dilation) -> te.Tensor:
    strides, padding, dilation = _ints(strides), _ints(padding), _ints(dilation)
    dims = _ints(data.shape)  # (N, C/16, H, W, 16) or (N, C, H, W)
    n, h, w = dims[0], dims[2], dims[3]
    ocb, icb, kh, kw, ic4, oci, lanes = _ints(weight.shape)
    oh, ow = _out_hw(h, w, kh, kw, strides, padding, dilation)
    if correction is None and len(dims) == 5 and not any(padding):
        pad = data  # uint8 NCHW16c, nothing to pad or shift: read in place, no copy
    else:
        pad = _pad_u8(data, padding, correction is not None, ic4 * lanes)
    rc = te.reduce_axis((0, icb), name="rc")
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")
    ro = te.reduce_axis((0, ic4), name="ro")
    ri = te.reduce_axis((0, lanes), name="ri")

    def body(b, o, y, x, c):
        a = pad[b, rc, y * strides[0] + rh * dilation[0], x * strides[1] + rw * dilation[1],
                ro * lanes + ri]
        return te.sum(a.astype("int32") * weight[o, rc, rh, rw, ro, c, ri].astype("int32"),
                      axis=[rc, rh, rw, ro, ri])

    acc = te.compute((n, ocb, oh, ow, oci), body, name=QCONV_BLOCK)
    if correction is None:
        return acc
    return te.compute(acc.shape, lambda b, o, y, x, c: acc[b, o, y, x, c] - correction[0, o, 0, 0, c],
                      name="qconv_unshift")


def qconv2d_depthwise(data: te.Tensor, weight: te.Tensor, strides, padding, dilation) -> te.Tensor:
    """Depthwise NCHW16c u8/s8 x OIHW16o s8 -> NCHW16c s32: 16 channels per vector in int32 (no
    dot product to use: one tap per channel), scheduled by the fp32 depthwise schedule (its
    block names)."""
    strides, padding, dilation = _ints(strides), _ints(padding), _ints(dilation)
    n, cb, h, w, ci = _ints(data.shape)
    _, _, kh, kw, _ = _ints(weight.shape)
    oh, ow = _out_hw(h, w, kh, kw, strides, padding, dilation)
    top, left, bottom, right = padding
    zero = tirx.const(0, data.dtype)
    pad = te.compute(
        (n, cb, h + top + bottom, w + left + right, ci),
        lambda b, c, y, x, k: tirx.if_then_else(
            tirx.all(y >= top, y < h + top, x >= left, x < w + left),
            data[b, c, y - top, x - left, k], zero), name=PAD_BLOCK)
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")

    def body(b, o, y, x, c):
        a = pad[b, o, y * strides[0] + rh * dilation[0], x * strides[1] + rw * dilation[1], c]
        return te.sum(a.astype("int32") * weight[o, 0, rh, rw, c].astype("int32"), axis=[rh, rw])

    return te.compute((n, cb, oh, ow, ci), body, name=DWCONV_BLOCK)


QCONVT_BLOCK = QCONV_BLOCK + "_t"  # a transposed conv over its interleaved output


def linear_offsets(values: list[int]) -> bool:
    """Whether per-phase offsets are an arithmetic progression (`_pick` needs one)."""
    return all(values[k] - values[k - 1] == values[1] - values[0] for k in range(2, len(values)))


def _pick(r, values: list[int]):
    """values[r] for a loop-dependent phase r, as values[0] + r * step: an affine index keeps the
    input region of one output element a single point (tensorize needs that; a select does not)."""
    dtype = str(r.ty)
    step = values[1] - values[0] if len(values) > 1 else 0
    return tirx.const(values[0], dtype) + r * tirx.const(step, dtype)


def qconv2d_transpose_packed(data: te.Tensor, weight: te.Tensor, correction: te.Tensor | None,
                             offsets_y: list[int], offsets_x: list[int], padding,
                             out_hw) -> te.Tensor:
    """Stride-s transposed conv straight into its (N, O/16, OH, OW, 16) int32 output.

    Output phase (ry, rx) = (y % sy, x % sx) is a stride-1 conv of the input (`pack_conv.py`
    derives its taps); here all phases are one reduction: `weight` is (sy, sx, O/16, I/16, TH, TW, 4,
    16, 4), each phase's packed weight zero-extended to TH x TW taps, and the phase reads input
    row y // sy + offsets_y[ry] + rh of the input padded by `padding` (the same for all). So the
    requantize fuses into the write-back and no phase output goes through memory; the VNNI
    schedule tiles it like any int8 conv. `correction` (int8 data): (sy, sx, O/16, 16) int32.
    """
    padding = _ints(padding)
    sy, sx, ocb, icb, th, tw, ic4, oci, lanes = _ints(weight.shape)
    n = _ints(data.shape)[0]
    oh, ow = (int(v) for v in out_hw)
    pad = _pad_u8(data, padding, correction is not None, ic4 * lanes)
    rc = te.reduce_axis((0, icb), name="rc")
    rh = te.reduce_axis((0, th), name="rh")
    rw = te.reduce_axis((0, tw), name="rw")
    ro = te.reduce_axis((0, ic4), name="ro")
    ri = te.reduce_axis((0, lanes), name="ri")

    def body(b, o, y, x, c):
        ry, rx = y % sy, x % sx
        a = pad[b, rc, y // sy + _pick(ry, offsets_y) + rh, x // sx + _pick(rx, offsets_x) + rw,
                ro * lanes + ri]
        return te.sum(a.astype("int32") * weight[ry, rx, o, rc, rh, rw, ro, c, ri].astype("int32"),
                      axis=[rc, rh, rw, ro, ri])

    acc = te.compute((n, ocb, oh, ow, oci), body, name=QCONVT_BLOCK)
    if correction is None:
        return acc
    return te.compute(acc.shape, lambda b, o, y, x, c: acc[b, o, y, x, c]
                      - correction[y % sy, x % sx, o, c], name="qconv_unshift")


def pack_dw_weight(w: np.ndarray) -> np.ndarray:
    """Depthwise OIHW int8 (C, 1, KH <= 4, KW), C % 16 == 0 -> (C/16, KW, 16, 4): for each kernel
    column the KH kernel rows of a channel are the 4 bytes of its VNNI lane (zero beyond KH)."""
    c, _, kh, kw = w.shape
    out = np.zeros((c // BLOCK, kw, BLOCK, DW_TAPS), np.int8)
    out[..., :kh] = w[:, 0].reshape(c // BLOCK, BLOCK, kh, kw).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def _dw_dot(a, b, t: int):
    """Byte t of the packed int32 lane `a` (unsigned) times the int8 weight `b`, in int32."""
    byte = a & 255 if t == 0 else (a >> 8 * t) & 255
    return byte * b.astype("int32")


def qconv2d_depthwise_vnni(data: te.Tensor, weight: te.Tensor, correction: te.Tensor | None,
                           kernel_rows: int, strides, padding, dilation) -> te.Tensor:
    """Depthwise NCHW16c u8/s8 x `pack_dw_weight` s8 -> NCHW16c s32 on the VNNI dot product.

    A rows stage packs, for each output row, the (padded, +128-shifted for int8) input bytes of
    the kernel's rows into the 4 bytes of an int32 per channel and column; one vpdpbusd per
    kernel column then does the kernel rows of 16 channels at once (3 instead of 9 for a 3x3).
    The schedule computes the rows stage per output row, so it stays in L1 (no padded copy of
    the input goes through memory). `correction` (int8 data) is `signed_correction(w)`.
    """
    strides, padding, dilation = _ints(strides), _ints(padding), _ints(dilation)
    n, cb, h, w, ci = _ints(data.shape)
    _, kw, _, _ = _ints(weight.shape)
    kh = int(kernel_rows)
    oh, ow = _out_hw(h, w, kh, kw, strides, padding, dilation)
    top, left, bottom, right = padding
    signed = correction is not None
    fill = tirx.const(SHIFT if signed else 0, "int32")

    def rows_body(b, c, y, x, k):
        packed = None
        for t in range(kh):
            iy = y * strides[0] + t * dilation[0] - top
            ix = x - left
            v = data[b, c, tirx.max(tirx.min(iy, h - 1), 0), tirx.max(tirx.min(ix, w - 1), 0), k]
            v = v.astype("int32") + SHIFT if signed else v.astype("int32")
            v = tirx.if_then_else(tirx.all(iy >= 0, iy < h, ix >= 0, ix < w), v, fill)
            v = v if t == 0 else v << 8 * t
            packed = v if packed is None else packed | v
        return packed

    rows = te.compute((n, cb, oh, w + left + right, ci), rows_body, name=QDW_ROWS_BLOCK)
    rw = te.reduce_axis((0, kw), name="rw")

    def body(b, c, y, x, k):
        a = rows[b, c, y, x * strides[1] + rw * dilation[1], k]
        dot = _dw_dot(a, weight[c, rw, k, 0], 0) + _dw_dot(a, weight[c, rw, k, 1], 1) \
            + _dw_dot(a, weight[c, rw, k, 2], 2) + _dw_dot(a, weight[c, rw, k, 3], 3)
        return te.sum(dot, axis=[rw])

    acc = te.compute((n, cb, oh, ow, ci), body, name=f"{QDW_BLOCK}{kh}")
    if correction is None:
        return acc
    return te.compute(acc.shape, lambda b, o, y, x, c: acc[b, o, y, x, c] - correction[0, o, 0, 0, c],
                      name="qconv_unshift")

