"""Reading an ONNX file: validation with clear errors, static input shapes, onnxsim, shape inference."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import onnx

from vcc.errors import VccError

log = logging.getLogger(__name__)


def load_onnx_file(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and sanity-check an ONNX file; a missing, truncated or non-ONNX file is a VccError."""
    path = Path(path)
    if not path.exists():
        raise VccError(f"{path}: no such file")
    if not path.is_file():
        raise VccError(f"{path}: not a file")
    data = path.read_bytes()
    if not data:
        raise VccError(f"{path}: the file is empty, not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError / RuntimeWarning subclasses
        raise VccError(f"{path}: not a valid ONNX model (truncated or not a protobuf file: {e})") from e
    if model.ir_version == 0 or not model.HasField("graph") or len(model.graph.node) == 0:
        raise VccError(
            f"{path}: not a valid ONNX model (no graph or no nodes; is it truncated or another format?)"
        )
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as e:
        raise VccError(f"{path}: the ONNX model fails onnx.checker: {str(e).splitlines()[0]}") from e
    return model


def fix_input_shapes(model: onnx.ModelProto, input_shape: Sequence[int] | None,
                     source: str) -> None:
    """Make every graph input shape static (in place).

    A symbolic batch dimension becomes 1; other symbolic dimensions need `input_shape`.
    """
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    for k, inp in enumerate(inputs):
        dims = inp.type.tensor_type.shape.dim
        if input_shape is not None and k == 0:
            if len(dims) != len(input_shape):
                raise VccError(
                    f"{source}: input {inp.name!r} has rank {len(dims)}, "
                    f"but the given input shape {tuple(input_shape)} has rank {len(input_shape)}"
                )
            for d, v in zip(dims, input_shape, strict=True):
                if d.HasField("dim_value") and d.dim_value != v:
                    raise VccError(
                        f"{source}: input {inp.name!r} is fixed at "
                        f"{[x.dim_value for x in dims]}; cannot build it for shape {tuple(input_shape)}"
                    )
                d.Clear()
                d.dim_value = int(v)
            continue
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if axis == 0:
                d.Clear()
                d.dim_value = 1
            else:
                shape = [x.dim_value if x.HasField("dim_value") else (x.dim_param or "?") for x in dims]
                raise VccError(
                    f"{source}: input {inp.name!r} has a dynamic shape {shape}; "
                    "give a static input size (vcc build --size H W)"
                )


def simplify(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """onnxsim (constant folding of shape arithmetic, dead nodes), then onnx shape inference.

    If onnxsim cannot handle the model (an op it does not know, say), fall back to shape
    inference alone: our importer folds what remains and reports unsupported ops itself.
    """
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if ok:
            model = simplified
        else:
            log.warning("%s: onnxsim could not validate its result; using the unsimplified model", source)
    except Exception as e:  # onnxsim raises plain RuntimeErrors from C++
        log.warning("%s: onnxsim failed (%s); continuing with shape inference only", source,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:
        log.warning("%s: onnx shape inference failed: %s", source, e)
    return model
