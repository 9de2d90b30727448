"""Separable bilinear upsampling.

TOPI computes each output pixel from four gathered input pixels, with the coordinate maths
per pixel. Upsampling here runs in two stages instead: along the width for every input row
(`RESIZE_ROWS`, small: input rows x output columns), then along the height, where each output
row is a blend of two rows of the first stage, contiguous loads that vectorise. The arithmetic
is TOPI's, term for term (top = lerp(p00, p01, x), bottom = lerp(p10, p11, x), lerp(top,
bottom, y), with TOPI's coordinate transform and clamping), so results match it.

Used for method "linear" with layout NCHW or NCHW16c when the output is at least as large
as the input; everything else goes to TOPI.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, tirx
from tvm.topi.image.resize import get_inx

RESIZE_ROWS = "resize_rows"
RESIZE_COLS = "resize_cols"
MODES = ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel")


def _lerp(a, b, t):
    return a * (1.0 - t) + b * t


def _clamp(i, n: int):
    return te.max(te.min(i, n - 1), 0)


def _source(o, in_len: int, out_len: int, mode: str):
    """(floor index, lerp weight) of output coordinate `o`, as TOPI's resize2d computes them."""
    pos = get_inx(o, tirx.IntImm("int64", in_len), tirx.IntImm("int64", out_len), mode)
    base = te.floor(pos).astype("int32")
    return base, pos - base


def resize2d_separable(data: te.Tensor, out_h: int, out_w: int, mode: str) -> te.Tensor:
    """Bilinear resize of axes 2, 3 of an NCHW or NCHW16c tensor in two passes."""
    shape = [int(v) for v in data.shape]
    in_h, in_w = shape[2], shape[3]
    rows_shape = [*shape[:3], out_w, *shape[4:]]

    def rows(*idx):
        n, c, y, x, cc = idx[0], idx[1], idx[2], idx[3], idx[4:]
        base, t = _source(x, in_w, out_w, mode)
        left = data[(n, c, y, _clamp(base, in_w), *cc)]
        right = data[(n, c, y, _clamp(base + 1, in_w), *cc)]
        return _lerp(left, right, t)

    stage = te.compute([tirx.IntImm("int64", v) for v in rows_shape], rows, name=RESIZE_ROWS)
    out_shape = [*shape[:2], out_h, out_w, *shape[4:]]

    def cols(*idx):
        n, c, y, x, cc = idx[0], idx[1], idx[2], idx[3], idx[4:]
        base, t = _source(y, in_h, out_h, mode)
        top = stage[(n, c, _clamp(base, in_h), x, *cc)]
        bottom = stage[(n, c, _clamp(base + 1, in_h), x, *cc)]
        return _lerp(top, bottom, t)

    return te.compute([tirx.IntImm("int64", v) for v in out_shape], cols, name=RESIZE_COLS)


def _separable_ok(call: relax.Call) -> bool:
    a = call.attrs
    shape = call.args[0].ty.shape
    size = call.args[1]
    if str(a.method) != "linear" or str(a.layout) not in ("NCHW", "NCHW16c") \
            or str(a.coordinate_transformation_mode) not in MODES \
            or str(call.args[0].ty.dtype) != "float32" \
            or (a.out_dtype is not None and str(a.out_dtype) not in ("", "float32")) \
            or not isinstance(size, relax.ShapeExpr) or shape is None:
        return False
    try:
        in_h, in_w = (int(v) for v in list(shape.values)[2:4])
        out_h, out_w = (int(v) for v in size.values)
    except TypeError:
        return False
    return out_h >= in_h and out_w >= in_w


def legalize_resize2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """FLegalize for relax.image.resize2d: separable bilinear upsampling, else TOPI."""
    if not _separable_ok(call):
        return tvm.ir.Op.get("relax.image.resize2d").get_attr("FLegalize")(bb, call)
    out_h, out_w = (int(v) for v in call.args[1].values)
    return bb.call_te(resize2d_separable, call.args[0], out_h, out_w,
                      str(call.attrs.coordinate_transformation_mode),
                      primfunc_name_hint="resize2d_separable")
