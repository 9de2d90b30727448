"""The lowering table and the state its handlers share.

`LOWERINGS` maps an IR op type to its handler, registered with `@lowering(...)` by the op-family
modules of this package; `LowerContext` is what a handler reads (the graph, the values lowered so
far) and writes (the block builder, the integer forms and `Rescaled` values of the int8 path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tvm import relax

from vcc.ir.graph import Graph, Node

R = relax.op
Lowering = Callable[["LowerContext", Node], "relax.Expr | list[relax.Expr]"]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*ops: str) -> Callable[[Lowering], Lowering]:
    def deco(fn: Lowering) -> Lowering:
        for op in ops:
            LOWERINGS[op] = fn
        return fn

    return deco


class LowerContext:
    def __init__(self, graph: Graph, bb: relax.BlockBuilder, fold_requantize: bool = True):
        self.graph = graph
        self.bb = bb
        self.fold_requantize = fold_requantize
        self.env: dict[str, relax.Expr] = {}
        self.producers = graph.producers()
        # values lowered as "integer tensor x scale" (pooled / concatenated integers): a
        # QuantizeLinear back to the same scale and dtype returns the integers unchanged
        self.integer_form: dict[str, tuple[relax.Var, np.ndarray, str]] = {}
        # values that are sums of "integer tensor x scale" (an int32 accumulator, a dequantized
        # activation, a residual Add of those), clipped to [lo, hi] by ReLU / Clip on the way: a
        # QuantizeLinear of one requantizes the integers with one multiplier each (`_requantize`)
        self.rescaled: dict[str, Rescaled] = {}

    def arg(self, name: str) -> relax.Expr:
        if name not in self.env:
            if name in self.graph.constants:
                self.env[name] = relax.const(np.ascontiguousarray(self.graph.constants[name]))
            else:
                raise KeyError(name)
        return self.env[name]

    def args(self, node: Node) -> list[relax.Expr]:
        return [self.arg(i) for i in node.inputs if i]

    def fconst(self, value: float, dtype: str = "float32") -> relax.Expr:
        return relax.const(np.asarray(value, dtype=dtype))

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.shape(name)


@dataclass
class Rescaled:
    """clip(sum of float32(term) * scale, lo, hi): the float result of integer ops — an int32
    accumulator times its scale, a dequantized activation, their sum (a residual Add) — maybe
    through ReLU / Clip."""

    terms: list[tuple[relax.Expr, np.ndarray]]  # (integer tensor, float32 scale broadcastable to it)
    lo: float = -np.inf
    hi: float = np.inf
