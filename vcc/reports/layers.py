"""Per-layer errors of a quantized model: graphwise (accumulated from the input) and layerwise
(this node alone quantized, fed with fp32 inputs), as SQNR, cosine and relative error.

The tensors come from the QDQ simulation, rebuilt from the fp32 model, the artifact's manifest
(fallback, int8 nodes) and its calibration.json exactly as the build made it, and run by ONNX
Runtime with graph optimisation off (a pure float simulation of the int8 arithmetic):

- graphwise: the QDQ model's tensor at the end of each quantized node (after its fused
  activation, before any QuantizeLinear of it) against the fp32 model's;
- layerwise: one augmented fp32 model holds, beside the fp32 graph, a quantized copy of every
  quantized node (input QDQ with the node's input scale, int8 weights, int32 bias, its fused
  activation) fed by the fp32 tensors, so one ORT run per image gives every node's layerwise
  output. Q/DQ sit on the inputs of int8 nodes, so a tensor's quantization is charged to the
  nodes that read it in int8, never to the node that wrote it.

This module reads graphs and results; it never changes the graphs it is given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vcc.errors import VccError
from vcc.ir.graph import Graph, Node
from vcc.passes.blocks import block_of
from vcc.passes.quantize import (
    FUSED_ACTIVATIONS,
    QuantPlan,
    TensorQuant,
    insert_qdq,
    plan_quantization,
)

# A reference tensor below this RMS is numerically zero: float32 activations of a working network
# are ~1e-4..1e3, and the weights of dead channels of trained nets decay to ~1e-41.
NO_SIGNAL_RMS = 1e-20


@dataclass
class ErrorStats:
    """Streaming error of a test tensor against a reference over several images: energies and
    dot products add up, so SQNR and cosine are over all elements of all images."""

    signal: float = 0.0
    noise: float = 0.0
    dot: float = 0.0
    test_energy: float = 0.0
    max_abs: float = 0.0
    max_ref: float = 0.0
    count: int = 0
    elements: int = 0

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float64).reshape(-1)
        t = np.asarray(test, dtype=np.float64).reshape(-1)
        if r.shape != t.shape:
            raise VccError(f"layer comparison: reference has {r.size} values, test {t.size}")
        d = t - r
        # einsum, not `@`: BLAS dot products fight ONNX Runtime's spinning threads for the cores
        self.signal += float(np.einsum("i,i->", r, r))
        self.noise += float(np.einsum("i,i->", d, d))
        self.dot += float(np.einsum("i,i->", r, t))
        self.test_energy += float(np.einsum("i,i->", t, t))
        if r.size:
            self.max_abs = float(np.maximum(self.max_abs, np.abs(d).max()))
            self.max_ref = float(np.maximum(self.max_ref, np.abs(r).max()))
        self.count += 1
        self.elements += r.size

    @property
    def sqnr_db(self) -> float:
        """10 log10(sum ref^2 / sum (test - ref)^2); +inf when identical."""
        if self.noise == 0:
            return math.inf
        if self.signal == 0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)

    @property
    def cosine(self) -> float:
        den = math.sqrt(self.signal * self.test_energy)
        if den == 0:
            return 1.0 if self.signal == self.test_energy else 0.0
        return self.dot / den

    @property
    def reference_rms(self) -> float:
        return math.sqrt(self.signal / self.elements) if self.elements else 0.0

    @property
    def rel_error(self) -> float:
        """max |test - ref| / max |ref|."""
        if self.max_ref > 0:
            return self.max_abs / self.max_ref
        return 0.0 if self.max_abs == 0 else math.inf


@dataclass
class QuantizedModel:
    """The fp32 IR after passes, its quantization plan and activation quantization, and the QDQ IR
    made from them."""

    fp32: Graph
    qdq: Graph
    plan: QuantPlan
    quant: dict[str, TensorQuant]

    @staticmethod
    def make(fp32: Graph, plan: QuantPlan, quant: Mapping[str, TensorQuant]) -> QuantizedModel:
        return QuantizedModel(fp32, insert_qdq(fp32, plan, quant), plan, dict(quant))


def quant_from_calibration(document: dict, plan: QuantPlan, where: str = "calibration.json") -> dict[str, TensorQuant]:
    """The per-tensor quantization a build used, read from its calibration document."""
    try:
        records = {r["name"]: r for r in document["tensors"]}
    except (KeyError, TypeError) as e:
        raise VccError(f"{where}: not a calibration document (it lacks {e})") from e
    missing = [t for t in plan.tensors if t not in records]
    if missing:
        raise VccError(f"{where}: no calibration record for tensors {missing[:5]} of the rebuilt "
                       f"quantization plan (is --ref the model the artifact was built from?)")
    try:
        return {t: TensorQuant(float(records[t]["scale"]), str(records[t]["dtype"]),
                               float(records[t]["threshold"])) for t in plan.tensors}
    except (KeyError, TypeError, ValueError) as e:
        raise VccError(f"{where}: a tensor record lacks {e}") from e


def rebuild_quantized_model(model: str | os.PathLike, manifest: dict, calibration: dict) -> QuantizedModel:
    """The QDQ model of an int8 artifact, rebuilt from its fp32 source model, its manifest
    (input shape, quantization fallback and int8 nodes) and its calibration document."""
    from vcc.frontends.onnx_import import load_model
    from vcc.passes import PassManager, default_fp32_pipeline

    quantization = manifest.get("quantization")
    if not quantization:
        raise VccError("the artifact's manifest has no quantization section: it is not an int8 artifact")
    graph = load_model(model, tuple(manifest["inputs"][0]["shape"]))
    graph = PassManager(default_fp32_pipeline()).run(graph)
    plan = plan_quantization(graph, quantization.get("fallback", []), quantization.get("attention_fp32", True),
                             block_rules=quantization.get("block_rules", True),
                             output_fp32=quantization.get("output_fp32", False))  # absent: built before the rule
    expected = quantization.get("int8_nodes")
    if expected is not None and set(expected) != set(plan.nodes):
        diff = sorted(set(expected) ^ set(plan.nodes))
        raise VccError(f"{model}: its quantization plan differs from the artifact's (int8 nodes "
                       f"{diff[:5]} differ): is it the model the artifact was built from?")
    return QuantizedModel.make(graph, plan, quant_from_calibration(calibration, plan))


def fused_chain(g: Graph, node: Node, consumers: Mapping[str, list[Node]] | None = None) -> list[Node]:
    """The fused activations after a quantized node (each the only consumer of the previous),
    as the quantization plan fuses them."""
    consumers = g.consumers() if consumers is None else consumers
    chain: list[Node] = []
    out = node.outputs[0]
    while True:
        cons = consumers.get(out, [])
        if out in g.outputs or len(cons) != 1 or cons[0].op not in FUSED_ACTIVATIONS:
            return chain
        act = cons[0]
        if act.op == "PRelu" and not g.is_const(act.inputs[1]):
            return chain
        chain.append(act)
        out = act.outputs[0]


def _add_qdq(g: Graph, t: str, src: str, q: TensorQuant, prefix: str, nodes: list[Node]) -> str:
    """Append QuantizeLinear -> DequantizeLinear of tensor `src` (quantized as `t`) to `nodes`."""
    scale = g.add_constant(g.fresh_name(f"{prefix}/scale"), np.float32(q.scale))
    zp = g.add_constant(g.fresh_name(f"{prefix}/zero_point"), np.zeros((), dtype=q.dtype))
    tq = g.fresh_name(f"{prefix}/quantized")
    g.add_value(tq, g.shape(t), q.dtype)
    tdq = g.fresh_name(f"{prefix}/dequantized")
    g.add_value(tdq, g.shape(t), "float32")
    nodes.append(Node("QuantizeLinear", g.fresh_name(f"{prefix}/QuantizeLinear"), [src, scale, zp], [tq]))
    nodes.append(Node("DequantizeLinear", g.fresh_name(f"{prefix}/DequantizeLinear"), [tq, scale, zp], [tdq]))
    return tdq


@dataclass
class LayerTap:
    """Where one quantized node's figures are read."""

    node: str
    op: str
    depth: int
    tensor: str  # the fp32 tensor at the end of the node (after its fused activation)
    graphwise: str  # that tensor in the QDQ model (dequantized when it is quantized)
    layerwise: str  # the node's quantized copy, fed with fp32 inputs, in the augmented model
    input_scale: float | None
    output_dtype: str
    output_scale: float | None
    graphwise_stats: ErrorStats = field(default_factory=ErrorStats)
    layerwise_stats: ErrorStats = field(default_factory=ErrorStats)


