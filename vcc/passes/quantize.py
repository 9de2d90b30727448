"""int8 quantization: which nodes and tensors are quantized, and the QDQ rewrite.

The scheme (TensorRT-style symmetric, chosen for the VNNI u8 x s8 dot product):
- weights: int8 per output channel, symmetric, scale = max|w_c| / 127;
- activations: one scale per tensor, zero point 0: uint8 (scale = T / 255) for tensors that are
  never negative in calibration (post-ReLU, pooled, ...), int8 (scale = T / 127) otherwise, T the
  calibrated threshold on |x|. Zero points stay 0 so padding is exact and no zero-point
  correction terms are needed; VNNI's unsigned operand takes uint8 tensors directly and int8
  ones shifted by 128 with the correction folded into the bias (a codegen concern);
- bias: int32 with scale s_in * s_w[c];
- the tensors joined by a Concat share one scale (concat is a copy of int8 data), as do the input
  and output of max-pooling, nearest resize, reshape and transpose;
- block rules (vcc.passes.blocks recognises the blocks): the convolutions of an `arm` / `ffm`
  block's attention vector and of an `aspp` / `ppm` block's pooling branches (convs on a 1x1
  map) stay fp32: their cost is nil and the sigmoid gates are the known weak spot (measured on
  the trained BiSeNet-shaped net: 99.82% argmax agreement with fp32 vs 99.77% quantized, output
  SQNR 43.9 vs 36.3 dB); the gated product is quantized once, where the next int8 conv reads it.
  Outside recognised blocks the same holds for any conv on a 1x1 map (`attention_fp32`: SE gates
  and pooling branches no pattern describes);
- the convs that write the model's output (logits, reached through resizes, reshapes, softmax and
  the like only) stay fp32 (`output_fp32`): their output channels are the classes, so their
  cost is a fraction of a percent of the MACs, and quantizing their input is the last rounding and
  clipping before the argmax. On the trained DeepLabV3-MobileNetV2 it was the largest single
  loss: argmax agreement with fp32 96.28% -> 96.70% on 240 non-calibration photos, SQNR 16.7 ->
  18.2 dB (the tensor it reads has a long tail that 50 calibration photos under-estimate: max
  8.4 in calibration, 13.6 on other photos);
- a fused activation (Relu, Clip, LeakyRelu, PRelu) after a quantized node is part of it;
- Q/DQ sit on the inputs of int8 nodes only (an output is quantized where an int8 reader needs it);
- ConvTranspose is int8 like Conv (its schedule runs it as s*s stride-1 VNNI phase convs); on
  the trained MobileNetV2 U-Net it costs 0.02 points of agreement with fp32 (97.77% -> 97.75%)
  and saves a third of the int8 latency (`quantize_conv_transpose=False` keeps it fp32).

The rewrite inserts QuantizeLinear -> DequantizeLinear pairs (ONNX QDQ form): the rewritten IR
exports as a QDQ ONNX model that ONNX Runtime runs as the numerical reference, and the
lowering turns DQ -> Conv patterns into integer convolutions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from vcc.errors import VccError
from vcc.ir.graph import Graph, Node

QUANTIZABLE = ("Conv", "ConvTranspose", "MatMul")
FUSED_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "PRelu")
PASS_THROUGH = ("MaxPool", "Reshape", "Transpose", "GlobalMaxPool")  # + nearest Resize, Concat
# ops between the logits conv and the model output that compute nothing a conv would (output_fp32)
TO_OUTPUT = ("Resize", "Identity", "Reshape", "Transpose", "Softmax", "LogSoftmax", "Sigmoid", "ArgMax",
             "Cast", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split", *FUSED_ACTIVATIONS)
INT8_MAX, UINT8_MAX = 127, 255


@dataclass
class QuantPlan:
    """What the int8 build quantizes: computed from the fp32 IR before calibration."""

    nodes: list[str]  # quantized compute nodes
    tensors: list[str]  # activation tensors that get a QuantizeLinear (observed in calibration)
    groups: dict[str, str]  # tensor -> representative of its shared-scale group
    skipped: dict[str, str] = field(default_factory=dict)  # compute node -> why it stays fp32

    def group_members(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in self.tensors:
            out.setdefault(self.groups[t], []).append(t)
        return out


@dataclass(frozen=True)
class TensorQuant:
    """The quantization of one activation tensor."""

    scale: float
    dtype: str  # "uint8" or "int8"
    threshold: float

    @staticmethod
    def from_threshold(threshold: float, unsigned: bool) -> TensorQuant:
        threshold = max(float(threshold), 1e-12)
        levels = UINT8_MAX if unsigned else INT8_MAX
        return TensorQuant(np.float32(threshold / levels).item(), "uint8" if unsigned else "int8", threshold)


def _find(parent: dict[str, str], a: str) -> str:
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


def _weight_operand(g: Graph, n: Node) -> int | None:
    """Index of the constant weight input of a quantizable node, or None if it has none."""
    if n.op in ("Conv", "ConvTranspose"):
        return 1 if g.is_const(n.inputs[1]) else None
    if n.op == "MatMul":
        b = n.inputs[1]
        if g.is_const(b) and len(g.shape(b)) == 2 and not g.is_const(n.inputs[0]):
            return 1
    return None


ATTENTION_BLOCKS = ("arm", "ffm", "aspp", "ppm")  # blocks whose 1x1-map branches stay fp32


def output_writers(g: Graph, consumers: Mapping[str, list[Node]] | None = None) -> set[str]:
    """Quantizable nodes whose output reaches a graph output through TO_OUTPUT ops only (the
    convs that write the logits)."""
    consumers = g.consumers() if consumers is None else consumers
    out = set()
    for n in g.nodes:
        if n.op not in QUANTIZABLE:
            continue
        todo, seen = [n.outputs[0]], set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in g.outputs:
                out.add(n.name)
                break
            todo += [o for c in consumers.get(t, []) if c.op in TO_OUTPUT for o in c.outputs]
    return out


def plan_quantization(g: Graph, fallback: Iterable[str] = (), attention_fp32: bool = True,
                      quantize_outputs: bool = False, quantize_conv_transpose: bool = True,
                      block_rules: bool = True, output_fp32: bool = True) -> QuantPlan:
    """Choose the quantized nodes and tensors. `block_rules=False` quantizes the members of
    recognised blocks like any other node, `attention_fp32=False` also quantizes the convs on
    1x1 maps outside blocks, `output_fp32=False` also the convs that write the model output,
    `quantize_outputs=True` also every quantized node's output, and
    `quantize_conv_transpose=False` keeps the transposed convs fp32 (for measuring what each rule
    is worth)."""
    fallback = set(fallback)
    names = {n.name for n in g.nodes}
    unknown = sorted(fallback - names)
    if unknown:
        raise VccError(f"--fallback names nodes that do not exist: {', '.join(unknown)} "
                       f"(node names are listed by `vcc inspect MODEL`)")
    consumers = g.consumers()
    attention_block = {n: b for b in g.blocks if b.kind in ATTENTION_BLOCKS for n in b.nodes}
    writers = output_writers(g, consumers) if output_fp32 else set()
    nodes, skipped = [], {}
    inputs_q: list[str] = []
    outputs_q: list[str] = []
    for n in g.nodes:
        if n.op not in QUANTIZABLE:
            continue
        if n.name in fallback:
            skipped[n.name] = "--fallback"
            continue
        if _weight_operand(g, n) is None:
            skipped[n.name] = "no constant weight"
            continue
        if n.name in writers:
            skipped[n.name] = "writes the model output (logits): fp32"
            continue
        out_shape = g.shape(n.outputs[0])
        on_1x1 = n.op in ("Conv", "ConvTranspose") and out_shape[2] * out_shape[3] == 1
        block = attention_block.get(n.name)
        if on_1x1 and block is not None:
            if block_rules:
                what = "attention vector" if block.kind in ("arm", "ffm") else "pooling branch"
                skipped[n.name] = f"block rule: {block.name} {what} fp32"
                continue
        elif on_1x1 and attention_fp32:
            skipped[n.name] = "1x1 map (attention / pooling branch): fp32"
            continue
        if g.values[n.inputs[0]].dtype != "float32":
            skipped[n.name] = "non-float input"
            continue
        if n.op == "ConvTranspose" and not quantize_conv_transpose:
            skipped[n.name] = "ConvTranspose: fp32 (quantize_conv_transpose=False)"
            continue
        nodes.append(n.name)
        inputs_q.append(n.inputs[0])
        out = n.outputs[0]
        while True:  # a chain of fused activations, each the only consumer of the previous
            cons = consumers.get(out, [])
            if out in g.outputs or len(cons) != 1 or cons[0].op not in FUSED_ACTIVATIONS:
                break
            act = cons[0]
            if act.op == "PRelu" and not g.is_const(act.inputs[1]):
                break
            out = act.outputs[0]
        outputs_q.append(out)

    # Q/DQ on the inputs of quantized nodes only (TensorRT's placement): an output is quantized
    # only where an int8 consumer reads it (directly, or through a shared-scale Concat / pooling
    # below). Quantizing every output as well (quantize_outputs=True, ORT's placement) adds a
    # rounding and, with a KL threshold, clipping on tensors read in fp32 (residual Adds, bilinear
    # resizes, the logits before the final upsample) and costs a point or more on trained nets.
    chosen = inputs_q + outputs_q if quantize_outputs else inputs_q
    tensors = {t for t in chosen if t not in g.outputs and t not in g.constants}
    parent = {t: t for t in tensors}

    def union(a: str, b: str) -> None:
        for t in (a, b):
            parent.setdefault(t, t)
        ra, rb = _find(parent, a), _find(parent, b)
        if ra != rb:
            parent[rb] = ra

    # scale-sharing groups, grown until nothing changes (pass-through chains can be long)
    changed = True
    while changed:
        changed = False
        for n in g.nodes:
            out = n.outputs[0]
            if out not in tensors:
                continue
            shares = n.op in PASS_THROUGH or n.op == "Concat" or \
                (n.op == "Resize" and n.attrs.get("mode") == "nearest")
            if not shares:
                continue
            for i in n.inputs:
                if not i or i in g.constants or g.values[i].dtype != "float32" or i in g.outputs:
                    continue
                if i not in tensors:
                    tensors.add(i)
                    changed = True
                union(i, out)
    order = [v for n in g.nodes for v in n.outputs] + list(g.inputs)
    rank = {v: k for k, v in enumerate(order)}
    tensor_list = sorted(tensors, key=lambda t: rank.get(t, -1))
    return QuantPlan(nodes=nodes, tensors=tensor_list,
                     groups={t: _find(parent, t) if t in parent else t for t in tensor_list},
                     skipped=skipped)


def resolve_group_quant(plan: QuantPlan, thresholds: Mapping[str, float],
                        nonneg: Mapping[str, bool]) -> dict[str, TensorQuant]:
    """One TensorQuant per tensor: a shared-scale group takes its members' largest threshold and
    is unsigned only if every member is non-negative."""
    out: dict[str, TensorQuant] = {}
    for members in plan.group_members().values():
        th = max(thresholds[t] for t in members)
        unsigned = all(nonneg[t] for t in members)
        q = TensorQuant.from_threshold(th, unsigned)
        for t in members:
            out[t] = q
    return out


# --- the QDQ rewrite -------------------------------------------------------------------------------

# Bias codes are kept within 2**24 so that the int32 accumulator (bias + the sum of int8 x int8
# products) never overflows; ONNX Runtime's quantizer raises the weight scale for the same reason.
BIAS_CODE_MAX = float(2**24)
# Scales below float32's normal range would be flushed to zero by the kernels (and a weight that
# small contributes nothing): such a channel is quantized as all zero.
MIN_SCALE = float(np.finfo(np.float32).tiny)


def weight_scales(amax: np.ndarray, bias: np.ndarray | None = None,
                  s_in: float | None = None) -> np.ndarray:
    """Symmetric int8 scales for channels of largest magnitude `amax`.

    Raised where needed so that `bias / (s_in * scale)` fits in BIAS_CODE_MAX: trained networks
    have dead channels (weights decayed to ~1e-41) whose output is their bias, which the
    plain max/127 scale would clip to nothing in int32."""
    amax = np.asarray(amax, dtype=np.float64)
    scale = amax / INT8_MAX
    if bias is not None and s_in is not None:
        need = np.abs(np.asarray(bias, dtype=np.float64)) / (float(s_in) * BIAS_CODE_MAX)
        scale = np.maximum(scale, need)
    scale = np.where(scale >= MIN_SCALE, scale, 1.0)
    return scale.astype(np.float32)


def quantize_weights_per_channel(w: np.ndarray, axis: int, bias: np.ndarray | None = None,
                                 s_in: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per channel along `axis`: (int8 weights, float32 scales)."""
    moved = np.moveaxis(w.astype(np.float64), axis, 0).reshape(w.shape[axis], -1)
    scale = weight_scales(np.abs(moved).max(axis=1), bias, s_in)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def _weight_axis(g: Graph, n: Node) -> int | None:
    if n.op == "Conv":
        return 0
    if n.op == "ConvTranspose":
        return 1 if n.attrs["group"] == 1 else None  # grouped: per-tensor
    return 1  # MatMul B (K, N): per output column


