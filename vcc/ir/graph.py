"""The graph IR: values, nodes, constants and a graph, plain Python.

Op types and attribute names follow ONNX, normalised so that everything static is an
attribute: a Reshape carries its full target shape, a Slice its starts/ends/axes/steps, a
Resize its output size, a Clip its bounds. Shapes are static; every value has one.
A node input of "" is an absent optional input.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Shape = tuple[int, ...]


@dataclass
class Value:
    name: str
    shape: Shape
    dtype: str  # numpy dtype name: "float32", "int64", ...

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{'x'.join(map(str, self.shape))}]"


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(self.attrs.items()))
        attrs = f" {{{attrs}}}" if attrs else ""
        return f"{', '.join(self.outputs)} = {self.op}({', '.join(self.inputs)}){attrs}  # {self.name}"


def _fmt_attr(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt_attr(x) for x in v) + "]"
    return str(v)


@dataclass(frozen=True)
class Block:
    """A recognised architectural block (see vcc.passes.blocks): a group of nodes treated as
    one unit. `entries` are the values it reads from outside, `exits` the values it hands on."""

    kind: str  # "arm", "ffm", "aspp", "hr_fusion", "residual", "ppm"
    name: str
    nodes: tuple[str, ...]
    entries: tuple[str, ...] = ()
    exits: tuple[str, ...] = ()


@dataclass
class Graph:
    """A dataflow graph. `values` holds the type of every tensor: graph inputs, constants and
    node outputs. `nodes` is kept in a topological order by every pass."""

    name: str = "graph"
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    # Blocks found by the annotate_blocks pass; a block whose member nodes vanish is dropped
    # (PassManager prunes after every pass), so passes that keep node names keep them.
    blocks: list[Block] = field(default_factory=list)

    # --- construction helpers -------------------------------------------------------------
    def add_value(self, name: str, shape: Shape, dtype: str) -> Value:
        v = Value(name, tuple(int(d) for d in shape), str(dtype))
        self.values[name] = v
        return v

    def add_constant(self, name: str, array: np.ndarray) -> str:
        array = np.asarray(array)
        self.constants[name] = array
        self.add_value(name, array.shape, array.dtype.name)
        return name

    def fresh_name(self, base: str) -> str:
        """A value or node name not used yet, derived from `base`."""
        used = self.values.keys() | {n.name for n in self.nodes}
        if base not in used:
            return base
        for i in itertools.count(1):
            cand = f"{base}_{i}"
            if cand not in used:
                return cand
        raise AssertionError("unreachable")

    # --- queries ---------------------------------------------------------------------------
    def producers(self) -> dict[str, Node]:
        return {out: n for n in self.nodes for out in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        cons: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    cons.setdefault(i, []).append(n)
        return cons

    def shape(self, name: str) -> Shape:
        return self.values[name].shape

    def is_const(self, name: str) -> bool:
        return name in self.constants

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for n in self.nodes:
            hist[n.op] = hist.get(n.op, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def num_parameters(self) -> int:
        return int(sum(a.size for a in self.constants.values() if a.dtype.kind == "f"))

    def copy(self) -> Graph:
        return Graph(
            name=self.name,
            inputs=list(self.inputs),
            outputs=list(self.outputs),
            nodes=[Node(n.op, n.name, list(n.inputs), list(n.outputs), dict(n.attrs)) for n in self.nodes],
            values={k: Value(v.name, v.shape, v.dtype) for k, v in self.values.items()},
            constants=dict(self.constants),
            metadata=dict(self.metadata),
            blocks=list(self.blocks),
        )

    def prune_blocks(self) -> None:
        """Drop the blocks some of whose member nodes are gone."""
        names = {n.name for n in self.nodes}
        self.blocks = [b for b in self.blocks if all(n in names for n in b.nodes)]

    def replace_uses(self, old: str, new: str) -> None:
        """Point every consumer (and graph output) of `old` at `new`."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def __str__(self) -> str:
        return format_graph(self)


def format_graph(g: Graph, max_const_elems: int = 0) -> str:
    """A readable listing: inputs, constants (shapes only), nodes in order, outputs."""
    lines = [f"graph {g.name} ("]
    lines += [f"  in  {g.values[i]}" for i in g.inputs]
    lines.append(")")
    n_params = g.num_parameters()
    lines.append(f"  # {len(g.constants)} constants, {n_params:,} float parameters")
    for n in g.nodes:
        outs = ", ".join(str(g.values[o]) if o in g.values else o for o in n.outputs)
        ins = ", ".join(_fmt_input(g, i) for i in n.inputs)
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(n.attrs.items()))
        attrs = f" {{{attrs}}}" if attrs else ""
        lines.append(f"  {outs} = {n.op}({ins}){attrs}  # {n.name}")
    lines.append("  return " + ", ".join(str(g.values[o]) for o in g.outputs))
    return "\n".join(lines)


def _fmt_input(g: Graph, name: str) -> str:
    if not name:
        return "_"
    if name in g.constants:
        a = g.constants[name]
        if a.size <= 4:
            return f"{name}={a.tolist()}"
        return f"{name}<{'x'.join(map(str, a.shape))}>"
    return name
