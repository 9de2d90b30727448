"""Sub-patterns several block kinds are built from: activations around a value, global
average pooling, and the sigmoid gate of BiSeNet's attention modules (`arm`, `ffm`)."""

from __future__ import annotations

from vcc.passes.blocks.nodes import CONV, GATE, POOL, RELU_LIKE, is_1x1, pools_to_one
from vcc.passes.blocks.pattern import Alt, Op, Pattern, Var, op, opt


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
