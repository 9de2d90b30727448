"""optimize_for_cpu: high-level Relax module -> fused, hand-scheduled module for this CPU.

    pack_channels            NCHW16c chosen once for the whole graph, weights re-laid in numpy,
                             stride-s transposed convs as s*s phase convs, int8 convs
                             (u8/s8 x s8 -> s32) as VNNI-packed convs (int8_conv.py)
    LegalizeOps              our TE computes for the packed convolutions, separable bilinear
                             upsampling and division by a constant (divide.py), TOPI for the rest
    AnnotateTIROpPattern, FoldConstant, FuseOps, FuseTIR
                             conv + bias + ReLU (+ residual add ...) become one PrimFunc
    per fused PrimFunc       VNNI-tensorized schedule if it holds an int8 packed conv,
                             conv-tiled schedule if it holds a packed conv, else our generic
                             injective / reduction schedule, else DLight's CPU rules, else none

The result goes to `tvm.compile(mod, target)` unchanged: its Relax passes find nothing left to
legalize, and each scheduled PrimFunc carries "tirx.is_scheduled".
"""

from __future__ import annotations

import dataclasses
import math

import tvm
from tvm import relax, s_tir, tirx

from vcc.errors import VccError
from vcc.runtime import codegen  # noqa: F401  (registers tirx.nearbyint as vectorizable: the epilogues)

from .conv_compute import legalize_packed_conv2d
from .conv_schedule import find_conv_block, schedule_conv_func
from .divide import legalize_divide
from .generic_schedule import schedule_generic_func
from .int8_conv import dw_lane_taps
from .int8_schedule import find_qconv_block, schedule_int8_conv_func
from .pack import pack_channels, relax_entries
from .report import FuncRecord, ScheduleReport
from .resize_compute import legalize_resize2d
from .tir_util import block_name, loop_extents, top_blocks
from .vnni_intrin import has_vnni

SCHEDULED_ATTR = "tirx.is_scheduled"
_SCHEDULE_ERRORS = (RuntimeError, ValueError)
LEGALIZE_MAP = {"relax.nn.conv2d": legalize_packed_conv2d,
                "relax.image.resize2d": legalize_resize2d,
                "relax.divide": legalize_divide}


def optimize_for_cpu(mod: tvm.IRModule, target: tvm.target.Target | dict
                     ) -> tuple[tvm.IRModule, ScheduleReport]:
    """Return (module ready for `tvm.compile(module, target)`, what was scheduled and how).

    `mod` holds a Relax function "main" of high-level ops (NCHW float32, static shapes, weights
    bound as constants), as `vcc.runtime.lower.lower_to_relax` builds it. Numerics match the
    unoptimised module to float32 rounding (reductions are reordered); integer convolutions
    (int8 builds) are exact, so int8 builds match bit for bit. The int8 VNNI packing needs a
    target with AVX512-VNNI (`vnni_intrin.has_vnni`); elsewhere int8 convs keep the generic schedule.
    """
    target = target if isinstance(target, tvm.target.Target) else tvm.target.Target(target)
    if target.kind.name != "llvm":
        raise VccError(f"optimize_for_cpu: target kind {target.kind.name!r} is not a CPU (llvm)")
    packed, counts = pack_channels(mod, int8_vnni=has_vnni(target))
    with target:
        fused = tvm.transform.Sequential([
            relax.transform.LegalizeOps(customize_legalize_map=LEGALIZE_MAP),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(relax_entries(packed)),
        ])(packed)
    report = ScheduleReport(layout=counts)
    calls = call_counts(fused["main"])
    for gv, func in list(fused.functions.items()):
        if not isinstance(func, tirx.PrimFunc):
            continue
        new_func, record = schedule_function(gv.name_hint, func, target)
        fused[gv] = new_func
        report.functions.append(dataclasses.replace(record, calls=calls.get(gv.name_hint, 0)))
    return fused, report


def call_counts(main: relax.Function) -> dict[str, int]:
    """How often "main" calls each PrimFunc (call_tir sites)."""
    counts: dict[str, int] = {}
    for block in main.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) \
                    and value.op.name == "relax.call_tir":
                name = value.args[0].name_hint
                counts[name] = counts.get(name, 0) + 1
    return counts


def conv_macs(func: tirx.PrimFunc, name: str = "") -> int:
    """Multiply-accumulates of the convolutions in `func`: its reduction blocks named "conv..."
    (ours, TOPI's), or all of them when the function's name says it is a convolution (TOPI's
    conv2d_transpose calls its block "compute")."""
    sch = s_tir.Schedule(func)
    total = 0
    for block in top_blocks(sch):
        if not any(int(iv.iter_type) != 0 for iv in sch.get(block).iter_vars):
            continue
        bname = block_name(sch, block)
        if "conv" in bname or "conv" in name:
            total += math.prod(loop_extents(sch, block)) * dw_lane_taps(bname)
    return total


def schedule_function(name: str, func: tirx.PrimFunc, target: tvm.target.Target
                      ) -> tuple[tirx.PrimFunc, FuncRecord]:
    """One fused PrimFunc -> (scheduled PrimFunc, its report line)."""
    kind = name.removeprefix("fused_")
    macs = conv_macs(func, name)
    notes = []
    attempts = []
    if find_qconv_block(s_tir.Schedule(func)) is not None:
        attempts.append(schedule_int8_conv_func)
    elif find_conv_block(s_tir.Schedule(func)) is not None:
        attempts.append(schedule_conv_func)
    attempts.append(schedule_generic_func)
    for attempt in attempts:
        sch = s_tir.Schedule(func)
        try:
            how = attempt(sch)
        except _SCHEDULE_ERRORS as err:
            notes.append(f"{attempt.__name__}: {_first_line(err)}")
            continue
        scheduled = sch.mod["main"].with_attr(SCHEDULED_ATTR, True)
        return scheduled, FuncRecord(name, kind, how, macs, "; ".join(notes))
    dlight = _apply_dlight(func, target)
    if dlight is not None:
        return dlight, FuncRecord(name, kind, "dlight", macs, "; ".join(notes))
    return func, FuncRecord(name, kind, "default", macs, "; ".join(notes))


def _apply_dlight(func: tirx.PrimFunc, target: tvm.target.Target) -> tirx.PrimFunc | None:
    from tvm.s_tir import dlight

    for rule in (dlight.cpu.Reduction(), dlight.cpu.GEMV()):
        try:
            with target:
                space = rule.apply(func, target, False)
        except _SCHEDULE_ERRORS:
            continue
        if space is None:
            continue
        sch = space[0] if isinstance(space, list) else space
        return sch.mod["main"].with_attr(SCHEDULED_ATTR, True)
    return None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    msg = next((ln for ln in text if "rror" in ln), text[0] if text else type(err).__name__)
    return msg[:200]


__all__ = ["optimize_for_cpu", "schedule_function", "conv_macs", "call_counts", "LEGALIZE_MAP"]
