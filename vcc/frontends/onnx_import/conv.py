"""Conv, ConvTranspose and BatchNormalization: kernel, stride, dilation and padding made explicit."""

from __future__ import annotations

from vcc.errors import VccError

from .table import check_2d, explicit_pads, importer


@importer("Conv")
def _conv(ctx, node, a):
    x = node.input[0]
    shape = check_2d(ctx, node, x)
    w = ctx.require_const(node, 1, "the weight")
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    pads = explicit_pads(node, a, shape[2:], kernel, strides, dilations, ctx.source)
    group = int(a.get("group", 1))
    if w.ndim != 4 or w.shape[1] * group != shape[1] or w.shape[0] % group:
        raise VccError(f"{ctx.source}: node {node.name!r} (Conv): weight {list(w.shape)} with group {group} "
                       f"does not fit the input {list(shape)} (need [M, C/group, kH, kW], M divisible by group)")
    inputs = [x, node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    ctx.emit(node, "Conv", inputs, {"kernel_shape": kernel, "strides": strides, "pads": pads,
                                    "dilations": dilations, "group": int(a.get("group", 1))})


@importer("ConvTranspose")
def _conv_transpose(ctx, node, a):
    x = node.input[0]
    shape = check_2d(ctx, node, x)
    w = ctx.require_const(node, 1, "the weight")
    if w.ndim != 4 or w.shape[0] != shape[1] or int(a.get("group", 1)) <= 0 or w.shape[0] % int(a.get("group", 1)):
        raise VccError(f"{ctx.source}: node {node.name!r} (ConvTranspose): weight {list(w.shape)} does not "
                       f"fit the input {list(shape)} (need [C, M/group, kH, kW])")
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    out_pad = list(a.get("output_padding", [0, 0]))
    group = int(a.get("group", 1))
    out_shape = ctx.shapes.get(node.output[0], (None, ""))[0]
    in_hw = ctx.input_shape(x)[2:]
    if "output_shape" in a or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        if out_shape is None:
            raise VccError(f"{ctx.source}: node {node.name!r}: cannot resolve ConvTranspose output shape")
        pads = []
        totals = []
        for i in range(2):
            full = strides[i] * (in_hw[i] - 1) + out_pad[i] + ((kernel[i] - 1) * dilations[i] + 1)
            totals.append(full - out_shape[2 + i])
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        for t in totals:
            pads.append(t - t // 2 if auto == "SAME_LOWER" else t // 2)
        pads = pads + [t - p for t, p in zip(totals, pads, strict=True)]
    else:
        pads = list(a.get("pads", [0, 0, 0, 0]))
    inputs = [x, node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
    ctx.emit(node, "ConvTranspose", inputs, {"kernel_shape": kernel, "strides": strides, "pads": pads,
                                             "dilations": dilations, "group": group,
                                             "output_padding": out_pad})


@importer("BatchNormalization")
def _batchnorm(ctx, node, a):
    for k, what in ((1, "scale"), (2, "bias"), (3, "running mean"), (4, "running variance")):
        ctx.require_const(node, k, what)
    if len(node.output) > 1 and any(node.output[1:]):
        raise VccError(f"{ctx.source}: node {node.name!r}: BatchNormalization in training mode "
                       "(extra outputs) is not supported; export the model in eval mode")
    ctx.emit(node, "BatchNormalization", list(node.input[:5]), {"epsilon": float(a.get("epsilon", 1e-5))})
