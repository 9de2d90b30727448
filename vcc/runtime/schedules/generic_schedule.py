"""Schedules for the fused functions without a convolution.

Injective functions (elementwise, broadcast, layout transforms, resize, concat, pad): every
intermediate block is inlined and each remaining block gets parallel outer loops and a
16-lane vectorised inner loop. Reductions (pooling, global mean / max, softmax, argmax): the
reduction loops move inside the spatial ones but outside the innermost spatial piece, which
is vectorised (the 16 channels of a packed block, or 16 columns of a plain row), so a vector
of independent outputs accumulates at once.
"""

from __future__ import annotations

from tvm import s_tir

from .resize_compute import RESIZE_ROWS
from .tir_util import (
    VECTOR_LANES,
    block_name,
    inline_spatial_blocks,
    is_spatial,
    parallel_outer,
    schedule_elementwise,
    top_blocks,
)

REDUCE = 2  # IterVar kind of a reduction axis


def schedule_generic_func(sch: s_tir.Schedule) -> str:
    """Schedule a conv-free fused function; returns "injective" or "reduction"."""
    inline_spatial_blocks(sch, keep=set(), keep_prefixes=(RESIZE_ROWS,))
    kinds = []
    for block in top_blocks(sch):
        name = block_name(sch, block)
        if is_spatial(sch, block):
            schedule_elementwise(sch, sch.get_sblock(name))
            kinds.append("injective")
        else:
            schedule_reduction_block(sch, sch.get_sblock(name))
            kinds.append("reduction")
    return "reduction" if "reduction" in kinds else "injective"


def schedule_reduction_block(sch: s_tir.Schedule, block) -> None:
    """(spatial..., reduce..., vector) order, parallel spatial prefix, reduction decomposed."""
    loops = sch.get_loops(block)
    iters = sch.get(block).iter_vars
    if len(loops) != len(iters):
        raise ValueError("reduction block loops do not map one to one to its axes")
    kinds = [int(iv.iter_type) for iv in iters]
    if any(k not in (0, REDUCE) for k in kinds):
        raise ValueError("reduction block has an axis that is neither spatial nor reduce")
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == 0]
    reduce = [lp for lp, k in zip(loops, kinds, strict=True) if k == REDUCE]
    vec = None
    if spatial:
        last = int(sch.get(spatial[-1]).extent)
        if last % VECTOR_LANES == 0:
            if last > VECTOR_LANES:
                outer, vec = sch.split(spatial[-1], [None, VECTOR_LANES])
                spatial = [*spatial[:-1], outer]
            else:
                vec = spatial[-1]
                spatial = spatial[:-1]
    sch.reorder(*spatial, *reduce, *([vec] if vec is not None else []))
    if vec is not None:
        sch.vectorize(vec)
    parallel_outer(sch, spatial)
    if reduce:
        sch.decompose_reduction(sch.get_sblock(block_name(sch, block)), reduce[0])
