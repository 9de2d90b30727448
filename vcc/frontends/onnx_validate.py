"""Validation of an ONNX model before any third-party code (onnxsim, onnxruntime, TVM) sees it.

What a crash or a silent wrong build was made of (issue 20): zero strides (SIGFPE inside
onnxsim), zero dilations, negative pads, kernel_shape against the weights, dims of 2^31 (int64
overflow) or 1e9, opsets no ONNX knows, custom-domain ops, float64 or NaN / Inf weights, Resize
scales that are zero, negative, NaN, huge or of the wrong length, a graph with no outputs. Each
is one VccError naming the file, node, op or initializer.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

from vcc.errors import VccError

log = logging.getLogger(__name__)

MIN_OPSET = 7
MAX_DIM = 1 << 20           # per dimension of any static shape
MAX_ELEMENTS = 1 << 31      # elements of one tensor
MAX_RESIZE_SCALE = 1024.0
# ops whose float initializers are weights: NaN / Inf there is an error (an Inf elsewhere, a
# mask's -inf or a Clip bound, can be meant)
WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "PRelu",
              "InstanceNormalization", "LayerNormalization", "Add", "Mul", "Sub", "Div"}
CONV_POOL = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: a for a in node.attribute}


def _ints(a: onnx.AttributeProto) -> list[int]:
    if a.type == onnx.AttributeProto.INTS:
        return list(a.ints)
    if a.type == onnx.AttributeProto.INT:
        return [a.i]
    raise ValueError(f"attribute {a.name!r} must be a list of ints")


def _where(source: str, node: onnx.NodeProto) -> str:
    return f"{source}: node {node.name or (node.output[0] if node.output else '?')!r} ({node.op_type})"


def validate_model(model: onnx.ModelProto, source: str) -> None:
    """Raise a VccError for the first problem found; warn for the harmless ones."""
    g = model.graph
    _check_opsets(model, source)
    if len(g.output) == 0:
        raise VccError(f"{source}: the graph has no outputs; nothing to compute")
    custom = sorted({f"{n.domain}.{n.op_type}" for n in g.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise VccError(f"{source}: custom-domain ops are not supported: {', '.join(custom[:8])}"
                       f"{', ...' if len(custom) > 8 else ''}")
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        _check_dims(vi, source)
    consts = _check_initializers(model, source)
    for node in g.node:
        try:
            _check_node(node, consts, source)
        except ValueError as e:
            raise VccError(f"{_where(source, node)}: {e}") from e
    inits = {t.name for t in g.initializer}
    for inp in g.input:
        t = inp.type.tensor_type.elem_type if inp.type.HasField("tensor_type") else 0
        if inp.name not in inits and t != onnx.TensorProto.FLOAT:
            kind = onnx.TensorProto.DataType.Name(t) if t in onnx.TensorProto.DataType.values() else str(t)
            raise VccError(f"{source}: input {inp.name!r} is of type {kind}; vcc compiles models with "
                           "float32 inputs")
    _check_metadata({p.key: p.value for p in model.metadata_props}, source)


def _check_metadata(meta: dict[str, str], source: str) -> None:
    """vcc's own metadata keys (written by `vcc export`): well-formed, or an error naming the key."""
    import json

    key = "vcc.preprocess"
    if key in meta:
        try:
            pre = json.loads(meta[key])
        except ValueError as e:
            raise VccError(f"{source}: metadata {key!r} is not valid JSON ({e})") from e
        if not isinstance(pre, dict):
            raise VccError(f"{source}: metadata {key!r} must be a JSON object, got {type(pre).__name__}")
        size = pre.get("size")
        if size is not None and (not isinstance(size, list) or len(size) != 2 or
                                 not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_DIM
                                         for v in size)):
            raise VccError(f"{source}: metadata {key!r}: size must be [H, W] of positive ints, got {size!r}"[:300])
        for field in ("mean", "std"):
            vals = pre.get(field)
            if vals is None:
                continue
            if not isinstance(vals, list) or len(vals) != 3 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in vals):
                raise VccError(f"{source}: metadata {key!r}: {field} must be 3 finite numbers, got {vals!r}"[:300])
            if field == "std" and any(v <= 0 for v in vals):
                raise VccError(f"{source}: metadata {key!r}: std must be positive, got {vals!r}")
        color = pre.get("color")
        if color is not None and color not in ("RGB", "BGR"):
            raise VccError(f"{source}: metadata {key!r}: color must be RGB or BGR, got {color!r}"[:300])
    if "vcc.classes" in meta:
        v = meta["vcc.classes"]
        if not v.isdigit() or int(v) <= 0:
            raise VccError(f"{source}: metadata 'vcc.classes' must be a positive integer, got {v[:40]!r}")


def _check_opsets(model: onnx.ModelProto, source: str) -> None:
    newest = onnx.defs.onnx_opset_version()
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default:
        raise VccError(f"{source}: the model imports no default-domain (ai.onnx) opset")
    for v in default:
        if not MIN_OPSET <= v <= newest:
            raise VccError(f"{source}: opset {v} is outside the range this vcc knows "
                           f"({MIN_OPSET}..{newest}); re-export the model with a supported opset")


