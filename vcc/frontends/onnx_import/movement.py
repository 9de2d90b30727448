"""Shape and data movement: Reshape (Flatten, Squeeze, Unsqueeze folded in), Transpose, Concat,
Split, Slice, Pad, Expand, Gather, Cast; constant operands become attributes, axes non-negative."""

from __future__ import annotations

import numpy as np
import onnx

from vcc.errors import VccError
from vcc.ir.graph import Node

from .table import importer, norm_axis


@importer("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape(ctx, node, a):
    out = ctx.declare_output(node)
    ctx.graph.nodes.append(Node("Reshape", ctx.graph.fresh_name(node.name or out), [node.input[0]],
                                [out], {"shape": list(ctx.graph.shape(out))}))


@importer("Transpose")
def _transpose(ctx, node, a):
    rank = len(ctx.input_shape(node.input[0]))
    perm = list(a.get("perm", list(range(rank))[::-1]))
    ctx.emit(node, "Transpose", [node.input[0]], {"perm": perm})


@importer("Concat")
def _concat(ctx, node, a):
    shapes = [ctx.input_shape(i) for i in node.input]
    rank = len(shapes[0])
    axis = norm_axis(int(a["axis"]), rank)
    if any(len(s) != rank or any(d != e for k, (d, e) in enumerate(zip(s, shapes[0], strict=True)) if k != axis)
           for s in shapes):
        raise VccError(f"{ctx.source}: node {node.name!r} (Concat): inputs {[list(s) for s in shapes]} differ "
                       f"outside the axis {axis}")
    ctx.emit(node, "Concat", list(node.input), {"axis": axis})


@importer("Split")
def _split(ctx, node, a):
    rank = len(ctx.input_shape(node.input[0]))
    axis = norm_axis(int(a.get("axis", 0)), rank)
    sizes = [ctx.shapes[o][0][axis] for o in node.output]
    ctx.emit(node, "Split", [node.input[0]], {"axis": axis, "split": sizes}, n_outputs=len(node.output))


@importer("Slice")
def _slice(ctx, node, a):
    shape = ctx.input_shape(node.input[0])
    if ctx.opset < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = ctx.require_const(node, 1, "starts").tolist()
        ends = ctx.require_const(node, 2, "ends").tolist()
        axes = ctx.require_const(node, 3, "axes").tolist() if len(node.input) > 3 and node.input[3] \
            else list(range(len(starts)))
        steps = ctx.require_const(node, 4, "steps").tolist() if len(node.input) > 4 and node.input[4] \
            else [1] * len(starts)
    norm_starts, norm_ends, norm_axes = [], [], []
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        ax = norm_axis(int(ax), len(shape))
        s, e, _ = slice(int(s), int(e), int(st)).indices(shape[ax])
        if st < 0 and e < 0:
            e = -1  # python's "before the start" for negative steps
        norm_starts.append(s)
        norm_ends.append(e)
        norm_axes.append(ax)
    ctx.emit(node, "Slice", [node.input[0]],
             {"starts": norm_starts, "ends": norm_ends, "axes": norm_axes, "steps": [int(s) for s in steps]})


@importer("Pad")
def _pad(ctx, node, a):
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    rank = len(ctx.input_shape(node.input[0]))
    if ctx.opset < 11:
        pads, value = list(a["pads"]), float(a.get("value", 0.0))
    else:
        pads = ctx.require_const(node, 1, "pads").tolist()
        value = float(ctx.require_const(node, 2, "constant value")) \
            if len(node.input) > 2 and node.input[2] else 0.0
        if len(node.input) > 3 and node.input[3]:
            axes = [norm_axis(int(x), rank) for x in ctx.require_const(node, 3, "axes").tolist()]
            full = [0] * (2 * rank)
            for k, ax in enumerate(axes):
                full[ax], full[rank + ax] = pads[k], pads[len(axes) + k]
            pads = full
    if mode not in ("constant", "reflect", "edge"):
        raise VccError(f"{ctx.source}: node {node.name!r}: Pad mode {mode!r} is not supported")
    ctx.emit(node, "Pad", [node.input[0]], {"pads": [int(p) for p in pads], "mode": mode, "value": value})


@importer("Expand")
def _expand(ctx, node, a):
    out = ctx.declare_output(node)
    ctx.graph.nodes.append(Node("Expand", ctx.graph.fresh_name(node.name or out), [node.input[0]],
                                [out], {"shape": list(ctx.graph.shape(out))}))


@importer("Gather")
def _gather(ctx, node, a):
    idx = ctx.require_const(node, 1, "indices")
    rank = len(ctx.input_shape(node.input[0]))
    axis = norm_axis(int(a.get("axis", 0)), rank)
    dim = ctx.input_shape(node.input[0])[axis]
    idx = np.where(idx < 0, idx + dim, idx).astype(np.int64)
    ctx.emit(node, "Gather", [node.input[0]], {"axis": axis, "indices": idx.tolist(),
                                               "indices_shape": list(idx.shape)})


@importer("Cast")
def _cast(ctx, node, a):
    to = onnx.helper.tensor_dtype_to_np_dtype(int(a["to"])).name
    ctx.emit(node, "Cast", [node.input[0]], {"to": to})
