"""Dead-code elimination."""

from __future__ import annotations

from vcc.ir.graph import Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    """Remove nodes none of whose outputs reach a graph output, then unused constants and values."""
    g = graph.copy()
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(i for i in n.inputs if i)
    g.nodes = kept[::-1]
    for c in [c for c in g.constants if c not in live]:
        del g.constants[c]
    defined = set(g.inputs) | set(g.constants) | {o for n in g.nodes for o in n.outputs}
    for v in [v for v in g.values if v not in defined]:
        del g.values[v]
    return g
