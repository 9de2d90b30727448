"""Small helpers over `tvm.s_tir.Schedule` shared by the hand schedules."""

from __future__ import annotations

from tvm import s_tir

VECTOR_LANES = 16  # fp32 lanes of one AVX-512 register
PARALLEL_GRAIN = 64  # enough outer iterations to balance 2 threads with static chunks
DATA_PAR = 0  # IterVar kind of a spatial axis


def top_blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def block_name(sch: s_tir.Schedule, block) -> str:
    return str(sch.get(block).name_hint)


def loop_extents(sch: s_tir.Schedule, block) -> list[int]:
    return [int(sch.get(lp).extent) for lp in sch.get_loops(block)]


def is_spatial(sch: s_tir.Schedule, block) -> bool:
    return all(int(iv.iter_type) == DATA_PAR for iv in sch.get(block).iter_vars)


def output_blocks(sch: s_tir.Schedule) -> list[str]:
    return [block_name(sch, b) for b in sch.get_output_blocks(sch.get_sblock("root"))]


def inline_spatial_blocks(sch: s_tir.Schedule, keep: set[str],
                          keep_prefixes: tuple[str, ...] = ()) -> None:
    """Inline every spatial, non-output block not named in `keep` into its consumers.

    A block that feeds a kept block directly stays materialised: inlining it into a reduction
    would recompute it once per reduction step. Blocks whose names start with one of
    `keep_prefixes` are kept too (stages that exist to be materialised).
    """
    outputs = set(output_blocks(sch))
    changed = True
    while changed:
        changed = False
        for block in top_blocks(sch):
            name = block_name(sch, block)
            if name in keep or name in outputs or not is_spatial(sch, block) \
                    or name.startswith(keep_prefixes):
                continue
            consumers = {block_name(sch, c) for c in sch.get_consumers(block)}
            if consumers & keep:
                continue
            try:
                sch.compute_inline(block)
            except s_tir.ScheduleError:
                continue
            changed = True
            break


def parallel_outer(sch: s_tir.Schedule, loops: list) -> None:
    """Fuse leading loops until there are PARALLEL_GRAIN iterations, then parallelise them."""
    if not loops:
        return
    extents = [int(sch.get(lp).extent) for lp in loops]
    count, prod = 0, 1
    for e in extents:
        count += 1
        prod *= e
        if prod >= PARALLEL_GRAIN:
            break
    outer = sch.fuse(*loops[:count]) if count > 1 else loops[0]
    if prod > 1:
        sch.parallel(outer)


def schedule_elementwise(sch: s_tir.Schedule, block) -> None:
    """Parallel outer loops, the innermost loop vectorised in 16-lane pieces when it divides."""
    loops = sch.get_loops(block)
    if not loops:
        return
    last = int(sch.get(loops[-1]).extent)
    outer = list(loops[:-1])
    if last % VECTOR_LANES == 0 and last > VECTOR_LANES:
        lo, li = sch.split(loops[-1], [None, VECTOR_LANES])
        sch.vectorize(li)
        outer.append(lo)
    elif last <= VECTOR_LANES and last > 1:
        sch.vectorize(loops[-1])
    else:
        outer.append(loops[-1])
    parallel_outer(sch, outer)
