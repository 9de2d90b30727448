"""Fold BatchNormalization into the preceding convolution."""

from __future__ import annotations

import numpy as np

from vcc.ir.graph import Graph, Node


def _bn_affine(g: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per channel such that BN(x) = scale * x + shift."""
    gamma, beta, mean, var = (g.constants[i].astype(np.float64) for i in bn.inputs[1:5])
    scale = gamma / np.sqrt(var + bn.attrs["epsilon"])
    return scale, beta - mean * scale


def fold_batchnorm(graph: Graph) -> Graph:
    """Rewrite Conv -> BatchNormalization as one Conv with scaled weights and a new bias, when
    the Conv output feeds only the BN (ConvTranspose likewise, scaling its output-channel axis).
    A BN with another producer becomes a per-channel Mul + Add with constant (C,1,1) operands.
    Assumes BN parameters are constants (the importer guarantees it)."""
    g = graph.copy()
    producers = g.producers()
    consumers = g.consumers()
    new_nodes: list[Node] = []
    dropped: set[str] = set()
    for n in g.nodes:
        if n.op != "BatchNormalization":
            new_nodes.append(n)
            continue
        scale, shift = _bn_affine(g, n)
        src = producers.get(n.inputs[0])
        single_use = src is not None and len(consumers.get(n.inputs[0], [])) == 1 \
            and n.inputs[0] not in g.outputs
        if single_use and src.op in ("Conv", "ConvTranspose") and g.is_const(src.inputs[1]):
            _fold_into_conv(g, src, scale, shift)
            dropped.add(n.inputs[0])
            src.outputs = [n.outputs[0]]
            continue
        new_nodes.extend(_as_scale_shift(g, n, scale, shift))
    g.nodes = new_nodes
    for v in dropped:
        del g.values[v]
    return g


def _fold_into_conv(g: Graph, conv: Node, scale: np.ndarray, shift: np.ndarray) -> None:
    w = g.constants[conv.inputs[1]].astype(np.float64)
    if conv.op == "Conv":
        w = w * scale.reshape(-1, 1, 1, 1)
    else:  # ConvTranspose weight: (C_in, C_out / group, kH, kW); output channel = g * Cog + j
        group = conv.attrs["group"]
        cin, cog = w.shape[:2]
        w = (w.reshape(group, cin // group, cog, *w.shape[2:])
             * scale.reshape(group, 1, cog, 1, 1)).reshape(w.shape)
    bias = g.constants[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] \
        else np.zeros_like(scale)
    bias = bias * scale + shift
    w_name = g.fresh_name(f"{conv.name}.weight_bn")
    b_name = g.fresh_name(f"{conv.name}.bias_bn")
    g.add_constant(w_name, w.astype(np.float32))
    g.add_constant(b_name, bias.astype(np.float32))
    conv.inputs = [conv.inputs[0], w_name, b_name]


def _as_scale_shift(g: Graph, bn: Node, scale: np.ndarray, shift: np.ndarray) -> list[Node]:
    rank = len(g.shape(bn.inputs[0]))
    cshape = (-1,) + (1,) * (rank - 2)
    s = g.add_constant(g.fresh_name(f"{bn.name}.scale"), scale.astype(np.float32).reshape(cshape))
    b = g.add_constant(g.fresh_name(f"{bn.name}.shift"), shift.astype(np.float32).reshape(cshape))
    mid = g.fresh_name(f"{bn.name}_scaled")
    g.add_value(mid, g.shape(bn.inputs[0]), "float32")
    return [Node("Mul", g.fresh_name(f"{bn.name}_mul"), [bn.inputs[0], s], [mid]),
            Node("Add", g.fresh_name(f"{bn.name}_add"), [mid, b], list(bn.outputs))]