def _check_dims(vi: onnx.ValueInfoProto, source: str) -> None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return
    dims = [d.dim_value for d in tt.shape.dim if d.HasField("dim_value")]
    if len(dims) < len(tt.shape.dim):
        return  # symbolic dims: fix_input_shapes and the importer report those
    for d in dims:
        if d <= 0 or d > MAX_DIM:
            raise VccError(f"{source}: value {vi.name!r} has shape {dims}: every dim must be in "
                           f"[1, {MAX_DIM}]")
    if int(np.prod(dims, dtype=object)) > MAX_ELEMENTS:
        raise VccError(f"{source}: value {vi.name!r} of shape {dims} has more than {MAX_ELEMENTS} elements")


def _check_initializers(model: onnx.ModelProto, source: str) -> dict[str, np.ndarray]:
    """The model's constants (initializers and Constant nodes), checked: dims, dtype, finiteness."""
    g = model.graph
    users: dict[str, set[str]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, set()).add(n.op_type)
    tensors = [(t.name, t, "initializer") for t in g.initializer]
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    tensors.append((n.output[0], a.t, "Constant"))
    consts = {}
    for name, t, kind in tensors:
        if any(d < 0 or d > MAX_DIM for d in t.dims) or int(np.prod(list(t.dims), dtype=object)) > MAX_ELEMENTS:
            raise VccError(f"{source}: {kind} {name!r} has dims {list(t.dims)} out of range")
        try:
            arr = numpy_helper.to_array(t)
        except Exception as e:
            raise VccError(f"{source}: {kind} {name!r} cannot be read ({str(e).splitlines()[0][:120]})") from e
        weight_of = users.get(name, set()) & WEIGHT_OPS
        if arr.dtype == np.float64 and weight_of:
            raise VccError(f"{source}: {kind} {name!r} (input of {', '.join(sorted(weight_of))}) is float64; "
                           "vcc compiles float32 models: export the model in float32")
        if arr.dtype.kind == "f" and arr.size:
            if np.isnan(arr).any():
                raise VccError(f"{source}: {kind} {name!r} holds NaN values")
            if weight_of and not np.isfinite(arr).all():
                raise VccError(f"{source}: {kind} {name!r} (input of {', '.join(sorted(weight_of))}) "
                               "holds infinite values")
        consts[name] = arr
    return consts


def _check_node(node: onnx.NodeProto, consts: dict[str, np.ndarray], source: str) -> None:
    a = _attrs(node)
    op = node.op_type
    if op in CONV_POOL:
        for key in ("strides", "dilations", "kernel_shape"):
            if key in a and any(v <= 0 for v in _ints(a[key])):
                raise ValueError(f"{key} {_ints(a[key])} must be positive")
        if "pads" in a and any(v < 0 for v in _ints(a["pads"])):
            raise ValueError(f"pads {_ints(a['pads'])} must be non-negative")
        if "group" in a and a["group"].i <= 0:
            raise ValueError(f"group {a['group'].i} must be positive")
        if op in ("MaxPool", "AveragePool", "LpPool") and "kernel_shape" not in a:
            raise ValueError("kernel_shape is missing")
        spatial = len(_ints(a["kernel_shape"])) if "kernel_shape" in a else None
        if op in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in consts:
            w = consts[node.input[1]]
            if w.ndim < 3:
                raise ValueError(f"weight {node.input[1]!r} has shape {list(w.shape)}, not [M, C, kH, kW]")
            if "kernel_shape" in a and _ints(a["kernel_shape"]) != list(w.shape[2:]):
                raise ValueError(f"kernel_shape {_ints(a['kernel_shape'])} does not match the weight "
                                 f"{node.input[1]!r} of shape {list(w.shape)}")
            spatial = w.ndim - 2
            if len(node.input) > 2 and node.input[2] in consts:
                b = consts[node.input[2]]
                n_out = w.shape[0] if op == "Conv" else w.shape[1] * (a["group"].i if "group" in a else 1)
                if b.shape != (n_out,):
                    raise ValueError(f"bias {node.input[2]!r} has shape {list(b.shape)}, expected [{n_out}]")
        if spatial is not None:
            for key, n in (("strides", spatial), ("dilations", spatial), ("pads", 2 * spatial)):
                if key in a and len(_ints(a[key])) != n:
                    raise ValueError(f"{key} {_ints(a[key])} must have {n} values")
    elif op in ("Resize", "Upsample"):
        _check_resize(node, a, consts)


def _check_resize(node: onnx.NodeProto, a: dict, consts: dict[str, np.ndarray]) -> None:
    """Constant scales / sizes must make sense on their own (their agreement with the shapes is
    checked by the importer, which knows them)."""
    if "scales" in a:  # Upsample-7
        scales = np.asarray(a["scales"].floats, np.float64)
    else:
        idx = 1 if node.op_type == "Upsample" or len(node.input) == 2 else 2
        name = node.input[idx] if len(node.input) > idx else ""
        scales = consts.get(name) if name else None
    if scales is not None and scales.size:
        s = np.asarray(scales, np.float64).ravel()
        if not np.isfinite(s).all() or (s <= 0).any() or (s > MAX_RESIZE_SCALE).any():
            raise ValueError(f"scales {s.tolist()} must be finite, positive and at most {MAX_RESIZE_SCALE:g}")
    if node.op_type == "Resize" and len(node.input) > 3 and node.input[3] in consts:
        sizes = np.asarray(consts[node.input[3]]).ravel()
        if sizes.size and ((sizes <= 0).any() or (sizes > MAX_DIM).any()):
            raise ValueError(f"sizes {sizes.tolist()} must be in [1, {MAX_DIM}]")
