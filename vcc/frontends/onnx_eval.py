"""Evaluate single ONNX nodes on constant inputs (onnx's reference evaluator).

Used to fold shape arithmetic at import and constant subgraphs in the fold-constants pass:
one evaluator with ONNX's own semantics instead of a numpy re-implementation per op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator


def evaluate_onnx_nodes(nodes: Sequence[onnx.NodeProto], feeds: Mapping[str, np.ndarray],
                        outputs: Sequence[str], opset: int) -> list[np.ndarray]:
    """Run a small list of ONNX nodes whose inputs are all in `feeds`; return `outputs`."""
    inputs = [onnx.helper.make_tensor_value_info(k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for k, v in feeds.items()]
    outs = [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs]
    graph = onnx.helper.make_graph(list(nodes), "fold", inputs, outs)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = 8
    sess = ReferenceEvaluator(model)
    return [np.asarray(r) for r in sess.run(list(outputs), {k: np.asarray(v) for k, v in feeds.items()})]


def evaluate_onnx_node(node: onnx.NodeProto, feeds: Mapping[str, np.ndarray], opset: int) -> list[np.ndarray]:
    return evaluate_onnx_nodes([node], feeds, [o for o in node.output if o], opset)
