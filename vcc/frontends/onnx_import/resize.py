"""Resize and Upsample: one Resize node with the output size, mode and coordinate transform
spelled out (Upsample and opset < 11 are asymmetric / floor)."""

from __future__ import annotations

import numpy as np

from vcc.errors import VccError
from vcc.ir.graph import Node

from .table import check_2d, importer, text_attr


@importer("Resize", "Upsample")
def _resize(ctx, node, a):
    shape = check_2d(ctx, node, node.input[0])
    out = ctx.declare_output(node)
    out_shape = ctx.graph.shape(out)
    if tuple(out_shape[:2]) != tuple(shape[:2]):
        raise VccError(f"{ctx.source}: node {node.name!r}: {node.op_type} over the batch or channel "
                       f"axis ({shape} -> {out_shape}) is not supported")
    _check_scales_sizes(ctx, node, a, shape, out_shape)
    mode = text_attr(a.get("mode"), "nearest")
    if node.op_type == "Upsample" or ctx.opset < 11:
        coord = "asymmetric"
        nearest_mode = "floor"
    else:
        coord = text_attr(a.get("coordinate_transformation_mode"), "half_pixel")
        nearest_mode = text_attr(a.get("nearest_mode"), "round_prefer_floor")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear", "cubic"):
        raise VccError(f"{ctx.source}: node {node.name!r}: resize mode {mode!r} is not supported")
    supported_coords = ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel")
    if coord not in supported_coords:
        raise VccError(f"{ctx.source}: node {node.name!r}: coordinate_transformation_mode "
                       f"{coord!r} is not supported (supported: {', '.join(supported_coords)})")
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest_mode,
             "size": list(out_shape[2:]), "cubic_coeff_a": float(a.get("cubic_coeff_a", -0.75)),
             "exclude_outside": int(a.get("exclude_outside", 0))}
    ctx.graph.nodes.append(Node("Resize", ctx.graph.fresh_name(node.name or out), [node.input[0]],
                                [out], attrs))


def _check_scales_sizes(ctx, node, a, shape, out_shape) -> None:
    """Constant scales / sizes must give the output shape the model declares (else the declared
    shape would silently win)."""
    where = f"{ctx.source}: node {node.name!r} ({node.op_type})"
    if "scales" in a:  # Upsample-7
        scales = np.asarray(a["scales"], np.float64)
    else:
        k = 1 if node.op_type == "Upsample" or len(node.input) == 2 else 2
        scales = ctx.const(node.input[k]) if len(node.input) > k else None
    sizes = ctx.const(node.input[3]) if node.op_type == "Resize" and len(node.input) > 3 else None
    for what, vals in (("scales", scales), ("sizes", sizes)):
        if vals is None or not np.asarray(vals).size:
            continue
        vals = np.asarray(vals, np.float64).ravel()
        if vals.size != len(shape):
            raise VccError(f"{where}: {what} {vals.tolist()} has {vals.size} values for a "
                           f"{len(shape)}-D input {list(shape)}")
        want = [int(np.floor(d * v)) for d, v in zip(shape, vals, strict=True)] if what == "scales" \
            else [int(v) for v in vals]
        if want != list(out_shape):
            raise VccError(f"{where}: {what} {vals.tolist()} on input {list(shape)} give {want}, but the "
                           f"model declares the output {list(out_shape)}")
