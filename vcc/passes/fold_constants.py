"""Constant folding."""

from __future__ import annotations

from vcc.frontends.onnx_eval import evaluate_onnx_nodes
from vcc.frontends.onnx_export import EXPORT_OPSET, export_nodes
from vcc.ir.graph import Graph


def fold_constants(graph: Graph) -> Graph:
    """Evaluate every node whose inputs are all constants and replace its outputs by constants.

    Evaluation goes through the node's ONNX form and onnx's reference evaluator, so folding
    has exactly ONNX's semantics for every op the IR has. Graph outputs are never folded away
    (a compiled model must compute something)."""
    g = graph.copy()
    kept = []
    for n in g.nodes:
        foldable = (n.inputs and all((not i) or i in g.constants for i in n.inputs)
                    and not any(o in g.outputs for o in n.outputs))
        if not foldable:
            kept.append(n)
            continue
        onnx_nodes, inits = export_nodes(g, [n])
        feeds = {i: g.constants[i] for i in n.inputs if i}
        from onnx import numpy_helper

        feeds.update({t.name: numpy_helper.to_array(t) for t in inits})
        results = evaluate_onnx_nodes(onnx_nodes, feeds, n.outputs, EXPORT_OPSET)
        for name, arr in zip(n.outputs, results, strict=True):
            g.constants[name] = arr.astype(g.values[name].dtype, copy=False)
    g.nodes = kept
    return g