def _chunks(taps: list[LayerTap], sizes: list[int], max_bytes: int) -> list[list[LayerTap]]:
    """Consecutive taps grouped so that each group's tensors stay under max_bytes (a tap larger
    than that goes alone)."""
    out: list[list[LayerTap]] = []
    used = 0
    for tap, size in zip(taps, sizes, strict=True):
        if not out or used + size > max_bytes:
            out.append([])
            used = 0
        out[-1].append(tap)
        used += size
    return out


def layerwise_graph(qm: QuantizedModel) -> tuple[Graph, list[LayerTap]]:
    """The fp32 graph plus a quantized copy of every quantized node fed by the fp32 tensors;
    and per quantized node, the tensors to compare."""
    g = qm.fp32.copy()
    q = qm.qdq
    by_name = {n.name: n for n in g.nodes}
    qnodes = {n.name: n for n in q.nodes}
    qprod = q.producers()
    gcons = g.consumers()
    extra: list[Node] = []
    taps: list[LayerTap] = []
    for depth, name in enumerate(qm.plan.nodes):
        n, qn = by_name[name], qnodes[name]
        prefix = f"{name}/layerwise"
        x = n.inputs[0]
        inputs = [_add_qdq(g, x, x, qm.quant[x], f"{prefix}/input", extra) if x in qm.quant else x]
        for i in qn.inputs[1:]:  # the int8 weight and int32 bias, dequantized as in the QDQ model
            p = qprod.get(i)
            if p is not None and p.op == "DequantizeLinear" and i not in g.values:
                for c in p.inputs:
                    if c and c not in g.constants:
                        g.add_constant(c, q.constants[c])
                g.add_value(i, q.shape(i), "float32")
                extra.append(Node(p.op, p.name, list(p.inputs), [i], dict(p.attrs)))
            inputs.append(i)
        chain = [n, *fused_chain(g, n, gcons)]
        prev = inputs[0]
        for k, m in enumerate(chain):
            out = g.fresh_name(f"{prefix}/{m.op}_output")
            g.add_value(out, g.shape(m.outputs[0]), g.values[m.outputs[0]].dtype)
            ins = inputs if k == 0 else [prev, *m.inputs[1:]]
            extra.append(Node(m.op, g.fresh_name(f"{prefix}/{k}_{m.op}"), list(ins), [out], dict(m.attrs)))
            prev = out
        t = chain[-1].outputs[0]
        # read before any QuantizeLinear of t: that rounding is charged to the nodes reading t in int8
        graphwise = t
        taps.append(LayerTap(name, n.op, depth, t, graphwise, prev,
                             qm.quant[x].scale if x in qm.quant else None,
                             qm.quant[t].dtype if t in qm.quant else "float32",
                             qm.quant[t].scale if t in qm.quant else None))
    g.nodes = g.nodes + extra
    return g, taps