def insert_qdq(graph: Graph, plan: QuantPlan, quant: Mapping[str, TensorQuant]) -> Graph:
    """Rewrite the fp32 IR into QDQ form with the given activation quantization."""
    g = graph.copy()
    new_nodes: list[Node] = []
    dq_of: dict[str, str] = {}
    qnodes = set(plan.nodes)
    quantized = set(plan.tensors)

    def qdq(t: str) -> list[Node]:
        q = quant[t]
        scale = g.add_constant(g.fresh_name(f"{t}_scale"), np.float32(q.scale))
        zp = g.add_constant(g.fresh_name(f"{t}_zero_point"), np.zeros((), dtype=q.dtype))
        tq = g.fresh_name(f"{t}_quantized")
        g.add_value(tq, g.shape(t), q.dtype)
        tdq = g.fresh_name(f"{t}_dequantized")
        g.add_value(tdq, g.shape(t), "float32")
        dq_of[t] = tdq
        return [Node("QuantizeLinear", g.fresh_name(f"{t}_QuantizeLinear"), [t, scale, zp], [tq]),
                Node("DequantizeLinear", g.fresh_name(f"{t}_DequantizeLinear"), [tq, scale, zp], [tdq])]

    for t in plan.tensors:  # graph inputs first
        if t in g.inputs:
            new_nodes.extend(qdq(t))
    for n in g.nodes:
        activation = n.inputs[0]
        n.inputs = [dq_of.get(i, i) for i in n.inputs]
        if n.name in qnodes:
            new_nodes.extend(_quantize_params(g, n, quant[activation].scale))
        new_nodes.append(n)
        for o in n.outputs:
            if o in quantized:
                new_nodes.extend(qdq(o))
    g.nodes = new_nodes
    g.outputs = list(graph.outputs)
    return g


