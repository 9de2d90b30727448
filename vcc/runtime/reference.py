"""The reference executor: ONNX Runtime on the CPU, the one way vcc runs ORT."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort


class OrtSession:
    """An ONNX Runtime CPU session over a model file or proto, all optimisations on."""

    def __init__(self, model: onnx.ModelProto | str | os.PathLike, threads: int | None = None,
                 optimize: bool = True):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        if not optimize:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray] | np.ndarray,
            outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        if isinstance(feeds, np.ndarray):
            feeds = {self.input_names[0]: feeds}
        return self.session.run(list(outputs) if outputs else None, dict(feeds))