class LayerAnalysis:
    """Runs the QDQ model and the layerwise-augmented fp32 model in ONNX Runtime (optimisation
    off) image by image and accumulates every quantized node's graphwise and layerwise error.

    The tapped tensors are fetched in chunks of at most `max_bytes` (three tensors per node), so a
    large model at a large input does not hold every intermediate tensor at once; each extra
    chunk re-runs the models (ORT computes only what the chunk's outputs need)."""

    def __init__(self, qm: QuantizedModel, threads: int | None = None, max_bytes: int = 256 << 20):
        from vcc.frontends.onnx_export import export_onnx
        from vcc.runtime.reference import OrtSession

        self.qm = qm
        augmented, self.taps = layerwise_graph(qm)
        aug_outputs = [t.tensor for t in self.taps] + [t.layerwise for t in self.taps]
        q_outputs = list(qm.qdq.outputs) + [t.graphwise for t in self.taps]
        self._aug = OrtSession(export_onnx(augmented, extra_outputs=aug_outputs), threads=threads, optimize=False)
        self._q = OrtSession(export_onnx(qm.qdq, extra_outputs=q_outputs), threads=threads, optimize=False)
        self.chunks = _chunks(self.taps, [3 * 4 * int(np.prod(qm.fp32.shape(t.tensor))) for t in self.taps],
                              max_bytes)
        self.images = 0

    def add(self, x: np.ndarray) -> np.ndarray:
        """Accumulate one input's per-layer errors; returns the QDQ simulation's first output."""
        final = None
        for chunk in self.chunks:
            n = len(chunk)
            aug = self._aug.run(x, outputs=[t.tensor for t in chunk] + [t.layerwise for t in chunk])
            heads = list(self.qm.qdq.outputs[:1]) if final is None else []
            qout = self._q.run(x, outputs=heads + [t.graphwise for t in chunk])
            if heads:
                final, qout = qout[0], qout[1:]
            for tap, ref, lw, gw in zip(chunk, aug[:n], aug[n:], qout, strict=True):
                tap.graphwise_stats.add(ref, gw)
                tap.layerwise_stats.add(ref, lw)
        if final is None:  # no quantized node
            final = self._q.run(x, outputs=self.qm.qdq.outputs[:1])[0]
        self.images += 1
        return final

    def records(self, blocks: Mapping[str, str | None] | None = None) -> list[dict]:
        """One record per quantized node, worst first: lowest layerwise SQNR (the error the node
        adds on its own), then lowest graphwise SQNR. A node's block is `blocks`' entry for it,
        else the block the fp32 IR's annotate_blocks pass put it in. A node whose fp32 output is
        numerically zero (weights decayed to denormals: trained nets have whole dead layers) has an
        SQNR of 0 dB or less that means nothing; it is marked `no_signal` and listed last."""
        blocks = {**block_of(self.qm.fp32), **(blocks or {})}
        out = [{
            "node": t.node, "op": t.op, "block": blocks.get(t.node), "depth": t.depth,
            "tensor": t.tensor, "output_dtype": t.output_dtype,
            "input_scale": t.input_scale, "output_scale": t.output_scale,
            "graphwise_sqnr_db": t.graphwise_stats.sqnr_db, "layerwise_sqnr_db": t.layerwise_stats.sqnr_db,
            "cosine": t.graphwise_stats.cosine, "layerwise_cosine": t.layerwise_stats.cosine,
            "graphwise_rel_error": t.graphwise_stats.rel_error,
            "layerwise_rel_error": t.layerwise_stats.rel_error,
            "reference_rms": t.graphwise_stats.reference_rms,
            "no_signal": t.graphwise_stats.reference_rms < NO_SIGNAL_RMS,
        } for t in self.taps]
        return sorted(out, key=lambda r: (r["no_signal"], r["layerwise_sqnr_db"], r["graphwise_sqnr_db"],
                                          r["depth"]))
