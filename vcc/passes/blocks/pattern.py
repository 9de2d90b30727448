"""The dataflow pattern language blocks are described in, and what a block kind is.

:class:`Matcher` indexes a graph (producers, consumers, topological positions); the patterns
(``Var``, ``Bind``, ``Op`` / :func:`op`, ``Alt`` / :func:`opt`, ``Path``, ``Sum``, ``Each``,
``Cone``) match a value backwards over its producers, yielding one environment of bindings per
way it matches (see the package docstring). :class:`BlockPattern` is one block kind: a root
pattern with its check and its boundary rules.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vcc.ir.graph import Graph, Node
from vcc.passes.blocks.nodes import CONV

Env = dict[str, object]
_NODES = "_nodes"


class Matcher:
    """Indexes of a graph the patterns read: producers, consumers, topological positions."""

    def __init__(self, g: Graph):
        self.graph = g
        self.producer = g.producers()
        self.consumers = g.consumers()
        self.position = {n.name: k for k, n in enumerate(g.nodes)}
        self.by_name = {n.name: n for n in g.nodes}
        self.outputs = set(g.outputs)

    def dynamic_inputs(self, n: Node) -> list[str]:
        return [i for i in n.inputs if i and not self.graph.is_const(i)]

    def spatial(self, value: str) -> tuple[int, ...]:
        return tuple(self.graph.shape(value)[2:])

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether value `a` is computed before and used (transitively) by value `b`."""
        pa, pb = self.producer.get(a), self.producer.get(b)
        if pb is None:
            return False
        floor = self.position[pa.name] if pa is not None else -1
        seen: set[str] = set()
        stack = [pb]
        while stack:
            n = stack.pop()
            for i in self.dynamic_inputs(n):
                if i == a:
                    return True
                p = self.producer.get(i)
                if p is not None and p.name not in seen and self.position[p.name] > floor:
                    seen.add(p.name)
                    stack.append(p)
        return False


class Pattern:
    """Matches a value; yields one extended environment per way it matches."""

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        raise NotImplementedError


def _match_all(m: Matcher, pats: tuple[Pattern, ...], values: list[str], env: Env) -> Iterator[Env]:
    if not pats:
        yield env
        return
    for e in pats[0].match(m, values[0], env):
        yield from _match_all(m, pats[1:], values[1:], e)


def _with_node(env: Env, node: Node, tag: str | None) -> Env:
    env = {**env, _NODES: env[_NODES] | {node.name}}
    if tag:
        env[tag] = (*env.get(tag, ()), node.name)
    return env


@dataclass(frozen=True)
class Var(Pattern):
    name: str
    collect: bool = False

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        if self.collect:
            yield {**env, self.name: (*env.get(self.name, ()), value)}
        elif self.name not in env:
            yield {**env, self.name: value}
        elif env[self.name] == value:
            yield env


@dataclass(frozen=True)
class Bind(Pattern):
    """`pattern`, with the matched value bound to `name` (or checked against it)."""

    name: str
    pattern: Pattern

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        if self.name in env and env[self.name] != value:
            return
        for e in self.pattern.match(m, value, env):
            yield {**e, self.name: value}


NodeCheck = Callable[[Graph, Node], bool]


@dataclass(frozen=True)
class Op(Pattern):
    ops: frozenset[str]
    args: tuple[Pattern, ...] | None = None  # None: any inputs (they become entries)
    where: NodeCheck | None = None
    commutative: bool = False
    tag: str | None = None

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        node = m.producer.get(value)
        if node is None or node.op not in self.ops or node.name in env[_NODES]:
            return
        if self.where is not None and not self.where(m.graph, node):
            return
        env = _with_node(env, node, self.tag)
        if self.args is None:
            yield env
            return
        ins = m.dynamic_inputs(node)
        if len(ins) != len(self.args):
            return
        orders = dict.fromkeys(itertools.permutations(ins)) if self.commutative else [tuple(ins)]
        for order in orders:
            yield from _match_all(m, self.args, list(order), env)


def op(ops: str | tuple[str, ...] | frozenset[str], *args: Pattern, where: NodeCheck | None = None,
       commutative: bool = False, tag: str | None = None, any_inputs: bool = False) -> Op:
    ops = frozenset([ops] if isinstance(ops, str) else ops)
    return Op(ops, None if any_inputs else tuple(args), where, commutative, tag)


@dataclass(frozen=True)
class Alt(Pattern):
    options: tuple[Pattern, ...]

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        for o in self.options:
            yield from o.match(m, value, env)


def opt(ops: str | tuple[str, ...] | frozenset[str], inner: Pattern, where: NodeCheck | None = None) -> Pattern:
    """`inner`, or one node of `ops` on top of it."""
    return Alt((op(ops, inner, where=where), inner))


