"""Pooling, reductions, Softmax / LogSoftmax (the opset < 13 form over flattened dims), ArgMax."""

from __future__ import annotations

import numpy as np

from vcc.errors import VccError
from vcc.ir.graph import Node

from .table import check_2d, explicit_pads, importer, norm_axis


@importer("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx, node, a):
    check_2d(ctx, node, node.input[0])
    ctx.emit(node, node.op_type, [node.input[0]])


@importer("AveragePool", "MaxPool")
def _pool(ctx, node, a):
    shape = check_2d(ctx, node, node.input[0])
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        raise VccError(f"{ctx.source}: node {node.name!r}: MaxPool with an Indices output is not supported")
    kernel = list(a["kernel_shape"])
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    pads = explicit_pads(node, a, shape[2:], kernel, strides, dilations, ctx.source)
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads,
             "ceil_mode": int(a.get("ceil_mode", 0))}
    if node.op_type == "MaxPool":
        attrs["dilations"] = dilations
    else:
        attrs["count_include_pad"] = int(a.get("count_include_pad", 0))
    ctx.emit(node, node.op_type, [node.input[0]], attrs)


@importer("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum")
def _reduce(ctx, node, a):
    rank = len(ctx.input_shape(node.input[0]))
    if "axes" in a:
        axes = list(a["axes"])
    elif len(node.input) > 1 and node.input[1]:
        axes = ctx.require_const(node, 1, "axes").tolist()
    else:
        axes = [] if a.get("noop_with_empty_axes", 0) else list(range(rank))
    axes = sorted(norm_axis(int(x), rank) for x in axes)
    ctx.emit(node, node.op_type, [node.input[0]], {"axes": axes, "keepdims": int(a.get("keepdims", 1))})


@importer("Softmax", "LogSoftmax")
def _softmax(ctx, node, a):
    shape = ctx.input_shape(node.input[0])
    rank = len(shape)
    default = -1 if ctx.opset >= 13 else 1
    axis = norm_axis(int(a.get("axis", default)), rank)
    if ctx.opset < 13 and axis != rank - 1:
        # opset < 13: softmax over the flattened trailing dims [axis:]
        flat = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
        r = ctx.emit_internal("Reshape", f"{node.name}_flat", [node.input[0]], flat, "float32",
                              {"shape": list(flat)})
        s = ctx.emit_internal(node.op_type, f"{node.name}_2d", [r], flat, "float32", {"axis": 1})
        out = ctx.declare_output(node)
        ctx.graph.nodes.append(Node("Reshape", ctx.graph.fresh_name(node.name), [s], [out],
                                    {"shape": list(shape)}))
        return
    ctx.emit(node, node.op_type, [node.input[0]], {"axis": axis})


@importer("ArgMax")
def _argmax(ctx, node, a):
    rank = len(ctx.input_shape(node.input[0]))
    if a.get("select_last_index", 0):
        raise VccError(f"{ctx.source}: node {node.name!r}: ArgMax select_last_index=1 is not supported")
    ctx.emit(node, "ArgMax", [node.input[0]],
             {"axis": norm_axis(int(a.get("axis", 0)), rank), "keepdims": int(a.get("keepdims", 1))})
