"""Lowerings of the compute ops: Conv, ConvTranspose, BatchNormalization, MatMul.

Conv, ConvTranspose and MatMul run on the integers when their operands are int8 (`.int8`).
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from vcc.ir.graph import Node

from .int8 import _rescale, integer_operands
from .table import LowerContext, R, lowering

# --- convolution ---------------------------------------------------------------------------------

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


# --- matmul ---------------------------------------------------------------------------------------

@lowering("MatMul")
def _matmul(cx, n):
    io = integer_operands(cx, n)
    if io is not None:
        acc = cx.bb.emit(R.matmul(io.x, relax.const(io.w), out_dtype="int32"))
        return _rescale(cx, n, acc, io, (-1,))
    return R.matmul(cx.arg(n.inputs[0]), cx.arg(n.inputs[1]))
