"""Recognise the blocks segmentation nets are built from, from declarative patterns.

A block is a connected group of nodes that a segmentation architecture repeats as one unit:
BiSeNet's attention refinement (`arm`) and feature fusion (`ffm`) modules, DeepLab's atrous
spatial pyramid pooling (`aspp`), HRNet's multi-resolution fusion (`hr_fusion`), residual
blocks (`residual`) and PSPNet's pyramid pooling (`ppm`). Each kind is described in a few lines
of a small dataflow pattern language (in the spirit of TVM's relay dataflow patterns), matched
backwards from a root value over the producers of the IR:

- ``Var("x")`` matches any value and binds it; a later ``Var("x")`` must be the same value
  (this is how "the sigmoid gate multiplies the map it was pooled from" is said);
  ``Var("x", collect=True)`` appends instead;
- ``Op(ops, *args)`` matches a value produced by a node of one of `ops` whose non-constant
  inputs match `args` in order (``commutative=True``: in any order); ``where`` constrains the
  node (kernel size, dilation, strides), ``tag`` collects the node's name for a check;
- ``Alt(a, b)``, ``opt(ops, p)`` (an optional node such as an extra ReLU), ``acts(p)`` (zero to
  two activations);
- ``Path(start, ops, convs)``: a chain of single-input nodes of `ops` holding `convs` (lo, hi)
  convolutions back to a value matched by `start`, shortest first;
- ``Sum(term)``: a tree of two-input Adds (inner sums used only by the tree), every leaf a term;
- ``Each(ops, branch, count)``: a node (Concat) whose every input matches `branch`, so a
  variable number of parallel branches is one pattern;
- ``Cone(start, ops, need)``: any connected subgraph of `ops` over one input (adaptive pooling
  to a grid that does not divide the map exports as Slice / ReduceMean / Concat).

A match becomes a block when its nodes are not claimed by an earlier block of its kind and are
private: no member's output leaves the block except the root value (and the outputs of the
kind's `shared` ops). `absorb` ops that feed the block and are used only by it join it (the
reflection pad a residual block's two paths share after onnxsim's common-subexpression
elimination). Kinds with `group_by_entries` merge their matches that read the same entry values
into one block: an HRNet fusion is one block per HighResolutionModule (all its output branches),
so the count equals `count_fuse_layers`.

Roots are tried from the graph outputs backwards, so the larger of two overlapping matches of a
kind (a residual Add with and without its trailing ReLU) claims the nodes. A node belongs to at
most one block of a kind; blocks of different kinds may nest or overlap (the residual blocks of
a DeepLab backbone are separate blocks before the ASPP, whose members are only its branches,
concat and projection); :func:`block_of` names the smallest block holding each node.

What each kind is:

- ``arm``: ``feat * sigmoid(conv1x1(gap(feat)))`` (the 1x1 conv may carry a folded BN or a
  ReLU after it);
- ``ffm``: ``f = act(conv(concat(...)))``, then ``f + f * sigmoid(conv1x1(act(conv1x1(gap(f)))))``;
- ``aspp``: a concat of branches all reading one value ``x`` (1x1 convs, dilated 3x3 convs, at
  most one image-pooling branch ``broadcast(acts(conv1x1(acts(gap(x)))))``), at least one
  dilated, projected by a 1x1 conv (+ activation);
- ``hr_fusion``: per output branch ``act(sum of terms)``, each term either an input as it is or
  a resampled one (a conv / activation / resize chain whose output resolution differs from its
  input's: upsampled 1x1 conv, strided 3x3 convs), at least one resampled, every term from a
  different input and no input an ancestor of another (parallel branches, not a strided
  residual block); one block per set of inputs;
- ``residual``: ``act?(path(x) + shortcut)``, path a chain of two or three convs (with
  activations, pads, resizes, unfolded BN scale/shift between), shortcut ``x`` itself or a
  one-conv projection of ``x``;
- ``ppm``: a concat of ``x`` and at least two pooled branches
  ``resize(acts(conv1x1(pool(x))))`` back to x's size, `pool` any average pooling subgraph.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vcc.ir.graph import Block, Graph, Node

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


# --- node constraints ------------------------------------------------------------------------
CONV = frozenset({"Conv"})
RELU_LIKE = frozenset({"Relu", "LeakyRelu", "PRelu", "Clip", "Elu", "Selu", "HardSwish"})
GATE = frozenset({"Sigmoid", "HardSigmoid"})
POOL = frozenset({"GlobalAveragePool", "ReduceMean", "AveragePool"})
RESIZE = frozenset({"Resize", "Upsample"})
BROADCAST = RESIZE | {"Expand", "Tile"}
AFFINE = frozenset({"Mul", "Add"})  # a BN left as per-channel scale and shift


def _kernel(n: Node) -> tuple[int, ...]:
    return tuple(n.attrs.get("kernel_shape", ()))


def is_1x1(g: Graph, n: Node) -> bool:
    return n.op == "Conv" and all(k == 1 for k in _kernel(n))


def is_atrous(g: Graph, n: Node) -> bool:
    return n.op == "Conv" and any(k > 1 for k in _kernel(n)) \
        and any(d > 1 for d in n.attrs.get("dilations", ()))


def is_branch_conv(g: Graph, n: Node) -> bool:
    """An ASPP branch conv: a 1x1 or an atrous conv that keeps the resolution (stride 1)."""
    return (is_1x1(g, n) or is_atrous(g, n)) and all(s == 1 for s in n.attrs.get("strides", (1,)))


def pools_to_one(g: Graph, n: Node) -> bool:
    """Global average pooling: every spatial dimension of the output is 1."""
    return n.op in POOL and all(d == 1 for d in g.shape(n.outputs[0])[2:])


# --- the block kinds -------------------------------------------------------------------------
def acts(inner: Pattern) -> Pattern:
    """`inner` under zero, one or two activations (someone's extra ReLU)."""
    one = op(RELU_LIKE, inner)
    return Alt((op(RELU_LIKE, one), one, inner))


def _gap(x: Pattern) -> Op:
    return op(POOL, x, where=pools_to_one)


def _gate(feature: str, hidden: bool) -> Pattern:
    """sigmoid(conv1x1(gap(feature))); `hidden`: with a squeeze 1x1 conv and activation first."""
    pooled: Pattern = _gap(Var(feature))
    if hidden:
        pooled = op(RELU_LIKE, op(CONV, pooled, where=is_1x1))
    return op(GATE, opt(RELU_LIKE, op(CONV, pooled, where=is_1x1)))


_ARM_GATE = _gate("feat", hidden=False)
_FFM_GATE = _gate("feat", hidden=True)

_ASPP_BRANCH = Alt((
    acts(op(CONV, Var("x"), where=is_branch_conv, tag="branch_convs")),
    acts(op(BROADCAST, acts(op(CONV, acts(op(POOL, Var("x"), where=pools_to_one, tag="pools")),
                               where=is_1x1)))),
))
_PPM_BRANCH = Alt((
    Var("x"),
    op(RESIZE, acts(op(CONV, Cone(Var("x"), POOL | {"Slice", "Concat"}, POOL, tag="pools"),
                       where=is_1x1))),
))
_PATH_OPS = CONV | RELU_LIKE | RESIZE | AFFINE | {"Pad", "BatchNormalization"}
_SHORTCUT = Alt((Var("x"), Path(Var("x"), _PATH_OPS, (1, 1))))
_FUSION_TERM = Alt((
    Path(Var("sources", collect=True), CONV | RELU_LIKE | RESIZE | AFFINE, (1, 4), resample=True),
    Var("sources", collect=True),
))


def _aspp_ok(m: Matcher, env: Env, root: str) -> bool:
    convs = env.get("branch_convs", ())
    return any(is_atrous(m.graph, m.by_name[c]) for c in convs) and len(env.get("pools", ())) <= 1


def _fusion_ok(m: Matcher, env: Env, root: str) -> bool:
    """Distinct, parallel inputs, at least one resampled to the output's resolution."""
    sources = env["sources"]
    if len(set(sources)) != len(sources) or all(m.spatial(s) == m.spatial(root) for s in sources):
        return False
    return not any(m.is_ancestor(a, b) or m.is_ancestor(b, a)
                   for a, b in itertools.combinations(sources, 2))


def _ppm_ok(m: Matcher, env: Env, root: str) -> bool:
    return len(env.get("pools", ())) >= 2


@dataclass(frozen=True)
class BlockPattern:
    kind: str
    root: Pattern
    check: Callable[[Matcher, Env, str], bool] | None = None  # (matcher, bindings, root value)
    shared: frozenset[str] = frozenset()  # ops whose outputs may also leave the block
    absorb: frozenset[str] = frozenset()  # feeding ops used only by the block join it
    group_by_entries: int = 0  # >0: matches reading the same values are one block of >= this many


PATTERNS: tuple[BlockPattern, ...] = (
    BlockPattern("arm", op("Mul", Var("feat"), _ARM_GATE, commutative=True), shared=POOL),
    BlockPattern("ffm", op("Add", Bind("feat", acts(op(CONV, op("Concat", any_inputs=True)))),
                           op("Mul", Var("feat"), _FFM_GATE, commutative=True), commutative=True)),
    BlockPattern("aspp", acts(op(CONV, Each(frozenset({"Concat"}), _ASPP_BRANCH, (2, 64)), where=is_1x1)),
                 check=_aspp_ok),
    BlockPattern("ppm", Each(frozenset({"Concat"}), _PPM_BRANCH, (3, 64)), check=_ppm_ok),
    BlockPattern("hr_fusion", opt(RELU_LIKE, Sum(_FUSION_TERM)), check=_fusion_ok,
                 group_by_entries=2),
    BlockPattern("residual", opt(RELU_LIKE, op("Add", Path(Var("x"), _PATH_OPS, (2, 3)), _SHORTCUT,
                                               commutative=True)),
                 absorb=frozenset({"Pad", "Resize", "Upsample"})),
)
KINDS = tuple(p.kind for p in PATTERNS)


# --- finding blocks --------------------------------------------------------------------------
@dataclass
class _Match:
    root: str
    nodes: set[str]
    entries: list[str]
    exits: list[str]


def _boundary(m: Matcher, members: set[str]) -> tuple[list[str], list[str]]:
    """(entries, exits): values the members read but do not make; member outputs used outside."""
    entries: list[str] = []
    exits: list[str] = []
    for name in sorted(members, key=m.position.__getitem__):
        n = m.by_name[name]
        for i in m.dynamic_inputs(n):
            p = m.producer.get(i)
            if (p is None or p.name not in members) and i not in entries:
                entries.append(i)
        for o in n.outputs:
            if o in m.outputs or any(c.name not in members for c in m.consumers.get(o, [])):
                exits.append(o)
    return entries, exits


def _absorb(m: Matcher, members: set[str], ops: frozenset[str], claimed: set[str]) -> None:
    changed = bool(ops)
    while changed:
        changed = False
        for e in _boundary(m, members)[0]:
            p = m.producer.get(e)
            if p is None or p.op not in ops or p.name in claimed or e in m.outputs:
                continue
            if all(c.name in members for o in p.outputs for c in m.consumers.get(o, [])):
                members.add(p.name)
                changed = True


def _find(m: Matcher, pattern: BlockPattern) -> list[_Match]:
    claimed: set[str] = set()
    found: list[_Match] = []
    for node in reversed(m.graph.nodes):
        for value in node.outputs:
            hit = _first_match(m, pattern, value, claimed)
            if hit is not None:
                claimed |= hit.nodes
                found.append(hit)
    return found


def _first_match(m: Matcher, pattern: BlockPattern, value: str, claimed: set[str]) -> _Match | None:
    for env in pattern.root.match(m, value, {_NODES: frozenset()}):
        members = set(env[_NODES])
        if members & claimed:
            continue
        _absorb(m, members, pattern.absorb, claimed)
        entries, exits = _boundary(m, members)
        leaks = [x for x in exits if x != value and m.producer[x].op not in pattern.shared]
        if leaks or (pattern.check is not None and not pattern.check(m, env, value)):
            continue
        return _Match(value, members, entries, exits)
    return None


def _group(m: Matcher, matches: list[_Match], least: int) -> list[_Match]:
    groups: dict[frozenset[str], list[_Match]] = {}
    for hit in matches:
        groups.setdefault(frozenset(hit.entries), []).append(hit)
    out = []
    for hits in groups.values():
        if len(hits) < least:
            continue
        members = set().union(*(h.nodes for h in hits))
        entries, exits = _boundary(m, members)
        out.append(_Match(exits[-1], members, entries, exits))
    return out


def _prefix_name(names: list[str]) -> str:
    """The longest common '/'-separated prefix of ONNX-style node names."""
    parts = [n.strip("/").split("/")[:-1] for n in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common)


def find_blocks(graph: Graph, kinds: tuple[str, ...] = KINDS) -> list[Block]:
    """Every block of `kinds` in `graph`, in graph order, each named `kind:prefix` after the
    common prefix of its node names (or `kind:k` when they share none)."""
    m = Matcher(graph)
    blocks: list[Block] = []
    used: set[str] = set()
    for pattern in PATTERNS:
        if pattern.kind not in kinds:
            continue
        matches = _find(m, pattern)
        if pattern.group_by_entries:
            matches = _group(m, matches, pattern.group_by_entries)
        matches.sort(key=lambda h: min(m.position[n] for n in h.nodes))
        for k, hit in enumerate(matches):
            nodes = sorted(hit.nodes, key=m.position.__getitem__)
            name = f"{pattern.kind}:{_prefix_name(nodes) or k}"
            if name in used:
                name = next(f"{name}#{j}" for j in itertools.count(2) if f"{name}#{j}" not in used)
            used.add(name)
            blocks.append(Block(pattern.kind, name, tuple(nodes), tuple(hit.entries), tuple(hit.exits)))
    first = {b.name: min(m.position[n] for n in b.nodes) for b in blocks}
    return sorted(blocks, key=lambda b: (first[b.name], KINDS.index(b.kind)))


def annotate_blocks(graph: Graph) -> Graph:
    """Store the blocks :func:`find_blocks` recognises on a copy of `graph` (`graph.blocks`).
    No node, value or constant changes. Assumes BatchNormalization is folded (a BN left as a
    node inside a block is tolerated only where the pattern allows per-channel scale/shift)."""
    g = graph.copy()
    g.blocks = find_blocks(g)
    return g


def block_of(graph: Graph) -> dict[str, str]:
    """node name -> the name of the smallest block of `graph.blocks` that holds it."""
    out: dict[str, str] = {}
    size: dict[str, int] = {}
    for b in graph.blocks:
        for n in b.nodes:
            if n not in out or len(b.nodes) < size[n]:
                out[n], size[n] = b.name, len(b.nodes)
    return out


def count_blocks(graph: Graph) -> dict[str, int]:
    """kind -> number of blocks in `graph.blocks`."""
    counts = dict.fromkeys(KINDS, 0)
    for b in graph.blocks:
        counts[b.kind] = counts.get(b.kind, 0) + 1
    return counts


def blocks_json(graph: Graph) -> list[dict]:
    return [{"kind": b.kind, "name": b.name, "nodes": list(b.nodes)} for b in graph.blocks]
