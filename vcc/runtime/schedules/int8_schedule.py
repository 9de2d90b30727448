"""Schedules of the int8 convolutions (int8_conv.py) on the VNNI dot product.

`schedule_int8_conv_func` register-tiles a fused function around its int8 conv like the fp32
conv schedule (output tile accumulated in registers, epilogue inlined into the write-back) and
tensorizes the innermost 16 x 4 with `VNNI_LOCAL_INTRIN`; a VNNI depthwise conv gets its own
row-wise schedule (`_schedule_int8_depthwise`, tiles sized by `dw_tile`).
"""

from __future__ import annotations

from tvm import s_tir

from .conv_compute import BLOCK
from .conv_schedule import choose_tile, conv_with_epilogue, schedule_epilogue
from .int8_conv import QCONV_BLOCK, QDW_BLOCK, QDW_ROWS_BLOCK, QPAD_BLOCK
from .tir_util import (
    block_name,
    schedule_elementwise,
    top_blocks,
)
from .vnni_intrin import DW_VNNI_INTRIN, register_vnni_intrin


def find_qconv_block(sch: s_tir.Schedule):
    found = [b for b in top_blocks(sch) if block_name(sch, b).startswith(QCONV_BLOCK)]
    return found[0] if len(found) == 1 else None


def schedule_int8_conv_func(sch: s_tir.Schedule) -> str:
    """Register-tiled int8 conv with the VNNI dot product; returns "conv_int8"."""
    conv = find_qconv_block(sch)
    if conv is None:
        raise ValueError("no unique int8 conv block")
    if block_name(sch, conv).startswith(QDW_BLOCK):
        return _schedule_int8_depthwise(sch, conv)
    conv, epilogue, pads, out_shape, reduce_extents = conv_with_epilogue(sch, conv, QPAD_BLOCK, "int8 conv")
    _, ocb, _, ow, _ = out_shape
    tile = choose_tile(ocb, ow, False)

    n, ob, oh, ow_l, oi = sch.get_loops(epilogue)
    ob_o, ob_i = sch.split(ob, [None, tile.oc_tile])
    ow_o, ow_i = sch.split(ow_l, [None, tile.ow_tile])
    outer = (n, ob_o, oh)
    sch.reorder(*outer, ow_o, ob_i, ow_i, oi)
    sch.compute_at(conv, ow_o)
    sch.set_scope(conv, 0, "local")

    spatial_ext = [tile.oc_tile, tile.ow_tile, BLOCK]
    spatial_roles = [r for r, e in zip(("ob", "ow", "oi"), spatial_ext, strict=True) if e > 1]
    reduce_names = ("rc", "rh", "rw", "ro", "ri")
    reduce_roles = [r for r, e in zip(reduce_names, reduce_extents, strict=True) if e > 1]
    inner = sch.get_loops(conv)[4:]
    expected = [e for e in spatial_ext if e > 1] + [e for e in reduce_extents if e > 1]
    got = [int(sch.get(lp).extent) for lp in inner]
    if got != expected or "ri" not in reduce_roles:
        raise ValueError(f"unexpected int8 conv tile loops {got}, wanted {expected}")
    roles = dict(zip(spatial_roles + reduce_roles, inner, strict=True))
    outer_red = [roles[r] for r in reduce_roles if r != "ri"]
    tiles = [roles[r] for r in ("ob", "ow") if r in roles]
    sch.reorder(*outer_red, *tiles, roles["oi"], roles["ri"])
    for lp in tiles:
        sch.unroll(lp)

    schedule_epilogue(sch, epilogue, outer)
    first = outer_red[0] if outer_red else (tiles[0] if tiles else roles["oi"])
    init = sch.decompose_reduction(conv, first)
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    sch.tensorize(roles["oi"], register_vnni_intrin())
    for pad in pads:
        schedule_elementwise(sch, pad)
    return "conv_int8"


DW_ACCUMULATORS = 20  # zmm accumulators of a depthwise tile (the rest hold input columns)


def dw_tile(ocb: int, ow: int) -> tuple[int, int]:
    """(columns, channel blocks) of an int8 depthwise register tile: the widest divisor of the
    width up to 16 columns, then as many channel blocks as keep the accumulators within
    DW_ACCUMULATORS (narrow deep maps: 10 columns x 2 blocks), so each weight vector loaded
    feeds enough independent dot products."""
    ow_tile = max(t for t in range(1, min(ow, 16) + 1) if ow % t == 0)
    ob_tile = max(d for d in range(1, ocb + 1) if ocb % d == 0 and d * ow_tile <= DW_ACCUMULATORS)
    return ow_tile, ob_tile


def _schedule_int8_depthwise(sch: s_tir.Schedule, conv) -> str:
    """VNNI depthwise: (n, row, channel block) in parallel; per row the rows stage is built
    (vectorised over the 16 channels) and the row is walked in tiles of `ow_tile` columns whose
    accumulators stay in registers, one vpdpbusd per kernel column and output column; the
    requantize epilogue is inlined into the tile's write-back. Returns "depthwise" (a hand
    schedule for the report, like the fp32 one)."""
    conv, epilogue, rows, out_shape, reduce_extents = conv_with_epilogue(sch, conv, QDW_ROWS_BLOCK,
                                                                         "int8 depthwise")
    _, ocb, _, ow, _ = out_shape
    if len(rows) != 1 or reduce_extents[0] < 2:
        raise ValueError(f"unexpected int8 depthwise stages: {len(rows)} rows stages, kw {reduce_extents}")
    ow_tile, ob_tile = dw_tile(ocb, ow)
    n, ob, oh, ow_l, oi = sch.get_loops(epilogue)
    ob_o, ob_i = sch.split(ob, [None, ob_tile])
    ow_o, ow_i = sch.split(ow_l, [None, ow_tile])
    outer = (n, oh, ob_o)
    sch.reorder(*outer, ow_o, ob_i, ow_i, oi)
    sch.compute_at(conv, ow_o)
    sch.set_scope(conv, 0, "local")
    inner = sch.get_loops(conv)[4:]
    tiles = [e for e in (ob_tile, ow_tile) if e > 1]
    expected = tiles + [BLOCK, reduce_extents[0]]
    got = [int(sch.get(lp).extent) for lp in inner]
    if got != expected:
        raise ValueError(f"unexpected int8 depthwise tile loops {got}, wanted {expected}")
    *cols, oi_c, rw = inner
    sch.reorder(rw, *cols, oi_c)
    for lp in cols:
        sch.unroll(lp)

    e_loops = sch.get_loops(epilogue)[-3:]
    sch.vectorize(e_loops[-1])
    for lp in e_loops[:-1]:
        if int(sch.get(lp).extent) > 1:
            sch.unroll(lp)
    fused = sch.fuse(*outer)
    sch.parallel(fused)
    sch.compute_at(rows[0], fused)
    r_loops = sch.get_loops(rows[0])
    sch.vectorize(r_loops[-1])
    init = sch.decompose_reduction(conv, rw)
    sch.vectorize(sch.get_loops(init)[-1])
    register_vnni_intrin()
    sch.tensorize(oi_c, DW_VNNI_INTRIN)
    return "depthwise"
