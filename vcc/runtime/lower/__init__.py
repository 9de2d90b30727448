"""Graph IR -> TVM Relax.

One lowering per IR op in the `LOWERINGS` table, each turning a node into high-level Relax
ops (nn.conv2d, image.resize2d, ...). Weights are bound as constants so that layout changes
of the CPU schedules fold at compile time. The function is "main", inputs in the IR's order.

The package: `table` (the `LOWERINGS` table, `@lowering`, `LowerContext`), `int8` (integer
operands and the requantize machinery), one module per op family (`compute`, `elementwise`,
`movement`, `pooling`, `qdq`), each registering its lowerings when imported, and here the driver
`lower_to_relax`. Importing the package imports every family, so the table is complete.
"""

from __future__ import annotations

import re

import tvm
from tvm import relax

from vcc.errors import VccError
from vcc.ir.graph import Graph

# the op families: importing them fills LOWERINGS
from . import compute, elementwise, movement, pooling, qdq  # noqa: F401
from .int8 import IntegerOperands, integer_operands
from .table import LOWERINGS, LowerContext, Lowering, R, Rescaled, lowering

__all__ = ["LOWERINGS", "IntegerOperands", "LowerContext", "Lowering", "R", "Rescaled", "integer_operands",
           "lower_to_relax", "lowering", "unsupported_ops"]


# --- driver -----------------------------------------------------------------------------------------

def _hint(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "v"
    return s if not s[0].isdigit() else f"v{s}"


def unsupported_ops(graph: Graph) -> dict[str, list[str]]:
    missing: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.op not in LOWERINGS:
            missing.setdefault(n.op, []).append(n.name)
    return missing


def lower_to_relax(graph: Graph, fold_requantize: bool = True) -> tvm.IRModule:
    """The IR as a Relax IRModule with one function "main" (high-level ops, weights as constants).

    `fold_requantize`: a QuantizeLinear of an integer conv / matmul's rescaled result, of a
    dequantized activation or of a residual Add of those (through ReLU / Clip) requantizes the
    integers with one multiplier each (`_requantize`: within one quantization step of the QDQ
    graph, as ONNX Runtime runs it); False keeps QuantizeLinear's own definition, round(x / s)
    of the float value, bit for bit.
    """
    missing = unsupported_ops(graph)
    if missing:
        listing = "; ".join(f"{op} ({', '.join(ns[:5])})" for op, ns in sorted(missing.items()))
        raise VccError(f"no TVM lowering for op types: {listing}")
    bb = relax.BlockBuilder()
    params = [relax.Var(_hint(i), relax.TensorType(list(graph.shape(i)), graph.values[i].dtype))
              for i in graph.inputs]
    with bb.function("main", params):
        with bb.dataflow():
            cx = LowerContext(graph, bb, fold_requantize)
            for name, p in zip(graph.inputs, params, strict=True):
                cx.env[name] = p
            for node in graph.nodes:
                try:
                    result = LOWERINGS[node.op](cx, node)
                except Exception as e:
                    raise VccError(f"lowering node {node.name!r} ({node.op}) to TVM failed: {e}") from e
                results = result if isinstance(result, list) else [result]
                for out, expr in zip(node.outputs, results, strict=True):
                    cx.env[out] = bb.emit(expr, name_hint=_hint(out))
            outs = [cx.arg(o) for o in graph.outputs]
            gv = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(gv)
    return bb.get()
