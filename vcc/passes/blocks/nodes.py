"""The node constraints block patterns are written with: op families (convolutions,
ReLU-like activations, gates, poolings, resizes, per-channel affine) and predicates on one node
(1x1 conv, atrous conv, ASPP branch conv, global average pooling)."""

from __future__ import annotations

from vcc.ir.graph import Graph, Node

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
