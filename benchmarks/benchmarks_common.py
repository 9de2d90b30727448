"""Shared by the benchmark scripts: ONNX Runtime's own int8 quantizer, configured as a careful
user would (QDQ, per-channel int8 weights, uint8 activations); it lives in vcc.runtime.reference
because `vcc bench` times it too."""

from vcc.runtime.reference import ort_quantize_static

__all__ = ["ort_quantize_static"]
