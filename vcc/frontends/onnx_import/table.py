"""The import table and the state its handlers share.

`IMPORTERS` maps an ONNX op type to its handler, registered with `@importer(...)` by the op-family
modules of this package; `ImportContext` is what a handler reads (the graph built so far, the
shapes from ONNX shape inference, the opset) and writes (IR nodes and values). The helpers below
are the attribute and shape normalisations more than one family needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from vcc.errors import VccError
from vcc.ir.graph import Graph, Node


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


def node_attrs(node: onnx.NodeProto) -> dict:
    """An ONNX node's attributes as Python values."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def norm_axis(axis: int, rank: int) -> int:
    """`axis` in [-rank, rank) as a non-negative axis; out of range is a ValueError (the import
    driver names the node)."""
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for a {rank}-D tensor")
    return axis + rank if axis < 0 else axis


def explicit_pads(node, a, in_hw, kernel, strides, dilations, source) -> list[int]:
    """A conv or pool's pads [top, left, bottom, right], its auto_pad resolved against the input size."""
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


def check_2d(ctx: ImportContext, node: onnx.NodeProto, name: str) -> tuple[int, ...]:
    """The shape of a 4-D (NCHW) input; any other rank is an error naming the node."""
    shape = ctx.input_shape(name)
    if len(shape) != 4:
        raise VccError(f"{ctx.source}: node {node.name!r} ({node.op_type}) on a {len(shape)}-D "
                       f"input {shape}: only 2-D (NCHW) is supported")
    return shape


def text_attr(v, default: str) -> str:
    """A string attribute (onnx gives bytes), or `default` when absent."""
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else v

