"""ONNX -> graph IR.

One handler per ONNX op type (the `IMPORTERS` table). Handlers normalise: static operands
that ONNX passes as tensors (Reshape's shape, Slice's starts, Clip's bounds, Resize's sizes...)
become attributes, Flatten/Squeeze/Unsqueeze become Reshape, Upsample becomes Resize, Gemm
becomes MatMul + Add. A node whose inputs are all constants is evaluated (onnx's reference
evaluator) and becomes a constant: that folds the shape arithmetic of traced models whatever
ops it uses. Every op left unsupported is listed in one error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from vcc.errors import VccError
from vcc.frontends.onnx_eval import evaluate_onnx_node
from vcc.frontends.onnx_load import fix_input_shapes, load_onnx_file, simplify
from vcc.ir.graph import Graph, Node
from vcc.ir.verify import verify_graph


@dataclass
class ImportContext:
    graph: Graph
    source: str
    opset: int
    shapes: dict[str, tuple[tuple[int, ...] | None, str]]  # onnx value -> (shape, dtype)
    unsupported: list[tuple[str, str]] = field(default_factory=list)

    # -- helpers for handlers ------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        return self.graph.constants.get(name) if name else None

    def require_const(self, node: onnx.NodeProto, k: int, what: str) -> np.ndarray:
        name = node.input[k] if k < len(node.input) else ""
        arr = self.const(name)
        if arr is None:
            raise VccError(
                f"{self.source}: node {node.name!r} ({node.op_type}): {what} (input {k}, "
                f"{name!r}) must be a constant; vcc needs static shapes"
            )
        return arr

    def input_shape(self, name: str) -> tuple[int, ...]:
        return self.graph.shape(name)

    def declare_output(self, node: onnx.NodeProto, k: int = 0) -> str:
        """Give the k-th output of an ONNX node its IR value, typed from shape inference."""
        name = node.output[k]
        shape, dtype = self.shapes.get(name, (None, "float32"))
        if shape is None:
            raise VccError(
                f"{self.source}: cannot determine a static shape for {name!r}, output of node "
                f"{node.name!r} ({node.op_type}); give a static input size (--size H W)"
            )
        self.graph.add_value(name, shape, dtype)
        return name

    def emit(self, node: onnx.NodeProto, op: str, inputs: Sequence[str], attrs: dict | None = None,
             n_outputs: int = 1) -> Node:
        outputs = [self.declare_output(node, k) for k in range(n_outputs)]
        ir = Node(op, self.graph.fresh_name(node.name or f"{op}_{outputs[0]}"), list(inputs),
                  outputs, attrs or {})
        self.graph.nodes.append(ir)
        return ir

    def emit_internal(self, op: str, name: str, inputs: Sequence[str], shape, dtype: str,
                      attrs: dict | None = None) -> str:
        """A node of our own making (Gemm's transpose, say), with a fresh output value."""
        out = self.graph.fresh_name(name)
        self.graph.add_value(out, shape, dtype)
        self.graph.nodes.append(Node(op, self.graph.fresh_name(name), list(inputs), [out], attrs or {}))
        return out


Handler = Callable[[ImportContext, onnx.NodeProto, dict], None]
IMPORTERS: dict[str, Handler] = {}


def importer(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
            IMPORTERS[op] = fn
        return fn

    return deco


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _as_list(v) -> list:
    return [x.decode() if isinstance(x, bytes) else x for x in v] if isinstance(v, (list, tuple)) else v


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# --- convolution and normalisation --------------------------------------------------------------

def _explicit_pads(node, a, in_hw, kernel, strides, dilations, source) -> list[int]:
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        pads = list(a.get("pads", [0] * 4))
        return pads
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(2):
            out = -(-in_hw[i] // strides[i])
            eff_k = (kernel[i] - 1) * dilations[i] + 1
            total = max(0, (out - 1) * strides[i] + eff_k - in_hw[i])
            small, big = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
        return begin + end
    raise VccError(f"{source}: node {node.name!r}: unknown auto_pad {auto_pad!r}")


def _check_2d(ctx: ImportContext, node: onnx.NodeProto, name: str) -> tuple[int, ...]:
    shape = ctx.input_shape(name)
    if len(shape) != 4:
        raise VccError(f"{ctx.source}: node {node.name!r} ({node.op_type}) on a {len(shape)}-D "
                       f"input {shape}: only 2-D (NCHW) is supported")
    return shape


@importer("Conv")
def _conv(ctx, node, a):
    x = node.input[0]
    shape = _check_2d(ctx, node, x)
    w = ctx.require_const(node, 1, "the weight")
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    pads = _explicit_pads(node, a, shape[2:], kernel, strides, dilations, ctx.source)
    inputs = [x, node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    ctx.emit(node, "Conv", inputs, {"kernel_shape": kernel, "strides": strides, "pads": pads,
                                    "dilations": dilations, "group": int(a.get("group", 1))})


@importer("ConvTranspose")
def _conv_transpose(ctx, node, a):
    x = node.input[0]
    _check_2d(ctx, node, x)
    w = ctx.require_const(node, 1, "the weight")
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    out_pad = list(a.get("output_padding", [0, 0]))
    group = int(a.get("group", 1))
    out_shape = ctx.shapes.get(node.output[0], (None, ""))[0]
    in_hw = ctx.input_shape(x)[2:]
    if "output_shape" in a or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        if out_shape is None:
            raise VccError(f"{ctx.source}: node {node.name!r}: cannot resolve ConvTranspose output shape")
        pads = []
        totals = []
        for i in range(2):
            full = strides[i] * (in_hw[i] - 1) + out_pad[i] + ((kernel[i] - 1) * dilations[i] + 1)
            totals.append(full - out_shape[2 + i])
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        for t in totals:
            pads.append(t - t // 2 if auto == "SAME_LOWER" else t // 2)
        pads = pads + [t - p for t, p in zip(totals, pads, strict=True)]
    else:
        pads = list(a.get("pads", [0, 0, 0, 0]))
    inputs = [x, node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    ctx.emit(node, "ConvTranspose", inputs, {"kernel_shape": kernel, "strides": strides, "pads": pads,
                                             "dilations": dilations, "group": group,
                                             "output_padding": out_pad})


@importer("BatchNormalization")
def _batchnorm(ctx, node, a):
    for k, what in ((1, "scale"), (2, "bias"), (3, "running mean"), (4, "running variance")):
        ctx.require_const(node, k, what)
    if len(node.output) > 1 and any(node.output[1:]):
        raise VccError(f"{ctx.source}: node {node.name!r}: BatchNormalization in training mode "
                       "(extra outputs) is not supported; export the model in eval mode")
    ctx.emit(node, "BatchNormalization", list(node.input[:5]), {"epsilon": float(a.get("epsilon", 1e-5))})


# --- elementwise -----------------------------------------------------------------------------------

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


# --- shape and data movement ---------------------------------------------------------------------

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
    rank = len(ctx.input_shape(node.input[0]))
    ctx.emit(node, "Concat", list(node.input), {"axis": _norm_axis(int(a["axis"]), rank)})


@importer("Split")
def _split(ctx, node, a):
    rank = len(ctx.input_shape(node.input[0]))
    axis = _norm_axis(int(a.get("axis", 0)), rank)
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
        ax = _norm_axis(int(ax), len(shape))
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
            axes = [_norm_axis(int(x), rank) for x in ctx.require_const(node, 3, "axes").tolist()]
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
    axis = _norm_axis(int(a.get("axis", 0)), rank)
    dim = ctx.input_shape(node.input[0])[axis]
    idx = np.where(idx < 0, idx + dim, idx).astype(np.int64)
    ctx.emit(node, "Gather", [node.input[0]], {"axis": axis, "indices": idx.tolist(),
                                               "indices_shape": list(idx.shape)})


@importer("Cast")
def _cast(ctx, node, a):
    to = onnx.helper.tensor_dtype_to_np_dtype(int(a["to"])).name
    ctx.emit(node, "Cast", [node.input[0]], {"to": to})


# --- pooling, reductions, softmax ----------------------------------------------------------------

@importer("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx, node, a):
    _check_2d(ctx, node, node.input[0])
    ctx.emit(node, node.op_type, [node.input[0]])


@importer("AveragePool", "MaxPool")
def _pool(ctx, node, a):
    shape = _check_2d(ctx, node, node.input[0])
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        raise VccError(f"{ctx.source}: node {node.name!r}: MaxPool with an Indices output is not supported")
    kernel = list(a["kernel_shape"])
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    pads = _explicit_pads(node, a, shape[2:], kernel, strides, dilations, ctx.source)
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
    axes = sorted(_norm_axis(int(x), rank) for x in axes)
    ctx.emit(node, node.op_type, [node.input[0]], {"axes": axes, "keepdims": int(a.get("keepdims", 1))})


@importer("Softmax", "LogSoftmax")
def _softmax(ctx, node, a):
    shape = ctx.input_shape(node.input[0])
    rank = len(shape)
    default = -1 if ctx.opset >= 13 else 1
    axis = _norm_axis(int(a.get("axis", default)), rank)
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
             {"axis": _norm_axis(int(a.get("axis", 0)), rank), "keepdims": int(a.get("keepdims", 1))})


# --- resize ---------------------------------------------------------------------------------------

def _s(v, default: str) -> str:
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else v


@importer("Resize", "Upsample")
def _resize(ctx, node, a):
    shape = _check_2d(ctx, node, node.input[0])
    out = ctx.declare_output(node)
    out_shape = ctx.graph.shape(out)
    if tuple(out_shape[:2]) != tuple(shape[:2]):
        raise VccError(f"{ctx.source}: node {node.name!r}: {node.op_type} over the batch or channel "
                       f"axis ({shape} -> {out_shape}) is not supported")
    mode = _s(a.get("mode"), "nearest")
    if node.op_type == "Upsample" or ctx.opset < 11:
        coord = "asymmetric"
        nearest_mode = "floor"
    else:
        coord = _s(a.get("coordinate_transformation_mode"), "half_pixel")
        nearest_mode = _s(a.get("nearest_mode"), "round_prefer_floor")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear", "cubic"):
        raise VccError(f"{ctx.source}: node {node.name!r}: resize mode {mode!r} is not supported")
    supported_coords = ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel")
    if coord not in supported_coords:
        raise VccError(f"{ctx.source}: node {node.name!r}: coordinate_transformation_mode "
                       f"{coord!r} is not supported (supported: {', '.join(supported_coords)})")
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest_mode,
             "size": list(out_shape[2:]), "cubic_coeff_a": float(a.get("cubic_coeff_a", -0.75)),
             "exclude_outside": int(a.get("exclude_outside", 0))}
    ctx.graph.nodes.append(Node("Resize", ctx.graph.fresh_name(node.name or out), [node.input[0]],
                                [out], attrs))


# --- matrix products -----------------------------------------------------------------------------

@importer("MatMul")
def _matmul(ctx, node, a):
    ctx.emit(node, "MatMul", [node.input[0], node.input[1]])


@importer("Gemm")
def _gemm(ctx, node, a):
    g = ctx.graph
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    A, B = node.input[0], node.input[1]
    if a.get("transA", 0):
        sa = g.shape(A)
        A = ctx.emit_internal("Transpose", f"{node.name}_At", [A], (sa[1], sa[0]), g.values[A].dtype,
                              {"perm": [1, 0]})
    b_const = ctx.const(B)
    if b_const is not None:
        b_arr = b_const.T if a.get("transB", 0) else b_const
        if alpha != 1.0:
            b_arr = b_arr * np.asarray(alpha, dtype=b_arr.dtype)
            alpha = 1.0
        B = g.add_constant(g.fresh_name(f"{node.name}_B"), np.ascontiguousarray(b_arr))
    elif a.get("transB", 0):
        sb = g.shape(B)
        B = ctx.emit_internal("Transpose", f"{node.name}_Bt", [B], (sb[1], sb[0]), g.values[B].dtype,
                              {"perm": [1, 0]})
    out_shape, dtype = ctx.shapes[node.output[0]]
    has_c = len(node.input) > 2 and node.input[2]
    if not has_c and alpha == 1.0:
        ctx.emit(node, "MatMul", [A, B])
        return
    y = ctx.emit_internal("MatMul", f"{node.name}_mm", [A, B], out_shape, dtype)
    if alpha != 1.0:
        s = g.add_constant(g.fresh_name(f"{node.name}_alpha"), np.asarray(alpha, dtype=np.float32))
        y = ctx.emit_internal("Mul", f"{node.name}_scale", [y, s], out_shape, dtype) if has_c else y
        if not has_c:
            ctx.emit(node, "Mul", [y, s])
            return
    C = node.input[2]
    c_const = ctx.const(C)
    if beta != 1.0:
        if c_const is None:
            s = g.add_constant(g.fresh_name(f"{node.name}_beta"), np.asarray(beta, dtype=np.float32))
            C = ctx.emit_internal("Mul", f"{node.name}_cbeta", [C, s], g.shape(C), dtype)
        else:
            C = g.add_constant(g.fresh_name(f"{node.name}_C"), (c_const * beta).astype(c_const.dtype))
    ctx.emit(node, "Add", [y, C])


# --- folding of constant subgraphs ----------------------------------------------------------------

def _fold_shape(ctx: ImportContext, node: onnx.NodeProto, a: dict) -> bool:
    """Shape and Size of a statically shaped value are constants."""
    if node.op_type not in ("Shape", "Size") or node.input[0] not in ctx.graph.values:
        return False
    shape = ctx.graph.shape(node.input[0])
    if node.op_type == "Size":
        value = np.asarray(int(np.prod(shape)), dtype=np.int64)
    else:
        start, end = int(a.get("start", 0)), a.get("end")
        value = np.asarray(shape[start:end if end is None else int(end)], dtype=np.int64)
    ctx.graph.add_constant(node.output[0], value)
    return True


def _fold_constant_node(ctx: ImportContext, node: onnx.NodeProto) -> bool:
    """Evaluate a node whose inputs are all constants (shape arithmetic) into constants."""
    if node.op_type in ("Dropout",) or any(i and i not in ctx.graph.constants for i in node.input):
        return False
    if node.domain not in ("", "ai.onnx"):
        return False
    feeds = {i: ctx.graph.constants[i] for i in node.input if i}
    try:
        results = evaluate_onnx_node(node, feeds, ctx.opset)
    except Exception:
        return False
    for name, val in zip(node.output, results, strict=False):
        if name:
            ctx.graph.add_constant(name, np.asarray(val))
    return True


# --- driver -----------------------------------------------------------------------------------------

def _value_types(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...] | None, str]]:
    types = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        if not tt.elem_type:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        shape = tuple(dims) if tt.HasField("shape") and all(d is not None for d in dims) else None
        types[vi.name] = (shape, dtype)
    return types


def import_onnx_model(model: onnx.ModelProto, source: str = "<model>") -> Graph:
    """Convert a simplified, shape-inferred ONNX model into the IR (no passes run)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    g = Graph(name=model.graph.name or Path(source).stem)
    g.metadata = {p.key: p.value for p in model.metadata_props}
    ctx = ImportContext(g, source, opset, _value_types(model))

    for init in model.graph.initializer:
        g.add_constant(init.name, numpy_helper.to_array(init).copy())
    for inp in model.graph.input:
        if inp.name in g.constants:
            continue
        shape, dtype = ctx.shapes.get(inp.name, (None, "float32"))
        if shape is None:
            raise VccError(f"{source}: input {inp.name!r} has no static shape")
        g.add_value(inp.name, shape, dtype)
        g.inputs.append(inp.name)

    for node in model.graph.node:
        a = _attrs(node)
        if node.op_type == "Constant":
            g.add_constant(node.output[0], numpy_helper.to_array(a["value"]) if "value" in a
                           else _constant_from_attr(a, node, source))
            continue
        if _fold_shape(ctx, node, a) or _fold_constant_node(ctx, node):
            continue
        handler = IMPORTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if handler is None:
            ctx.unsupported.append((node.op_type if not node.domain else f"{node.domain}.{node.op_type}",
                                    node.name or node.output[0]))
            for k, out in enumerate(node.output):
                if out and out in ctx.shapes and ctx.shapes[out][0] is not None:
                    ctx.declare_output(node, k)
            continue
        handler(ctx, node, a)

    if ctx.unsupported:
        by_op: dict[str, list[str]] = {}
        for op, name in ctx.unsupported:
            by_op.setdefault(op, []).append(name)
        listing = "; ".join(f"{op} ({len(ns)}x: {', '.join(ns[:5])}{', ...' if len(ns) > 5 else ''})"
                            for op, ns in sorted(by_op.items()))
        raise VccError(f"{source}: unsupported ONNX op types: {listing}")

    for out in model.graph.output:
        if out.name in g.constants and out.name not in g.outputs:
            raise VccError(f"{source}: graph output {out.name!r} is a constant; nothing to compile")
        g.outputs.append(out.name)
    _drop_unused_constants(g)
    verify_graph(g)
    return g


def _constant_from_attr(a: dict, node: onnx.NodeProto, source: str) -> np.ndarray:
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    raise VccError(f"{source}: Constant node {node.name!r} has an unsupported value attribute {list(a)}")


def _drop_unused_constants(g: Graph) -> None:
    used = {i for n in g.nodes for i in n.inputs} | set(g.outputs)
    for name in [c for c in g.constants if c not in used]:
        del g.constants[name]
        del g.values[name]
    # values of folded nodes no longer exist anywhere
    defined = set(g.inputs) | set(g.constants) | {o for n in g.nodes for o in n.outputs}
    for name in [v for v in g.values if v not in defined]:
        del g.values[name]


def load_model(path: str | os.PathLike, input_shape: Sequence[int] | None = None) -> Graph:
    """Read an ONNX file into the IR: validate, fix input shapes, onnxsim, shape inference, import."""
    source = str(path)
    model = load_onnx_file(path)
    fix_input_shapes(model, input_shape, source)
    model = simplify(model, source)
    return import_onnx_model(model, source)
