"""Read-only analyses of the IR: MAC counts, parameter counts, op histograms."""

from __future__ import annotations

import numpy as np

from vcc.ir.graph import Graph, Node


def node_macs(g: Graph, n: Node) -> int:
    """Multiply-accumulates of one node (convolutions and matrix products; 0 for the rest)."""
    if n.op == "Conv":
        w = g.shape(n.inputs[1])
        return int(np.prod(g.shape(n.outputs[0]))) * int(np.prod(w[1:]))
    if n.op == "ConvTranspose":
        w = g.shape(n.inputs[1])  # (C_in, C_out / group, kh, kw)
        return int(np.prod(g.shape(n.inputs[0]))) * int(np.prod(w[1:]))
    if n.op == "MatMul":
        k = g.shape(n.inputs[0])[-1]
        return int(np.prod(g.shape(n.outputs[0]))) * int(k)
    return 0


def count_macs(g: Graph) -> int:
    return sum(node_macs(g, n) for n in g.nodes)


def macs_by_op(g: Graph) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in g.nodes:
        m = node_macs(g, n)
        if m:
            out[n.op] = out.get(n.op, 0) + m
    return out
