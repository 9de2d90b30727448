"""IR verifier: the invariants every pass must keep.

- every value is defined exactly once (a graph input, a constant or one node output);
- every node input and every graph output refers to a defined value;
- every value has a known static shape and dtype;
- the graph has no cycle, and `nodes` is in topological order;
- node names are unique;
- every block's member nodes exist, and a node is in at most one block of a kind.
"""

from __future__ import annotations

from vcc.errors import VccError
from vcc.ir.graph import Graph


class IRVerificationError(VccError):
    """The IR broke an invariant: a bug in an importer or a pass, or a model the importer let
    through (a graph with no outputs, say); a VccError, so the CLI reports it in one line."""


def verify_graph(g: Graph) -> None:
    problems: list[str] = []
    defined: dict[str, str] = {}

    def define(name: str, by: str) -> None:
        if name in defined:
            problems.append(f"value {name!r} defined twice ({defined[name]} and {by})")
        defined[name] = by

    for i in g.inputs:
        define(i, "graph input")
    for c in g.constants:
        define(c, "constant")
    node_names: set[str] = set()
    for n in g.nodes:
        if n.name in node_names:
            problems.append(f"node name {n.name!r} used twice")
        node_names.add(n.name)
        for o in n.outputs:
            define(o, f"node {n.name}")

    for name in defined:
        v = g.values.get(name)
        if v is None:
            problems.append(f"value {name!r} has no type (shape/dtype)")
        elif any((not isinstance(d, int)) or d < 0 for d in v.shape):
            problems.append(f"value {name!r} has a non-static shape {v.shape}")

    seen = set(g.inputs) | set(g.constants)
    out_of_order: list[str] = []
    for n in g.nodes:
        for i in n.inputs:
            if not i:
                continue
            if i not in defined:
                problems.append(f"node {n.name} ({n.op}) reads undefined value {i!r}")
            elif i not in seen:
                out_of_order.append(n.name)
        seen.update(n.outputs)
    if out_of_order:
        if _has_cycle(g):
            problems.append("the graph has a cycle")
        else:
            problems.append(f"nodes not in topological order, first: {out_of_order[0]}")

    for o in g.outputs:
        if o not in defined:
            problems.append(f"graph output {o!r} is not defined")
    if not g.outputs:
        problems.append("the graph has no outputs")

    problems += _block_problems(g, node_names)

    if problems:
        head = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise IRVerificationError(f"IR of {g.name!r} is invalid: {head}{more}")


def _block_problems(g: Graph, node_names: set[str]) -> list[str]:
    problems: list[str] = []
    owner: dict[tuple[str, str], str] = {}
    for b in g.blocks:
        missing = [n for n in b.nodes if n not in node_names]
        if missing:
            problems.append(f"block {b.name!r} names missing node(s) {missing[:3]}")
        for n in b.nodes:
            other = owner.setdefault((b.kind, n), b.name)
            if other != b.name:
                problems.append(f"node {n!r} is in two {b.kind} blocks ({other} and {b.name})")
    return problems


def _has_cycle(g: Graph) -> bool:
    producers = g.producers()
    indeg = {n.name: 0 for n in g.nodes}
    succ: dict[str, list[str]] = {n.name: [] for n in g.nodes}
    for n in g.nodes:
        for i in n.inputs:
            p = producers.get(i)
            if p is not None:
                indeg[n.name] += 1
                succ[p.name].append(n.name)
    ready = [k for k, d in indeg.items() if d == 0]
    visited = 0
    while ready:
        k = ready.pop()
        visited += 1
        for s in succ[k]:
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    return visited != len(g.nodes)


def toposort(g: Graph) -> None:
    """Reorder g.nodes topologically (stable: keeps the current order where it can)."""
    producers = g.producers()
    order: list = []
    state: dict[str, int] = {}
    by_name = {n.name: n for n in g.nodes}

    for root in g.nodes:
        stack = [(root, False)]
        while stack:
            n, done = stack.pop()
            if done:
                if state.get(n.name) != 2:
                    state[n.name] = 2
                    order.append(n)
                continue
            if state.get(n.name):
                continue
            state[n.name] = 1
            stack.append((n, True))
            for i in reversed(n.inputs):
                p = producers.get(i)
                if p is not None and not state.get(p.name):
                    stack.append((by_name[p.name], False))
    g.nodes = order
