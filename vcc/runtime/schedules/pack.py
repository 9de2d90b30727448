"""Channel packing: NCHW -> NCHW16c for the whole graph, decided once.

`pack_channels(mod)` rewrites "main" so that every convolution whose channels allow it runs in a
packed form (see conv_compute.py) with its weights re-laid out in numpy (no layout op left to
fold), and the packed layout flows through the ops that can take it (elementwise with
broadcasting, resize, pooling, concat / split / slice on whole 16-blocks, global mean/max, pad).
A value is converted (nchw_to_nchwc / nchwc_to_nchw) only where a consumer needs the other layout, at most
once per value and direction; the function's inputs and outputs stay NCHW.

One rule per op in `RULES`; an op without a rule gets plain (NCHW) inputs and is left as is.

This module drives the rewrite (`pack_channels`); pack_core.py holds the `Packer` and the
registry, pack_conv.py the convolution rules, pack_ops.py the rules for the other ops.
"""

from __future__ import annotations

import tvm
from tvm import relax

from vcc.errors import VccError

from . import pack_conv, pack_ops  # noqa: F401  (their @rule functions fill RULES)
from .pack_core import PLAIN, RULES, Packer, Value


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
