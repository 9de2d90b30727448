"""The reference executor: ONNX Runtime on the CPU, the one way vcc runs ORT."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def ort_quantize_static(fp32: Path, out: Path, calib_inputs: list[np.ndarray], method: str) -> Path:
    """ONNX Runtime's own int8 model of `fp32`, written to `out`: quantize_static as a careful
    user configures it (quant_pre_process, QDQ, per-channel int8 weights, uint8 activations)
    with the Entropy, Percentile or MinMax calibrator on `calib_inputs`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(fp32)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: x} for x in calib_inputs])

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    cm = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
          "minmax": CalibrationMethod.MinMax}[method]
    with contextlib.redirect_stdout(sys.stderr):  # its calibrators print progress to stdout
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=cm)
    return out
