"""TE computes for channel-packed convolutions and their legalization.

`pack_channels` rewrites `relax.nn.conv2d` into one of three packed forms (`BLOCK` = 16 channels
per packed block, one AVX-512 register of fp32):

| form        | data      | kernel       | out      | when                                  |
|-------------|-----------|--------------|----------|---------------------------------------|
| packed      | NCHW16c   | OIHW16i16o   | NCHW16c  | in and out channels per group % 16 = 0 |
| plain-input | NCHW      | OIHW16o      | NCHW16c  | groups = 1, input channels % 16 != 0   |
| depthwise   | NCHW16c   | OIHW16o      | NCHW16c  | groups = in = out channels, % 16 = 0   |

TOPI cannot legalize these (it refuses packed kernels and mixed data/out layouts), so
`legalize_packed_conv2d` supplies the compute; plain convolutions go to TOPI as before. The
block names below are what the schedules look for in the fused functions.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, tirx

BLOCK = 16
PAD_BLOCK = "conv_pad"
CONV_BLOCK = "conv2d_nchwc"
DWCONV_BLOCK = "dwconv2d_nchwc"

PACKED_FORMS = {
    ("NCHW16c", "OIHW16i16o", "NCHW16c"): "packed",
    ("NCHW", "OIHW16o", "NCHW16c"): "plain_input",
}


def conv_form(attrs) -> str | None:
    """The packed form of a conv2d call's attributes, None for a plain (TOPI) convolution."""
    key = (str(attrs.data_layout), str(attrs.kernel_layout), str(attrs.out_layout))
    if key == ("NCHW16c", "OIHW16o", "NCHW16c"):
        return "depthwise"
    return PACKED_FORMS.get(key)


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _pad_spatial(data: te.Tensor, padding: list[int], h_axis: int = 2) -> te.Tensor:
    """Zero-pad axes h_axis, h_axis + 1; a separate stage so the conv loop has no bounds checks."""
    top, left, bottom, right = padding
    if not any(padding):
        return data
    shape = _ints(data.shape)
    h, w = shape[h_axis], shape[h_axis + 1]
    out_shape = list(shape)
    out_shape[h_axis] = h + top + bottom
    out_shape[h_axis + 1] = w + left + right

    def body(*idx):
        ih = idx[h_axis] - top
        iw = idx[h_axis + 1] - left
        src = list(idx)
        src[h_axis], src[h_axis + 1] = ih, iw
        inside = tirx.all(ih >= 0, ih < h, iw >= 0, iw < w)
        return tirx.if_then_else(inside, data[tuple(src)], tirx.const(0.0, data.dtype))

    return te.compute(out_shape, body, name=PAD_BLOCK)


def _out_hw(h: int, w: int, kh: int, kw: int, strides, padding, dilation) -> tuple[int, int]:
    top, left, bottom, right = padding
    oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + left + right - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    return oh, ow


def conv2d_packed(data: te.Tensor, weight: te.Tensor, strides, padding, dilation,
                  groups: int) -> te.Tensor:
    """NCHW16c x OIHW16i16o -> NCHW16c, grouped when every group holds whole 16-blocks."""
    strides, padding, dilation = _ints(strides), _ints(padding), _ints(dilation)
    n, _, h, w, _ = _ints(data.shape)
    ocb, icb_g, kh, kw, ici, oci = _ints(weight.shape)
    oh, ow = _out_hw(h, w, kh, kw, strides, padding, dilation)
    pad = _pad_spatial(data, padding)
    ocb_g = ocb // groups
    rc = te.reduce_axis((0, icb_g), name="rc")
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")
    ri = te.reduce_axis((0, ici), name="ri")

    def body(b, o, y, x, c):
        cin = rc if groups == 1 else (o // ocb_g) * icb_g + rc
        return te.sum(pad[b, cin, y * strides[0] + rh * dilation[0], x * strides[1] + rw * dilation[1], ri]
                      * weight[o, rc, rh, rw, ri, c], axis=[rc, rh, rw, ri])

    return te.compute((n, ocb, oh, ow, oci), body, name=CONV_BLOCK)


def conv2d_plain_input(data: te.Tensor, weight: te.Tensor, strides, padding, dilation) -> te.Tensor:
    """NCHW x OIHW16o -> NCHW16c: inputs whose channel count is no multiple of 16 (RGB)."""
    strides, padding, dilation = _ints(strides), _ints(padding), _ints(dilation)
    n, _, h, w = _ints(data.shape)
    ocb, ic, kh, kw, oci = _ints(weight.shape)
    oh, ow = _out_hw(h, w, kh, kw, strides, padding, dilation)
    pad = _pad_spatial(data, padding)
    rc = te.reduce_axis((0, ic), name="rc")
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")

    def body(b, o, y, x, c):
        return te.sum(pad[b, rc, y * strides[0] + rh * dilation[0], x * strides[1] + rw * dilation[1]]
                      * weight[o, rc, rh, rw, c], axis=[rc, rh, rw])

    return te.compute((n, ocb, oh, ow, oci), body, name=CONV_BLOCK)


def conv2d_depthwise(data: te.Tensor, weight: te.Tensor, strides, padding, dilation) -> te.Tensor:
    """NCHW16c x OIHW16o (one input channel per output channel) -> NCHW16c."""
    strides, padding, dilation = _ints(strides), _ints(padding), _ints(dilation)
    n, cb, h, w, ci = _ints(data.shape)
    _, _, kh, kw, _ = _ints(weight.shape)
    oh, ow = _out_hw(h, w, kh, kw, strides, padding, dilation)
    pad = _pad_spatial(data, padding)
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")

    def body(b, o, y, x, c):
        return te.sum(pad[b, o, y * strides[0] + rh * dilation[0], x * strides[1] + rw * dilation[1], c]
                      * weight[o, 0, rh, rw, c], axis=[rh, rw])

    return te.compute((n, cb, oh, ow, ci), body, name=DWCONV_BLOCK)


def _default_conv2d_legalize():
    return tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")


def legalize_packed_conv2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """FLegalize for relax.nn.conv2d: our computes for the packed forms, TOPI for the rest."""
    attrs = call.attrs
    form = conv_form(attrs)
    data, weight = call.args
    common = dict(strides=attrs.strides, padding=attrs.padding, dilation=attrs.dilation)
    if form == "packed":
        return bb.call_te(conv2d_packed, data, weight, groups=int(attrs.groups),
                          primfunc_name_hint="conv2d_nchwc", **common)
    if form == "plain_input":
        return bb.call_te(conv2d_plain_input, data, weight, primfunc_name_hint="conv2d_nchwc",
                          **common)
    if form == "depthwise":
        return bb.call_te(conv2d_depthwise, data, weight, primfunc_name_hint="dwconv2d_nchwc",
                          **common)
    return _default_conv2d_legalize()(bb, call)

