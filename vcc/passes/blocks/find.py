"""Finding blocks: match every kind's pattern over a graph, claim private matches, group and
name them (:func:`find_blocks`, :func:`annotate_blocks`), and read them back
(:func:`block_of`, :func:`count_blocks`, :func:`blocks_json`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from vcc.ir.graph import Block, Graph
from vcc.passes.blocks.kinds import KINDS, PATTERNS
from vcc.passes.blocks.pattern import _NODES, BlockPattern, Matcher


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
