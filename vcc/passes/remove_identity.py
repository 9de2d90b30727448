"""Remove Identity and (inference-mode) Dropout nodes."""

from __future__ import annotations

from vcc.ir.graph import Graph

NO_OPS = ("Identity", "Dropout")


def remove_identity(graph: Graph) -> Graph:
    """Drop every Identity/Dropout, pointing its consumers at its input.

    When the node's output is a graph output, the graph output keeps its name: the node's
    producer is renamed instead unless the input is itself a graph input or constant, in which
    case the node stays (a graph must not return its input under another name)."""
    g = graph.copy()
    keep = []
    for n in g.nodes:
        if n.op not in NO_OPS:
            keep.append(n)
            continue
        src, dst = n.inputs[0], n.outputs[0]
        if dst in g.outputs:
            if src in g.inputs or src in g.constants or src in g.outputs:
                keep.append(n)
                continue
            _rename_value(g, src, dst)
        else:
            g.replace_uses(dst, src)
            del g.values[dst]
    g.nodes = keep
    return g


def _rename_value(g: Graph, old: str, new: str) -> None:
    """Make the producer of `old` produce `new` (which the removed no-op used to define)."""
    for n in g.nodes:
        n.outputs = [new if o == old else o for o in n.outputs]
        n.inputs = [new if i == old else i for i in n.inputs]
    g.values[new].shape = g.values[old].shape
    del g.values[old]