def _quantize_params(g: Graph, n: Node, s_in: float) -> list[Node]:
    """Replace the node's weight (and bias) by DequantizeLinear of int8 (int32) constants."""
    out: list[Node] = []
    wname = n.inputs[1]
    w = g.constants[wname]
    axis = _weight_axis(g, n)
    has_bias = n.op in ("Conv", "ConvTranspose") and len(n.inputs) > 2 and bool(n.inputs[2])
    bias = g.constants[n.inputs[2]] if has_bias else None
    if axis is None:
        need = None if bias is None else np.abs(bias).max(initial=0.0)
        scale = weight_scales(np.abs(w).max(), need, s_in if bias is not None else None)
        wq = np.clip(np.round(w / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
        w_scale = np.asarray(scale, dtype=np.float32)
    else:
        per_channel_bias = bias if bias is not None and bias.shape == (w.shape[axis],) else None
        wq, w_scale = quantize_weights_per_channel(w, axis, per_channel_bias,
                                                   s_in if per_channel_bias is not None else None)
    wq_name = g.add_constant(g.fresh_name(f"{n.name}.weight_int8"), wq)
    ws_name = g.add_constant(g.fresh_name(f"{n.name}.weight_scale"), w_scale)
    wzp = g.add_constant(g.fresh_name(f"{n.name}.weight_zero_point"), np.zeros(w_scale.shape, np.int8))
    wdq = g.fresh_name(f"{n.name}.weight_dequantized")
    g.add_value(wdq, w.shape, "float32")
    attrs = {"axis": axis} if axis is not None and w_scale.ndim == 1 else {}
    out.append(Node("DequantizeLinear", g.fresh_name(f"{n.name}_weight_DequantizeLinear"),
                    [wq_name, ws_name, wzp], [wdq], attrs))
    n.inputs[1] = wdq
    if has_bias:
        b = bias.astype(np.float64)
        b_scale = (np.float64(s_in) * w_scale.astype(np.float64)).astype(np.float32)
        b_scale = np.broadcast_to(b_scale, b.shape).astype(np.float32).copy()
        bq = np.clip(np.round(b / b_scale), -(2**31), 2**31 - 1).astype(np.int32)
        bq_name = g.add_constant(g.fresh_name(f"{n.name}.bias_int32"), bq)
        bs_name = g.add_constant(g.fresh_name(f"{n.name}.bias_scale"), b_scale)
        bzp = g.add_constant(g.fresh_name(f"{n.name}.bias_zero_point"), np.zeros(b.shape, np.int32))
        bdq = g.fresh_name(f"{n.name}.bias_dequantized")
        g.add_value(bdq, b.shape, "float32")
        out.append(Node("DequantizeLinear", g.fresh_name(f"{n.name}_bias_DequantizeLinear"),
                        [bq_name, bs_name, bzp], [bdq], {"axis": 0}))
        n.inputs[2] = bdq
    return out
