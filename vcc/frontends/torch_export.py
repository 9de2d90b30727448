"""torch module -> ONNX file (eval mode, opset 17, onnxsim, vcc metadata)."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence

import onnx
import torch

from vcc.errors import VccError

EXPORT_OPSET = 17


def export_torch(module: torch.nn.Module, input_shape: Sequence[int], path: str | os.PathLike,
                 metadata: Mapping[str, str] | None = None, simplify: bool = True,
                 input_name: str = "input", output_name: str = "logits") -> onnx.ModelProto:
    """Trace `module` in eval mode on a zero input of `input_shape` and write ONNX to `path`."""
    module = module.eval()
    x = torch.zeros(*input_shape, dtype=torch.float32)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=EXPORT_OPSET,
                              input_names=[input_name], output_names=[output_name],
                              do_constant_folding=True)
        except Exception as e:
            raise VccError(f"torch.onnx.export of {type(module).__name__} failed: {e}") from e
    model = onnx.load_model_from_string(buf.getvalue())
    if simplify:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if ok:
            model = simplified
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.save(model, str(path))
    return model