@dataclass(frozen=True)
class Path(Pattern):
    """A chain of single-input nodes of `ops` ending at the value, with lo..hi convolutions
    (each passing `conv_where`), back to a value matched by `start`; shortest chains first.
    `resample`: True, the chain's output resolution must differ from its start's; False, equal."""

    start: Pattern
    ops: frozenset[str]
    convs: tuple[int, int]
    resample: bool | None = None
    conv_where: NodeCheck | None = None

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        lo, hi = self.convs
        nodes: list[Node] = []
        starts: list[tuple[str, frozenset[str]]] = []
        n_conv = 0
        v = value
        while True:
            if nodes and lo <= n_conv <= hi and self._resample_ok(m, value, v):
                starts.append((v, frozenset(n.name for n in nodes)))
            p = m.producer.get(v)
            if p is None or p.op not in self.ops or p.name in env[_NODES]:
                break
            if v != value and (len(m.consumers.get(v, [])) != 1 or v in m.outputs):
                break  # a value used elsewhere is where the chain starts
            ins = m.dynamic_inputs(p)
            if len(ins) != 1:
                break
            if p.op in CONV:
                n_conv += 1
                if n_conv > hi or (self.conv_where is not None and not self.conv_where(m.graph, p)):
                    break
            nodes.append(p)
            v = ins[0]
        for start, members in reversed(starts):  # the longest private chain first
            yield from self.start.match(m, start, {**env, _NODES: env[_NODES] | members})

    def _resample_ok(self, m: Matcher, out: str, start: str) -> bool:
        if self.resample is None:
            return True
        return (m.spatial(out) != m.spatial(start)) == self.resample


@dataclass(frozen=True)
class Sum(Pattern):
    """A tree of two-input Adds whose inner sums feed only the tree; each leaf matches `term`."""

    term: Pattern
    min_terms: int = 2

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        root = m.producer.get(value)
        if not self._is_add(m, root) or root.name in env[_NODES]:
            return
        adds: list[Node] = []
        leaves: list[str] = []
        stack = [root]
        while stack:
            n = stack.pop()
            adds.append(n)
            for i in reversed(m.dynamic_inputs(n)):
                p = m.producer.get(i)
                inner = self._is_add(m, p) and len(m.consumers.get(i, [])) == 1 \
                    and i not in m.outputs and p.name not in env[_NODES]
                if inner:
                    stack.append(p)
                else:
                    leaves.append(i)
        shape = m.graph.shape(value)
        if len(leaves) < self.min_terms or any(m.graph.shape(v) != shape for v in leaves):
            return  # a broadcasting add is no sum of branches
        env = {**env, _NODES: env[_NODES] | {n.name for n in adds}}
        yield from _match_all(m, (self.term,) * len(leaves), leaves, env)

    @staticmethod
    def _is_add(m: Matcher, n: Node | None) -> bool:
        return n is not None and n.op == "Add" and len(m.dynamic_inputs(n)) == 2


@dataclass(frozen=True)
class Each(Pattern):
    """A node of `ops` (a Concat) with lo..hi non-constant inputs, each matching `branch`."""

    ops: frozenset[str]
    branch: Pattern
    count: tuple[int, int] = (2, 64)

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        node = m.producer.get(value)
        if node is None or node.op not in self.ops or node.name in env[_NODES]:
            return
        ins = m.dynamic_inputs(node)
        if not self.count[0] <= len(ins) <= self.count[1]:
            return
        yield from _match_all(m, (self.branch,) * len(ins), ins, _with_node(env, node, None))


@dataclass(frozen=True)
class Cone(Pattern):
    """A connected subgraph of `ops` ending at the value whose only outside input is one value
    matched by `start`, holding at least one node of `need` (non-uniform adaptive pooling
    exported as Slice / ReduceMean / Concat). `tag` collects the value."""

    start: Pattern
    ops: frozenset[str]
    need: frozenset[str]
    tag: str | None = None

    def match(self, m: Matcher, value: str, env: Env) -> Iterator[Env]:
        nodes: set[str] = set()
        outside: set[str] = set()
        stack = [value]
        while stack:
            v = stack.pop()
            p = m.producer.get(v)
            if p is None or p.op not in self.ops or p.name in env[_NODES]:
                outside.add(v)
            elif p.name not in nodes:
                nodes.add(p.name)
                stack.extend(m.dynamic_inputs(p))
        if len(outside) != 1 or not any(m.by_name[n].op in self.need for n in nodes):
            return
        env = {**env, _NODES: env[_NODES] | nodes}
        if self.tag:
            env[self.tag] = (*env.get(self.tag, ()), value)
        yield from self.start.match(m, outside.pop(), env)


@dataclass(frozen=True)
class BlockPattern:
    kind: str
    root: Pattern
    check: Callable[[Matcher, Env, str], bool] | None = None  # (matcher, bindings, root value)
    shared: frozenset[str] = frozenset()  # ops whose outputs may also leave the block
    absorb: frozenset[str] = frozenset()  # feeding ops used only by the block join it
    group_by_entries: int = 0  # >0: matches reading the same values are one block of >= this many
