"""Graph IR -> TVM Relax.

One lowering per IR op in the `LOWERINGS` table, each turning a node into high-level Relax
ops (nn.conv2d, image.resize2d, ...). Weights are bound as constants so that layout changes
of the CPU schedules fold at compile time. The function is "main", inputs in the IR's order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from vcc.errors import VccError
from vcc.ir.graph import Graph, Node

R = relax.op
Lowering = Callable[["LowerContext", Node], "relax.Expr | list[relax.Expr]"]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*ops: str) -> Callable[[Lowering], Lowering]:
    def deco(fn: Lowering) -> Lowering:
        for op in ops:
            LOWERINGS[op] = fn
        return fn

    return deco


class LowerContext:
    def __init__(self, graph: Graph, bb: relax.BlockBuilder, fold_requantize: bool = True):
        self.graph = graph
        self.bb = bb
        self.fold_requantize = fold_requantize
        self.env: dict[str, relax.Expr] = {}
        self.producers = graph.producers()
        # values lowered as "integer tensor x scale" (pooled / concatenated integers): a
        # QuantizeLinear back to the same scale and dtype returns the integers unchanged
        self.integer_form: dict[str, tuple[relax.Var, np.ndarray, str]] = {}
        # values that are sums of "integer tensor x scale" (an int32 accumulator, a dequantized
        # activation, a residual Add of those), clipped to [lo, hi] by ReLU / Clip on the way: a
        # QuantizeLinear of one requantizes the integers with one multiplier each (`_requantize`)
        self.rescaled: dict[str, Rescaled] = {}

    def arg(self, name: str) -> relax.Expr:
        if name not in self.env:
            if name in self.graph.constants:
                self.env[name] = relax.const(np.ascontiguousarray(self.graph.constants[name]))
            else:
                raise KeyError(name)
        return self.env[name]

    def args(self, node: Node) -> list[relax.Expr]:
        return [self.arg(i) for i in node.inputs if i]

    def fconst(self, value: float, dtype: str = "float32") -> relax.Expr:
        return relax.const(np.asarray(value, dtype=dtype))

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.shape(name)


def _pairs(pads: list[int]) -> list[int]:
    """ONNX [b1..bN, e1..eN] -> Relax [b1, e1, ..., bN, eN]."""
    n = len(pads) // 2
    return [p for k in range(n) for p in (pads[k], pads[n + k])]


# --- convolution ---------------------------------------------------------------------------------

@dataclass
class IntegerOperands:
    """A compute node reading DequantizeLinear(q activation) and DequantizeLinear(int8 weight):
    it runs on the integers and rescales the int32 accumulator once."""

    x: relax.Expr  # the uint8 / int8 activation
    w: np.ndarray  # int8 weights
    bias: np.ndarray | None  # int32
    scale: np.ndarray  # s_x * s_w, per output channel (or scalar)


def _dq_const(cx: LowerContext, name: str) -> tuple[np.ndarray, np.ndarray, int | None] | None:
    p = cx.producers.get(name)
    if p is None or p.op != "DequantizeLinear" or not cx.graph.is_const(p.inputs[0]):
        return None
    zp = cx.graph.constants.get(p.inputs[2]) if len(p.inputs) > 2 and p.inputs[2] else None
    if zp is not None and np.any(zp != 0):
        return None
    return cx.graph.constants[p.inputs[0]], cx.graph.constants[p.inputs[1]], p.attrs.get("axis")


def integer_operands(cx: LowerContext, n: Node) -> IntegerOperands | None:
    xq = _dequantized_activation(cx, cx.producers.get(n.inputs[0]))
    if xq is None:
        return None
    w = _dq_const(cx, n.inputs[1])
    if w is None:
        return None
    bias = None
    if len(n.inputs) > 2 and n.inputs[2]:
        b = _dq_const(cx, n.inputs[2])
        if b is None or b[0].dtype != np.int32:
            return None
        bias = b[0]
    scale = (np.float64(xq[1]) * w[1].astype(np.float64)).astype(np.float32)
    return IntegerOperands(xq[0], w[0], bias, scale)


@dataclass
class Rescaled:
    """clip(sum of float32(term) * scale, lo, hi): the float result of integer ops — an int32
    accumulator times its scale, a dequantized activation, their sum (a residual Add) — maybe
    through ReLU / Clip."""

    terms: list[tuple[relax.Expr, np.ndarray]]  # (integer tensor, float32 scale broadcastable to it)
    lo: float = -np.inf
    hi: float = np.inf


def _rescale(cx: LowerContext, n: Node, acc: relax.Expr, io: IntegerOperands, shape: tuple) -> relax.Expr:
    if io.bias is not None:
        acc = cx.bb.emit(R.add(acc, relax.const(io.bias.reshape(shape))))
    scale = io.scale.reshape(shape) if io.scale.size > 1 else io.scale.reshape(())
    cx.rescaled[n.outputs[0]] = Rescaled([(acc, scale)])
    y = cx.bb.emit(R.astype(acc, "float32"))
    return R.multiply(y, relax.const(scale))


def _clipped(cx: LowerContext, n: Node, lo: float, hi: float) -> None:
    """Record that `n` (ReLU / Clip) clips a rescaled value to [lo, hi]."""
    r = cx.rescaled.get(n.inputs[0])
    if r is not None:
        cx.rescaled[n.outputs[0]] = Rescaled(r.terms, max(r.lo, lo), min(r.hi, hi))


def _summed(cx: LowerContext, n: Node) -> None:
    """Record that the Add `n` sums two unclipped rescaled values of one shape (at most three
    terms in all: a residual Add of a conv and a skip, not a long chain in one epilogue)."""
    a, b = (cx.rescaled.get(i) for i in n.inputs)
    if a is not None and b is not None and cx.shape(n.inputs[0]) == cx.shape(n.inputs[1]) \
            and not any(np.isfinite([a.lo, a.hi, b.lo, b.hi])) and len(a.terms) + len(b.terms) <= 3:
        cx.rescaled[n.outputs[0]] = Rescaled(a.terms + b.terms)


def _requantize(cx: LowerContext, r: Rescaled, s: np.float32, dtype: np.dtype) -> relax.Expr:
    """QuantizeLinear(clip(sum of float32(term) * scale, lo, hi), s, zero point 0) with one
    multiplier per term: clip(round(sum of float32(term) * (scale / s)), round(lo / s), round(hi / s))
    saturated to `dtype`. Rounding and clipping commute (both monotone), so this is the
    quantization of the float value except that (acc * scale) / s is rounded once instead of
    twice: where the two differ at a rounding tie the result is one step apart. It is how ONNX
    Runtime runs a QDQ conv too (its QLinearConv requantizes with one float multiplier, its
    QLinearAdd with one per input) and saves the epilogue a multiply, a clip and the divide."""
    info = np.iinfo(dtype)
    lo, hi = float(info.min), float(info.max)
    if np.isfinite(r.lo):
        lo = max(lo, float(np.round(np.float32(r.lo) / s)))
    if np.isfinite(r.hi):
        hi = min(hi, float(np.round(np.float32(r.hi) / s)))
    y = None
    for t, scale in r.terms:
        m = (scale.astype(np.float64) / np.float64(s)).astype(np.float32)
        part = cx.bb.emit(R.multiply(cx.bb.emit(R.astype(t, "float32")), relax.const(m)))
        y = part if y is None else cx.bb.emit(R.add(y, part))
    y = cx.bb.emit(R.clip(cx.bb.emit(R.round(y)), lo, max(lo, hi)))
    return R.astype(y, dtype.name)


@lowering("Conv")
def _conv(cx: LowerContext, n: Node):
    a = n.attrs
    io = integer_operands(cx, n)
    if io is not None:
        acc = cx.bb.emit(R.nn.conv2d(io.x, relax.const(io.w), strides=a["strides"], padding=a["pads"],
                                     dilation=a["dilations"], groups=a["group"], data_layout="NCHW",
                                     kernel_layout="OIHW", out_dtype="int32"))
        return _rescale(cx, n, acc, io, (1, -1, 1, 1))
    x, w = cx.arg(n.inputs[0]), cx.arg(n.inputs[1])
    y = R.nn.conv2d(x, w, strides=a["strides"], padding=a["pads"], dilation=a["dilations"],
                    groups=a["group"], data_layout="NCHW", kernel_layout="OIHW")
    if len(n.inputs) > 2 and n.inputs[2]:
        b = cx.graph.constants.get(n.inputs[2])
        bias = relax.const(b.reshape(1, -1, 1, 1)) if b is not None \
            else R.reshape(cx.arg(n.inputs[2]), (1, -1, 1, 1))
        y = cx.bb.emit(y)
        y = R.add(y, bias)
    return y


@lowering("ConvTranspose")
def _conv_transpose(cx: LowerContext, n: Node):
    a = n.attrs
    io = integer_operands(cx, n)
    if io is not None:
        acc = cx.bb.emit(R.nn.conv2d_transpose(
            io.x, relax.const(io.w), strides=a["strides"], padding=a["pads"],
            output_padding=a["output_padding"], dilation=a["dilations"], groups=a["group"],
            data_layout="NCHW", kernel_layout="IOHW", out_dtype="int32"))
        return _rescale(cx, n, acc, io, (1, -1, 1, 1))
    x, w = cx.arg(n.inputs[0]), cx.arg(n.inputs[1])
    y = R.nn.conv2d_transpose(x, w, strides=a["strides"], padding=a["pads"],
                              output_padding=a["output_padding"], dilation=a["dilations"],
                              groups=a["group"], data_layout="NCHW", kernel_layout="IOHW")
    if len(n.inputs) > 2 and n.inputs[2]:
        b = cx.graph.constants[n.inputs[2]]
        y = cx.bb.emit(y)
        y = R.add(y, relax.const(b.reshape(1, -1, 1, 1)))
    return y


@lowering("BatchNormalization")
def _batchnorm(cx: LowerContext, n: Node):
    g = cx.graph
    gamma, beta, mean, var = (g.constants[i].astype(np.float64) for i in n.inputs[1:5])
    scale = gamma / np.sqrt(var + n.attrs["epsilon"])
    shift = beta - mean * scale
    rank = len(cx.shape(n.inputs[0]))
    cshape = (-1,) + (1,) * (rank - 2)
    y = cx.bb.emit(R.multiply(cx.arg(n.inputs[0]), relax.const(scale.astype(np.float32).reshape(cshape))))
    return R.add(y, relax.const(shift.astype(np.float32).reshape(cshape)))


# --- elementwise -----------------------------------------------------------------------------------

_UNARY = {"Relu": R.nn.relu, "Sigmoid": R.sigmoid, "Tanh": R.tanh, "Exp": R.exp, "Abs": R.abs,
          "Neg": R.negative, "Sqrt": R.sqrt, "Erf": R.erf, "Floor": R.floor, "Ceil": R.ceil,
          "Log": R.log, "Softplus": R.nn.softplus}
_BINARY = {"Add": R.add, "Sub": R.subtract, "Mul": R.multiply, "Div": R.divide,
           "Max": R.maximum, "Min": R.minimum, "Pow": R.power}


@lowering(*_UNARY)
def _unary(cx, n):
    if n.op == "Relu":
        _clipped(cx, n, 0.0, np.inf)
    return _UNARY[n.op](cx.arg(n.inputs[0]))


@lowering(*_BINARY)
def _binary(cx, n):
    if n.op == "Add":
        _summed(cx, n)
    return _BINARY[n.op](cx.arg(n.inputs[0]), cx.arg(n.inputs[1]))


@lowering("Reciprocal")
def _reciprocal(cx, n):
    return R.divide(cx.fconst(1.0), cx.arg(n.inputs[0]))


@lowering("Identity", "Dropout")
def _identity(cx, n):
    return cx.arg(n.inputs[0])


@lowering("Clip")
def _clip(cx, n):
    x = cx.arg(n.inputs[0])
    lo, hi = n.attrs["min"], n.attrs["max"]
    _clipped(cx, n, float(lo), float(hi))
    if np.isfinite(lo) and np.isfinite(hi):
        return R.clip(x, float(lo), float(hi))
    if np.isfinite(lo):
        x = cx.bb.emit(R.maximum(x, cx.fconst(lo)))
    if np.isfinite(hi):
        x = R.minimum(x, cx.fconst(hi))
    return x


@lowering("LeakyRelu")
def _leaky(cx, n):
    return R.nn.leakyrelu(cx.arg(n.inputs[0]), float(n.attrs["alpha"]))


@lowering("PRelu")
def _prelu(cx, n):
    x, slope = cx.arg(n.inputs[0]), cx.arg(n.inputs[1])
    neg = cx.bb.emit(R.multiply(R.minimum(x, cx.fconst(0.0)), slope))
    return R.add(R.nn.relu(x), neg)


@lowering("Elu")
def _elu(cx, n):
    x = cx.arg(n.inputs[0])
    neg = cx.bb.emit(R.multiply(cx.fconst(n.attrs["alpha"]),
                                R.subtract(R.exp(R.minimum(x, cx.fconst(0.0))), cx.fconst(1.0))))
    return R.add(R.nn.relu(x), neg)


def _hard_sigmoid(cx, x, alpha: float, beta: float):
    lin = cx.bb.emit(R.add(R.multiply(x, cx.fconst(alpha)), cx.fconst(beta)))
    return R.clip(lin, 0.0, 1.0)


@lowering("HardSigmoid")
def _hardsigmoid(cx, n):
    return _hard_sigmoid(cx, cx.arg(n.inputs[0]), n.attrs["alpha"], n.attrs["beta"])


@lowering("HardSwish")
def _hardswish(cx, n):
    x = cx.arg(n.inputs[0])
    return R.multiply(x, cx.bb.emit(_hard_sigmoid(cx, x, 1.0 / 6.0, 0.5)))


@lowering("Cast")
def _cast(cx, n):
    return R.astype(cx.arg(n.inputs[0]), n.attrs["to"])


# --- data movement ---------------------------------------------------------------------------------

@lowering("Reshape")
def _reshape(cx, n):
    return R.reshape(cx.arg(n.inputs[0]), tuple(n.attrs["shape"]))


@lowering("Expand")
def _expand(cx, n):
    return R.broadcast_to(cx.arg(n.inputs[0]), tuple(n.attrs["shape"]))


@lowering("Transpose")
def _transpose(cx, n):
    return R.permute_dims(cx.arg(n.inputs[0]), n.attrs["perm"])


@lowering("Concat")
def _concat(cx, n):
    # inputs dequantized with one scale (a shared-scale group: FFM / ASPP / PPM concats, U-Net
    # skips): concatenate the integers and dequantize once; bit-identical, a quarter of the bytes
    dqs = [cx.producers.get(i) for i in n.inputs]
    qs = [_dequantized_activation(cx, p) for p in dqs]
    if len(qs) > 1 and all(q is not None for q in qs) and \
            len({(q[1].item(), cx.graph.values[p.inputs[0]].dtype) for q, p in zip(qs, dqs, strict=True)}) == 1:
        y = cx.bb.emit(R.concat([q[0] for q in qs], axis=n.attrs["axis"]))
        return _integer_result(cx, n, y, qs[0][1], cx.graph.values[dqs[0].inputs[0]].dtype)
    return R.concat(cx.args(n), axis=n.attrs["axis"])


@lowering("Split")
def _split(cx, n):
    sizes = n.attrs["split"]
    indices = list(np.cumsum(sizes)[:-1].tolist())
    tup = cx.bb.emit(R.split(cx.arg(n.inputs[0]), indices, axis=n.attrs["axis"]))
    return [relax.TupleGetItem(tup, k) for k in range(len(sizes))]


@lowering("Slice")
def _slice(cx, n):
    a = n.attrs
    x = cx.arg(n.inputs[0])
    if all(s > 0 for s in a["steps"]):
        return R.strided_slice(x, axes=a["axes"], begin=a["starts"], end=a["ends"], strides=a["steps"],
                               assume_inbound=True)
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"], strict=True):
        idx = np.arange(s, e, st, dtype=np.int64)
        x = cx.bb.emit(R.take(x, relax.const(idx), axis=ax))
    return x


@lowering("Pad")
def _pad(cx, n):
    a = n.attrs
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[a["mode"]]
    return R.nn.pad(cx.arg(n.inputs[0]), _pairs(a["pads"]), pad_mode=mode, pad_value=float(a["value"]))


@lowering("Gather")
def _gather(cx, n):
    idx = np.asarray(n.attrs["indices"], dtype=np.int64).reshape(n.attrs["indices_shape"])
    return R.take(cx.arg(n.inputs[0]), relax.const(idx), axis=n.attrs["axis"])


# --- pooling, reductions -------------------------------------------------------------------------

@lowering("GlobalAveragePool")
def _gap(cx, n):
    return R.mean(cx.arg(n.inputs[0]), axis=[2, 3], keepdims=True)


@lowering("GlobalMaxPool")
def _gmp(cx, n):
    return R.max(cx.arg(n.inputs[0]), axis=[2, 3], keepdims=True)


@lowering("MaxPool")
def _maxpool(cx, n):
    a = n.attrs
    # max-pooling commutes with dequantization (a positive scale, zero point 0): pool the integers
    # and dequantize after, so the producer writes uint8 / int8 instead of float32 and the pool
    # reads a quarter of the bytes (its padding is the dtype's minimum: never the max of a window)
    p = cx.producers.get(n.inputs[0])
    q = _dequantized_activation(cx, p)
    x = q[0] if q is not None else cx.arg(n.inputs[0])
    y = R.nn.max_pool2d(x, pool_size=a["kernel_shape"], strides=a["strides"], padding=a["pads"],
                        dilation=a["dilations"], ceil_mode=bool(a["ceil_mode"]))
    if q is None:
        return y
    return _integer_result(cx, n, cx.bb.emit(y), q[1], cx.graph.values[p.inputs[0]].dtype)


def _integer_result(cx: LowerContext, n: Node, y: relax.Var, scale: np.ndarray, dtype: str) -> relax.Expr:
    """Dequantize the integer result `y` of `n`, remembering it for a QuantizeLinear to the same
    scale (which then costs nothing)."""
    cx.integer_form[n.outputs[0]] = (y, scale, dtype)
    return R.multiply(cx.bb.emit(R.astype(y, "float32")), relax.const(scale))


def _dequantized_activation(cx: LowerContext, p: Node | None) -> tuple[relax.Expr, np.ndarray] | None:
    """(integer tensor, scalar scale) when `p` is a per-tensor, zero-point-0 DequantizeLinear of an
    activation; None otherwise."""
    if p is None or p.op != "DequantizeLinear" or cx.graph.is_const(p.inputs[0]):
        return None
    scale = cx.graph.constants.get(p.inputs[1])
    zp = cx.graph.constants.get(p.inputs[2]) if len(p.inputs) > 2 and p.inputs[2] else None
    if scale is None or scale.size != 1 or (zp is not None and np.any(zp != 0)):
        return None
    return cx.arg(p.inputs[0]), scale.reshape(()).astype(np.float32)


@lowering("AveragePool")
def _avgpool(cx, n):
    a = n.attrs
    return R.nn.avg_pool2d(cx.arg(n.inputs[0]), pool_size=a["kernel_shape"], strides=a["strides"],
                           padding=a["pads"], ceil_mode=bool(a["ceil_mode"]),
                           count_include_pad=bool(a["count_include_pad"]))


_REDUCE = {"ReduceMean": R.mean, "ReduceMax": R.max, "ReduceMin": R.min, "ReduceSum": R.sum}


@lowering(*_REDUCE)
def _reduce(cx, n):
    if not n.attrs["axes"]:
        return cx.arg(n.inputs[0])
    return _REDUCE[n.op](cx.arg(n.inputs[0]), axis=n.attrs["axes"], keepdims=bool(n.attrs["keepdims"]))


@lowering("Softmax")
def _softmax(cx, n):
    return R.nn.softmax(cx.arg(n.inputs[0]), axis=n.attrs["axis"])


@lowering("LogSoftmax")
def _log_softmax(cx, n):
    return R.nn.log_softmax(cx.arg(n.inputs[0]), axis=n.attrs["axis"])


@lowering("ArgMax")
def _argmax(cx, n):
    return R.argmax(cx.arg(n.inputs[0]), axis=n.attrs["axis"], keepdims=bool(n.attrs["keepdims"]))


@lowering("MatMul")
def _matmul(cx, n):
    io = integer_operands(cx, n)
    if io is not None:
        acc = cx.bb.emit(R.matmul(io.x, relax.const(io.w), out_dtype="int32"))
        return _rescale(cx, n, acc, io, (-1,))
    return R.matmul(cx.arg(n.inputs[0]), cx.arg(n.inputs[1]))


def _per_axis(arr: np.ndarray, axis: int | None, rank: int) -> np.ndarray:
    if arr.size == 1:
        return arr.reshape(())
    shape = [1] * rank
    shape[axis if axis is not None else 1] = -1
    return arr.reshape(shape)


@lowering("QuantizeLinear")
def _quantize(cx, n):
    rank = len(cx.shape(n.inputs[0]))
    scale = _per_axis(cx.graph.constants[n.inputs[1]], n.attrs.get("axis"), rank)
    zp = cx.graph.constants[n.inputs[2]]
    same = cx.integer_form.get(n.inputs[0])
    if same is not None and scale.size == 1 and np.float32(scale.reshape(())) == same[1] \
            and not np.any(zp != 0) and zp.dtype.name == same[2]:
        return same[0]  # round(q * s / s) == q: requantizing to the same scale is the identity
    r = cx.rescaled.get(n.inputs[0]) if cx.fold_requantize else None
    if r is not None and scale.size == 1 and not np.any(zp != 0):
        return _requantize(cx, r, np.float32(scale.reshape(())), zp.dtype)
    info = np.iinfo(zp.dtype)
    y = cx.bb.emit(R.round(R.divide(cx.arg(n.inputs[0]), relax.const(scale.astype(np.float32)))))
    if np.any(zp != 0):
        y = cx.bb.emit(R.add(y, relax.const(_per_axis(zp, n.attrs.get("axis"), rank).astype(np.float32))))
    y = cx.bb.emit(R.clip(y, float(info.min), float(info.max)))
    return R.astype(y, zp.dtype.name)


@lowering("DequantizeLinear")
def _dequantize(cx, n):
    q = _dequantized_activation(cx, n)
    if q is not None:
        cx.rescaled[n.outputs[0]] = Rescaled([q])
    rank = len(cx.shape(n.inputs[0]))
    axis = n.attrs.get("axis")
    scale = _per_axis(cx.graph.constants[n.inputs[1]], axis, rank).astype(np.float32)
    y = cx.bb.emit(R.astype(cx.arg(n.inputs[0]), "float32"))
    if len(n.inputs) > 2 and n.inputs[2]:
        zp = cx.graph.constants[n.inputs[2]]
        if np.any(zp != 0):
            y = cx.bb.emit(R.subtract(y, relax.const(_per_axis(zp, axis, rank).astype(np.float32))))
    return R.multiply(y, relax.const(scale))


@lowering("Resize")
def _resize(cx, n):
    a = n.attrs
    method = {"nearest": "nearest_neighbor", "linear": "linear", "cubic": "cubic"}[a["mode"]]
    return R.image.resize2d(cx.arg(n.inputs[0]), size=tuple(a["size"]), layout="NCHW", method=method,
                            coordinate_transformation_mode=a["coordinate_transformation_mode"],
                            rounding_method=a["nearest_mode"] if a["mode"] == "nearest" else "",
                            cubic_alpha=a["cubic_coeff_a"], cubic_exclude=a["exclude_outside"])


# --- driver -----------------------------------------------------------------------------------------

def _hint(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "v"
    return s if not s[0].isdigit() else f"v{s}"


def unsupported_ops(graph: Graph) -> dict[str, list[str]]:
    missing: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.op not in LOWERINGS:
            missing.setdefault(n.op, []).append(n.name)
    return missing


def lower_to_relax(graph: Graph, fold_requantize: bool = True) -> tvm.IRModule:
    """The IR as a Relax IRModule with one function "main" (high-level ops, weights as constants).

    `fold_requantize`: a QuantizeLinear of an integer conv / matmul's rescaled result, of a
    dequantized activation or of a residual Add of those (through ReLU / Clip) requantizes the
    integers with one multiplier each (`_requantize`: within one quantization step of the QDQ
    graph, as ONNX Runtime runs it); False keeps QuantizeLinear's own definition, round(x / s)
    of the float value, bit for bit.
    """
    missing = unsupported_ops(graph)
    if missing:
        listing = "; ".join(f"{op} ({', '.join(ns[:5])})" for op, ns in sorted(missing.items()))
        raise VccError(f"no TVM lowering for op types: {listing}")
    bb = relax.BlockBuilder()
    params = [relax.Var(_hint(i), relax.TensorType(list(graph.shape(i)), graph.values[i].dtype))
              for i in graph.inputs]
    with bb.function("main", params):
        with bb.dataflow():
            cx = LowerContext(graph, bb, fold_requantize)
            for name, p in zip(graph.inputs, params, strict=True):
                cx.env[name] = p
            for node in graph.nodes:
                try:
                    result = LOWERINGS[node.op](cx, node)
                except Exception as e:
                    raise VccError(f"lowering node {node.name!r} ({node.op}) to TVM failed: {e}") from e
                results = result if isinstance(result, list) else [result]
                for out, expr in zip(node.outputs, results, strict=True):
                    cx.env[out] = bb.emit(expr, name_hint=_hint(out))
            outs = [cx.arg(o) for o in graph.outputs]
            gv = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(gv)
    return bb.get()
