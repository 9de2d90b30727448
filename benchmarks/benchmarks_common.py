"""Shared by the benchmark scripts: ONNX Runtime's own int8 quantizer, configured as a careful
user would (QDQ, per-channel int8 weights, uint8 activations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ort_quantize_static(fp32: Path, out: Path, calib_inputs: list[np.ndarray], method: str) -> Path:
    """quantize_static with the Entropy or Percentile calibrator on `calib_inputs`."""
    import onnx
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
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    cm = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
          "minmax": CalibrationMethod.MinMax}[method]
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=cm)
    return out
