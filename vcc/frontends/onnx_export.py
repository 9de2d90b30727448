"""Graph IR -> ONNX (opset 17), so ONNX Runtime can run what the passes produced.

Most IR ops are ONNX ops with the same attributes; the table `EXPORTERS` holds the ones whose
static attributes go back to constant inputs (Reshape's shape, Slice's starts, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from vcc.ir.graph import Graph, Node

EXPORT_OPSET = 17


class _Emitter:
    def __init__(self, g: Graph):
        self.g = g
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used = set(g.values)

    def const(self, base: str, array) -> str:
        name = base
        k = 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "",
             **attrs) -> None:
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))


Exporter = Callable[[_Emitter, Node], None]
EXPORTERS: dict[str, Exporter] = {}


def exporter(*ops: str) -> Callable[[Exporter], Exporter]:
    def deco(fn: Exporter) -> Exporter:
        for op in ops:
            EXPORTERS[op] = fn
        return fn

    return deco


def _plain(em: _Emitter, n: Node) -> None:
    em.node(n.op, list(n.inputs), list(n.outputs), n.name, **n.attrs)


@exporter("Clip")
def _clip(em, n):
    lo, hi = n.attrs["min"], n.attrs["max"]
    ins = [n.inputs[0],
           em.const(f"{n.name}_min", np.float32(lo)) if np.isfinite(lo) else "",
           em.const(f"{n.name}_max", np.float32(hi)) if np.isfinite(hi) else ""]
    while ins and not ins[-1]:
        ins.pop()
    em.node("Clip", ins, list(n.outputs), n.name)


@exporter("Reshape", "Expand")
def _reshape(em, n):
    shape = em.const(f"{n.name}_shape", np.asarray(n.attrs["shape"], dtype=np.int64))
    em.node(n.op, [n.inputs[0], shape], list(n.outputs), n.name)


@exporter("Split")
def _split(em, n):
    split = em.const(f"{n.name}_split", np.asarray(n.attrs["split"], dtype=np.int64))
    em.node("Split", [n.inputs[0], split], list(n.outputs), n.name, axis=n.attrs["axis"])


@exporter("Slice")
def _slice(em, n):
    a = dict(n.attrs)
    # the IR's end -1 with a negative step means "through index 0"; ONNX spells that INT64_MIN
    a["ends"] = [np.iinfo(np.int64).min if (st < 0 and e < 0) else e for e, st in zip(a["ends"], a["steps"], strict=True)]
    ins = [n.inputs[0]] + [em.const(f"{n.name}_{k}", np.asarray(a[k], dtype=np.int64))
                           for k in ("starts", "ends", "axes", "steps")]
    em.node("Slice", ins, list(n.outputs), n.name)


@exporter("Pad")
def _pad(em, n):
    a = n.attrs
    ins = [n.inputs[0], em.const(f"{n.name}_pads", np.asarray(a["pads"], dtype=np.int64))]
    if a["mode"] == "constant":
        ins.append(em.const(f"{n.name}_value", np.float32(a["value"])))
    em.node("Pad", ins, list(n.outputs), n.name, mode=a["mode"])


@exporter("Gather")
def _gather(em, n):
    idx = np.asarray(n.attrs["indices"], dtype=np.int64).reshape(n.attrs["indices_shape"])
    em.node("Gather", [n.inputs[0], em.const(f"{n.name}_indices", idx)], list(n.outputs), n.name,
            axis=n.attrs["axis"])


@exporter("ReduceSum")
def _reduce_sum(em, n):
    axes = em.const(f"{n.name}_axes", np.asarray(n.attrs["axes"], dtype=np.int64))
    em.node("ReduceSum", [n.inputs[0], axes], list(n.outputs), n.name, keepdims=n.attrs["keepdims"])


@exporter("Cast")
def _cast(em, n):
    to = helper.np_dtype_to_tensor_dtype(np.dtype(n.attrs["to"]))
    em.node("Cast", [n.inputs[0]], list(n.outputs), n.name, to=to)


@exporter("Resize")
def _resize(em, n):
    a = n.attrs
    shape = em.g.shape(n.inputs[0])
    sizes = em.const(f"{n.name}_sizes", np.asarray(list(shape[:2]) + list(a["size"]), dtype=np.int64))
    extra = {}
    if a["mode"] == "nearest":
        extra["nearest_mode"] = a["nearest_mode"]
    if a["mode"] == "cubic":
        extra["cubic_coeff_a"] = a["cubic_coeff_a"]
        extra["exclude_outside"] = a["exclude_outside"]
    em.node("Resize", [n.inputs[0], "", "", sizes], list(n.outputs), n.name, mode=a["mode"],
            coordinate_transformation_mode=a["coordinate_transformation_mode"], **extra)


def export_nodes(g: Graph, nodes: Iterable[Node]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    em = _Emitter(g)
    for n in nodes:
        EXPORTERS.get(n.op, _plain)(em, n)
    return em.nodes, em.initializers


def _value_info(g: Graph, name: str) -> onnx.ValueInfoProto:
    v = g.values[name]
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)),
                                         list(v.shape))


def export_onnx(g: Graph, extra_outputs: Iterable[str] = (), with_value_info: bool = True) -> onnx.ModelProto:
    """The IR as an ONNX model; `extra_outputs` adds intermediate values as graph outputs
    (observers and layer-wise comparisons read them through ONNX Runtime)."""
    nodes, inits = export_nodes(g, g.nodes)
    inits += [numpy_helper.from_array(np.asarray(arr), name) for name, arr in g.constants.items()]
    outputs = list(g.outputs) + [o for o in extra_outputs if o not in g.outputs]
    node_outputs = {o for n in g.nodes for o in n.outputs}
    value_info = [_value_info(g, v) for v in node_outputs if v not in outputs] if with_value_info else []
    graph = helper.make_graph(nodes, g.name, [_value_info(g, i) for i in g.inputs],
                              [_value_info(g, o) for o in outputs], initializer=inits,
                              value_info=value_info)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)],
                              producer_name="vcc")
    model.ir_version = 8
    for k, v in g.metadata.items():
        model.metadata_props.add(key=k, value=v)
    return model
