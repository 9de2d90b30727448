"""ONNX -> graph IR.

One handler per ONNX op type (the `IMPORTERS` table). Handlers normalise: static operands
that ONNX passes as tensors (Reshape's shape, Slice's starts, Clip's bounds, Resize's sizes...)
become attributes, Flatten/Squeeze/Unsqueeze become Reshape, Upsample becomes Resize, Gemm
becomes MatMul + Add. A node whose inputs are all constants is evaluated (onnx's reference
evaluator) and becomes a constant: that folds the shape arithmetic of traced models whatever
ops it uses. Every op left unsupported is listed in one error.

The package: `table` (the `IMPORTERS` table, `@importer`, `ImportContext`, shared attribute
helpers), one module per op family (`conv`, `elementwise`, `movement`, `pooling`, `resize`,
`linear`), each registering its handlers when imported, and here the constant folding and the
driver (`import_onnx_model`, `load_model`). Importing the package imports every family.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from vcc.errors import VccError
from vcc.frontends.onnx_eval import evaluate_onnx_node
from vcc.frontends.onnx_load import fix_input_shapes, load_onnx_file, prepare
from vcc.frontends.onnx_validate import validate_model
from vcc.ir.graph import Graph
from vcc.ir.verify import verify_graph

# the op families: importing them fills IMPORTERS
from . import conv, elementwise, linear, movement, pooling, resize  # noqa: F401
from .table import IMPORTERS, Handler, ImportContext, importer, node_attrs

__all__ = ["IMPORTERS", "Handler", "ImportContext", "import_onnx_model", "importer", "load_model"]


# --- folding of constant subgraphs ----------------------------------------------------------------

def _fold_shape(ctx: ImportContext, node: onnx.NodeProto, a: dict) -> bool:
    """Shape and Size of a statically shaped value are constants."""
    if node.op_type not in ("Shape", "Size") or node.input[0] not in ctx.graph.values:
        return False
    shape = ctx.graph.shape(node.input[0])
    if node.op_type == "Size":
        value = np.asarray(int(np.prod(shape)), dtype=np.int64)
    else:
        start, end = int(a.get("start", 0)), a.get("end")
        value = np.asarray(shape[start:end if end is None else int(end)], dtype=np.int64)
    ctx.graph.add_constant(node.output[0], value)
    return True


def _fold_constant_node(ctx: ImportContext, node: onnx.NodeProto) -> bool:
    """Evaluate a node whose inputs are all constants (shape arithmetic) into constants."""
    if node.op_type in ("Dropout",) or any(i and i not in ctx.graph.constants for i in node.input):
        return False
    if node.domain not in ("", "ai.onnx"):
        return False
    feeds = {i: ctx.graph.constants[i] for i in node.input if i}
    try:
        results = evaluate_onnx_node(node, feeds, ctx.opset)
    except Exception:
        return False
    for name, val in zip(node.output, results, strict=False):
        if name:
            ctx.graph.add_constant(name, np.asarray(val))
    return True


# --- driver -----------------------------------------------------------------------------------------

def _value_types(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...] | None, str]]:
    types = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        if not tt.elem_type:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        shape = tuple(dims) if tt.HasField("shape") and all(d is not None for d in dims) else None
        types[vi.name] = (shape, dtype)
    return types


def import_onnx_model(model: onnx.ModelProto, source: str = "<model>") -> Graph:
    """Convert a simplified, shape-inferred ONNX model into the IR (no passes run)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    g = Graph(name=model.graph.name or Path(source).stem)
    g.metadata = {p.key: p.value for p in model.metadata_props}
    ctx = ImportContext(g, source, opset, _value_types(model))

    for init in model.graph.initializer:
        g.add_constant(init.name, numpy_helper.to_array(init).copy())
    for inp in model.graph.input:
        if inp.name in g.constants:
            continue
        shape, dtype = ctx.shapes.get(inp.name, (None, "float32"))
        if shape is None:
            raise VccError(f"{source}: input {inp.name!r} has no static shape")
        g.add_value(inp.name, shape, dtype)
        g.inputs.append(inp.name)

    for node in model.graph.node:
        a = node_attrs(node)
        if node.op_type == "Constant":
            g.add_constant(node.output[0], numpy_helper.to_array(a["value"]) if "value" in a
                           else _constant_from_attr(a, node, source))
            continue
        if _fold_shape(ctx, node, a) or _fold_constant_node(ctx, node):
            continue
        handler = IMPORTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if handler is None:
            ctx.unsupported.append((node.op_type if not node.domain else f"{node.domain}.{node.op_type}",
                                    node.name or node.output[0]))
            for k, out in enumerate(node.output):
                if out and out in ctx.shapes and ctx.shapes[out][0] is not None:
                    ctx.declare_output(node, k)
            continue
        try:
            handler(ctx, node, a)
        except VccError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError, OverflowError) as e:
            raise VccError(f"{source}: node {node.name or node.output[0]!r} ({node.op_type}): "
                           f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else 'invalid'}") from e

    if ctx.unsupported:
        by_op: dict[str, list[str]] = {}
        for op, name in ctx.unsupported:
            by_op.setdefault(op, []).append(name)
        listing = "; ".join(f"{op} ({len(ns)}x: {', '.join(ns[:5])}{', ...' if len(ns) > 5 else ''})"
                            for op, ns in sorted(by_op.items()))
        raise VccError(f"{source}: unsupported ONNX op types: {listing}")

    for out in model.graph.output:
        if out.name in g.constants and out.name not in g.outputs:
            raise VccError(f"{source}: graph output {out.name!r} is a constant; nothing to compile")
        g.outputs.append(out.name)
    _drop_unused_constants(g)
    verify_graph(g)
    return g


def _constant_from_attr(a: dict, node: onnx.NodeProto, source: str) -> np.ndarray:
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    raise VccError(f"{source}: Constant node {node.name!r} has an unsupported value attribute {list(a)}")


def _drop_unused_constants(g: Graph) -> None:
    used = {i for n in g.nodes for i in n.inputs} | set(g.outputs)
    for name in [c for c in g.constants if c not in used]:
        del g.constants[name]
        del g.values[name]
    # values of folded nodes no longer exist anywhere
    defined = set(g.inputs) | set(g.constants) | {o for n in g.nodes for o in n.outputs}
    for name in [v for v in g.values if v not in defined]:
        del g.values[name]


def load_model(path: str | os.PathLike, input_shape: Sequence[int] | None = None) -> Graph:
    """Read an ONNX file into the IR: validate, fix input shapes, onnxsim, shape inference, import."""
    source = str(path)
    model = load_onnx_file(path)
    fix_input_shapes(model, input_shape, source)
    validate_model(model, source)  # before onnxsim or any other third-party code sees it
    model = prepare(model, source)
    return import_onnx_model(model, source)
