"""Hand schedule for a fused function anchored on one packed convolution.

The recipe (TVM-NOTES.md, measured on this CPU): the output is tiled as (n, oc-block, row,
width-block); inside a tile the convolution accumulates `oc_tile` x 16 channels by `ow_tile`
columns in registers ("local" scope), the reduction runs outermost (input-channel block, kh,
kw, input channel), the 16 channels of a block are one vector, columns and channel blocks are
unrolled; the epilogue (bias, ReLU, residual add ...) is inlined into the tile's write-back;
the fused (n, oc-block, row) loop runs in parallel. The zero-padding stage stays a separate
vectorised pass so the inner loop has no bounds checks.

Convolutions with a k x k kernel (k > 1) whose weights for all input channels overflow L1
accumulate a whole output row instead (`_tile_conv_rows`): the row buffer is revisited once per
group of input-channel blocks whose weights fit in L1, so the weights of a pass stay in L1
while it walks the row (6 % less CPU time than streaming them from L2 under the load of this
shared machine, about even when it is quiet). 1x1 convolutions keep the register-only tile.
Rows or oc-blocks go outermost by which order moves fewer bytes (`stream_rows_outer`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from tvm import s_tir

from .conv_compute import CONV_BLOCK, DWCONV_BLOCK, PAD_BLOCK
from .tir_util import (
    block_name,
    inline_spatial_blocks,
    loop_extents,
    schedule_elementwise,
    top_blocks,
)

# Register budget: 32 zmm registers; accumulators oc_tile * ow_tile, plus weights and input.
MAX_ACCUMULATORS = 24
OW_TILES = (8, 7, 6, 5, 4)
L2_BYTES = 1 << 20  # what one thread may count on keeping in its 2 MiB L2


@dataclass(frozen=True)
class ConvTile:
    oc_tile: int  # packed output-channel blocks per tile
    ow_tile: int  # output columns per tile
    rows_outer: bool = False  # (n, row, oc-block) order instead of (n, oc-block, row)


def stream_rows_outer(weight_bytes: int, input_bytes: int, rows: int, oc_steps: int) -> bool:
    """Whether walking output rows outermost moves fewer bytes through the caches.

    Rows outermost streams the input once and all weights once per row (unless they stay in
    L2); oc-blocks outermost streams the weights once and the input once per oc step.
    """
    rows_outer = input_bytes + (weight_bytes if weight_bytes <= L2_BYTES else weight_bytes * rows)
    oc_outer = weight_bytes + (input_bytes if input_bytes <= L2_BYTES else input_bytes * oc_steps)
    return rows_outer < oc_outer


def _rows_outer_pays(ocb: int, oh: int, ow: int, tile: ConvTile, reduce_extents: list[int]) -> bool:
    # reduction axes: (icb, kh, kw, ici) for packed input, (ic, kh, kw) for plain input
    in_channels = math.prod(reduce_extents[:1] + reduce_extents[3:])
    taps = math.prod(reduce_extents[1:3])
    weight_bytes = 4 * ocb * 16 * in_channels * taps
    input_bytes = 4 * in_channels * oh * ow  # the output's footprint; the stride is not known here
    return stream_rows_outer(weight_bytes, input_bytes, oh, ocb // tile.oc_tile)


def choose_tile(ocb: int, ow: int, depthwise: bool) -> ConvTile:
    """Register tile: ow_tile columns (a divisor of the width, 8 if it can) by oc_tile channel
    blocks, enough blocks for about 16 independent accumulators (2 x 8 on wide maps; narrow
    deep maps take more channel blocks to hide the FMA latency)."""
    ow_tile = next((t for t in OW_TILES if ow % t == 0), None)
    if ow_tile is None:
        ow_tile = ow if ow < 8 else max(t for t in range(1, 9) if ow % t == 0)
    if depthwise:
        return ConvTile(1, 16 if ow % 16 == 0 else ow_tile)
    need = -(-16 // ow_tile)
    divisors = [d for d in range(1, min(ocb, 8) + 1)
                if ocb % d == 0 and d * ow_tile <= MAX_ACCUMULATORS]
    oc_tile = next((d for d in divisors if d >= need), divisors[-1])
    return ConvTile(oc_tile, ow_tile)


def find_conv_block(sch: s_tir.Schedule):
    """The single packed-conv block of a fused function, or None."""
    found = [b for b in top_blocks(sch) if block_name(sch, b).startswith((CONV_BLOCK, DWCONV_BLOCK))]
    return found[0] if len(found) == 1 else None


def schedule_conv_func(sch: s_tir.Schedule) -> str:
    """Schedule the conv-anchored function in `sch`; returns the conv kind scheduled.

    Raises ScheduleError (from TVM) or ValueError when the function is not of the expected
    shape; the caller then keeps the function unscheduled.
    """
    conv = find_conv_block(sch)
    if conv is None:
        raise ValueError("no unique packed conv block")
    depthwise = block_name(sch, conv).startswith(DWCONV_BLOCK)
    conv, epilogue, pads, out_shape, reduce_extents = conv_with_epilogue(sch, conv, PAD_BLOCK, "conv")
    _, ocb, oh, ow, _ = out_shape
    tile = choose_tile(ocb, ow, depthwise)
    rows_outer = depthwise or _rows_outer_pays(ocb, oh, ow, tile, reduce_extents)
    tile = dataclasses.replace(tile, rows_outer=rows_outer)
    rc_inner = _rc_inner(tile, reduce_extents) if len(reduce_extents) == 4 else reduce_extents[0]
    if ROW_ACCUMULATE and rc_inner < reduce_extents[0] and math.prod(reduce_extents[1:3]) > 1:
        _tile_conv_rows(sch, conv, epilogue, tile, reduce_extents, rc_inner)
    else:
        _tile_conv(sch, conv, epilogue, tile, reduce_extents)
    for pad in pads:
        schedule_elementwise(sch, pad)
    return "depthwise" if depthwise else "conv"


def conv_with_epilogue(sch: s_tir.Schedule, conv, pad_prefix: str, what: str):
    """Inline every spatial block but the conv and its padding stages, and find the epilogue:
    the one elementwise block over the conv's output (or a write-back cache when the conv
    writes the output itself). Returns (conv, epilogue, pads, out_shape, reduce_extents)."""
    conv_name = block_name(sch, conv)
    pads = [b for b in top_blocks(sch) if block_name(sch, b).startswith(pad_prefix)]
    keep = {conv_name, *(block_name(sch, p) for p in pads)}
    inline_spatial_blocks(sch, keep=keep)
    conv = sch.get_sblock(conv_name)
    out_shape = loop_extents(sch, conv)[:5]
    consumers = [b for b in top_blocks(sch) if block_name(sch, b) not in keep]
    if not consumers:
        epilogue = sch.cache_write(conv, 0, "global")
    elif len(consumers) == 1 and loop_extents(sch, consumers[0]) == out_shape:
        epilogue = consumers[0]
    else:
        raise ValueError(f"{what} epilogue is not one elementwise block: "
                         f"{[block_name(sch, b) for b in consumers]}")
    conv = sch.get_sblock(conv_name)
    return conv, epilogue, pads, out_shape, loop_extents(sch, conv)[5:]


def schedule_epilogue(sch: s_tir.Schedule, epilogue, outer) -> None:
    """The tile's write-back: the 16 channels one vector, the other tile loops unrolled; the
    fused outer loops run in parallel."""
    e_loops = sch.get_loops(epilogue)[-3:]
    sch.vectorize(e_loops[-1])
    for lp in e_loops[:-1]:
        if int(sch.get(lp).extent) > 1:
            sch.unroll(lp)
    sch.parallel(sch.fuse(*outer))


ROW_ACCUMULATE = True
L1_WEIGHT_BYTES = 24 << 10  # half of the 48 KiB L1D for the weights of one input-channel group


def _rc_inner(tile: ConvTile, reduce_extents: list[int]) -> int:
    """Input-channel blocks per pass over an output row: their weights for the tile's output
    blocks stay in L1 while the pass walks the row."""
    icb, kh, kw, _ = reduce_extents
    per_block = tile.oc_tile * kh * kw * 16 * 16 * 4
    fits = [d for d in range(1, icb + 1) if icb % d == 0 and d * per_block <= L1_WEIGHT_BYTES]
    return fits[-1] if fits else 1


def _tile_conv_rows(sch: s_tir.Schedule, conv, epilogue, tile: ConvTile,
                    reduce_extents: list[int], rc_inner: int) -> None:
    """Accumulate a whole output row in a row buffer, rc_inner input blocks per pass."""
    n, ob, oh, ow, oi = sch.get_loops(epilogue)
    ob_o, ob_i = sch.split(ob, [None, tile.oc_tile])
    ow_o, ow_i = sch.split(ow, [None, tile.ow_tile])
    outer = (n, oh, ob_o) if tile.rows_outer else (n, ob_o, oh)
    sch.reorder(*outer, ow_o, ob_i, ow_i, oi)
    sch.compute_at(conv, outer[-1])
    sch.set_scope(conv, 0, "local")

    ow_total = int(sch.get(ow_o).extent) * tile.ow_tile
    spatial_ext = [tile.oc_tile, ow_total, 16]
    spatial_roles = [r for r, e in zip(("ob", "ow", "oi"), spatial_ext, strict=True) if e > 1]
    reduce_roles = [f"r{k}" for k, e in enumerate(reduce_extents) if e > 1]
    inner = sch.get_loops(conv)[3:]  # below the three outer loops
    expected = [e for e in spatial_ext if e > 1] + [e for e in reduce_extents if e > 1]
    got = [int(sch.get(lp).extent) for lp in inner]
    if got != expected or "ow" not in spatial_roles or "r0" not in reduce_roles:
        raise ValueError(f"unexpected conv row loops {got}, wanted {expected}")
    roles = dict(zip(spatial_roles + reduce_roles, inner, strict=True))
    cw_o, cw_i = sch.split(roles["ow"], [None, tile.ow_tile])
    rc_o, rc_i = sch.split(roles["r0"], [None, rc_inner])
    order = [rc_o, cw_o, rc_i, *(roles[r] for r in reduce_roles[1:])]
    order += [roles["ob"]] if "ob" in roles else []
    order += [cw_i, roles["oi"]]
    sch.reorder(*order)
    sch.vectorize(roles["oi"])
    sch.unroll(cw_i)
    if "ob" in roles:
        sch.unroll(roles["ob"])

    schedule_epilogue(sch, epilogue, outer)
    sch.decompose_reduction(conv, rc_o)


def _tile_conv(sch: s_tir.Schedule, conv, epilogue, tile: ConvTile,
               reduce_extents: list[int]) -> None:
    n, ob, oh, ow, oi = sch.get_loops(epilogue)
    ob_o, ob_i = sch.split(ob, [None, tile.oc_tile])
    ow_o, ow_i = sch.split(ow, [None, tile.ow_tile])
    outer = (n, oh, ob_o) if tile.rows_outer else (n, ob_o, oh)
    sch.reorder(*outer, ow_o, ob_i, ow_i, oi)
    sch.compute_at(conv, ow_o)
    sch.set_scope(conv, 0, "local")

    # compute_at made one loop per block iter var whose extent in the tile is > 1, in order.
    spatial_ext = [tile.oc_tile, tile.ow_tile, 16]
    spatial_roles = [r for r, e in zip(("ob", "ow", "oi"), spatial_ext, strict=True) if e > 1]
    reduce_roles = [f"r{k}" for k, e in enumerate(reduce_extents) if e > 1]
    inner = sch.get_loops(conv)[4:]  # below n, ob_o, oh, ow_o
    expected = [e for e in spatial_ext if e > 1] + [e for e in reduce_extents if e > 1]
    got = [int(sch.get(lp).extent) for lp in inner]
    if got != expected:
        raise ValueError(f"unexpected conv tile loops {got}, wanted {expected}")
    roles = dict(zip(spatial_roles + reduce_roles, inner, strict=True))
    order = [roles[r] for r in reduce_roles] + [roles[r] for r in spatial_roles]
    sch.reorder(*order)
    sch.vectorize(roles["oi"])
    for r in ("ob", "ow"):
        if r in roles:
            sch.unroll(roles[r])

    schedule_epilogue(sch, epilogue, outer)
    # Last: parallel/vectorize refuse a loop nest that holds a separate init block.
    if reduce_roles:
        sch.decompose_reduction(conv, roles[reduce_roles[0]])
