"""Unary and binary elementwise ops, activations with their attributes, Sum as a chain of Adds."""

from __future__ import annotations

import numpy as np

from vcc.errors import VccError

from .table import importer

UNARY_OPS = ("Relu", "Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Sqrt", "Erf", "Reciprocal",
             "Softplus", "HardSwish", "Floor", "Ceil", "Log")


@importer(*UNARY_OPS)
def _unary(ctx, node, a):
    ctx.emit(node, node.op_type, [node.input[0]])


@importer("Identity", "Dropout")
def _identity(ctx, node, a):
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise VccError(f"{ctx.source}: node {node.name!r}: Dropout's mask output is used; "
                       "export the model in eval mode")
    ctx.emit(node, node.op_type, [node.input[0]])


@importer("LeakyRelu")
def _leaky(ctx, node, a):
    ctx.emit(node, "LeakyRelu", [node.input[0]], {"alpha": float(a.get("alpha", 0.01))})


@importer("Elu")
def _elu(ctx, node, a):
    ctx.emit(node, "Elu", [node.input[0]], {"alpha": float(a.get("alpha", 1.0))})


@importer("HardSigmoid")
def _hardsigmoid(ctx, node, a):
    ctx.emit(node, "HardSigmoid", [node.input[0]],
             {"alpha": float(a.get("alpha", 0.2)), "beta": float(a.get("beta", 0.5))})


@importer("Clip")
def _clip(ctx, node, a):
    if ctx.opset < 11:
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
    else:
        lo_c = ctx.require_const(node, 1, "min") if len(node.input) > 1 and node.input[1] else None
        hi_c = ctx.require_const(node, 2, "max") if len(node.input) > 2 and node.input[2] else None
        lo = float(lo_c) if lo_c is not None else -np.inf
        hi = float(hi_c) if hi_c is not None else np.inf
    ctx.emit(node, "Clip", [node.input[0]], {"min": lo, "max": hi})


@importer("PRelu")
def _prelu(ctx, node, a):
    ctx.emit(node, "PRelu", [node.input[0], node.input[1]])


BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow")


@importer(*BINARY_OPS)
def _binary(ctx, node, a):
    if len(node.input) != 2:
        raise VccError(f"{ctx.source}: node {node.name!r}: {node.op_type} with "
                       f"{len(node.input)} inputs is not supported (2 expected)")
    ctx.emit(node, node.op_type, list(node.input))


@importer("Sum")
def _sum(ctx, node, a):
    if len(node.input) == 1:
        ctx.emit(node, "Identity", [node.input[0]])
        return
    acc = node.input[0]
    out_shape, dtype = ctx.shapes[node.output[0]]
    for k, nxt in enumerate(node.input[1:-1], 1):
        acc = ctx.emit_internal("Add", f"{node.name}_sum{k}", [acc, nxt], out_shape, dtype)
    ctx.emit(node, "Add", [acc, node.input[-1]])
