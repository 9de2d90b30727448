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


# ops whose outputs are shape arithmetic that onnxsim folds away (our importer folds too, but
# a graph with them is what onnxsim is for)
_SHAPE_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "Range", "If", "Loop", "Scan"})


def simplification_needed(model: onnx.ModelProto) -> str | None:
    """Why onnxsim should run on this graph, or None when it has nothing to do: no shape
    arithmetic, no node whose inputs are all constants (nothing to fold), no Identity /
    Dropout / unused node. A graph `vcc export` wrote (already through onnxsim) is such a one,
    and skipping onnxsim there saves its import (about a second) and its pass over the weights."""
    g = model.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for n in g.node:
        if n.op_type in _SHAPE_OPS or n.op_type in ("Identity", "Dropout"):
            return f"{n.op_type} node {n.name or n.output[0]!r}"
        if n.op_type != "Constant" and n.input and all(i in consts or not i for i in n.input):
            return f"constant-foldable {n.op_type} node {n.name or n.output[0]!r}"
        if not any(o in used for o in n.output):
            return f"unused {n.op_type} node {n.name or n.output[0]!r}"
    return None


def prepare(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """onnxsim when the graph needs it (see simplification_needed), then shape inference."""
    if simplification_needed(model) is not None:
        return simplify(model, source)
    log.info("%s: nothing for onnxsim to simplify; shape inference only", source)
    return _infer_shapes(model, source)


def simplify(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """onnxsim (constant folding of shape arithmetic, dead nodes), then onnx shape inference.

    onnxsim runs only on a model that passed `validate_model`, and in a forked child process,
    so a crash inside it (a signal: SIGFPE, SIGSEGV) is a warning, not the end of vcc. If onnxsim
    cannot handle the model (an op it does not know, say), fall back to shape inference alone:
    our importer folds what remains and reports unsupported ops itself.
    """
    simplified = _onnxsim_isolated(model, source) if hasattr(os, "fork") else _onnxsim(model, source)
    if simplified is not None:
        model = simplified
    return _infer_shapes(model, source)


def _infer_shapes(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:
        log.warning("%s: onnx shape inference failed: %s", source, str(e).splitlines()[0][:200] if str(e) else e)
    return model


def _onnxsim(model: onnx.ModelProto, source: str) -> onnx.ModelProto | None:
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
    except Exception as e:  # onnxsim raises plain RuntimeErrors from C++
        log.warning("%s: onnxsim failed (%s); continuing with shape inference only", source,
                    str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
        return None
    if not ok:
        log.warning("%s: onnxsim could not validate its result; using the unsimplified model", source)
        return None
    return simplified


ONNXSIM_TIMEOUT_S = 900


def _onnxsim_isolated(model: onnx.ModelProto, source: str) -> onnx.ModelProto | None:
    """`_onnxsim` in a forked child that writes the simplified model to a temporary file."""
    import signal
    import tempfile
    import time
    import warnings

    try:
        import onnxsim  # noqa: F401  (imported here, once: the child then forks with it loaded)
    except ImportError as e:
        log.warning("%s: onnxsim is not installed (%s); continuing with shape inference only", source, e)
        return None
    with tempfile.TemporaryDirectory(prefix="vcc-onnxsim-") as tmp:
        out = Path(tmp) / "simplified.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "process is multi-threaded, fork()..."
            pid = os.fork()
        if pid == 0:  # the child: never returns into vcc
            code = 1
            try:
                # onnxsim prints tracebacks and progress of its own: into a file, not the terminal
                fd = os.open(Path(tmp) / "output.txt", os.O_WRONLY | os.O_CREAT, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                simplified = _onnxsim(model, source)
                if simplified is not None:
                    out.write_bytes(simplified.SerializeToString())
                    code = 0
                else:
                    code = 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + ONNXSIM_TIMEOUT_S
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                log.warning("%s: onnxsim did not finish in %d s; continuing with shape inference only",
                            source, ONNXSIM_TIMEOUT_S)
                return None
            time.sleep(0.01)
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            log.warning("%s: onnxsim crashed (%s); continuing with shape inference only", source, sig)
            return None
        if os.WEXITSTATUS(status) != 0 or not out.is_file():
            said = (Path(tmp) / "output.txt").read_text(errors="replace").strip().splitlines()
            warned = [ln for ln in said if ln.startswith("WARNING:") and "onnxsim" in ln]
            log.warning("%s", (warned[-1][len("WARNING: "):] if warned else
                               f"{source}: onnxsim failed; continuing with shape inference only")[:300])
            return None
        return onnx.load_model_from_string(out.read_bytes())
