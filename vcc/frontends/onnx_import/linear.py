"""MatMul, and Gemm as MatMul + Add (transposes, alpha and beta folded into constants where they can be)."""

from __future__ import annotations

import numpy as np

from .table import importer


@importer("MatMul")
def _matmul(ctx, node, a):
    ctx.emit(node, "MatMul", [node.input[0], node.input[1]])


@importer("Gemm")
def _gemm(ctx, node, a):
    g = ctx.graph
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    A, B = node.input[0], node.input[1]
    if a.get("transA", 0):
        sa = g.shape(A)
        A = ctx.emit_internal("Transpose", f"{node.name}_At", [A], (sa[1], sa[0]), g.values[A].dtype,
                              {"perm": [1, 0]})
    b_const = ctx.const(B)
    if b_const is not None:
        b_arr = b_const.T if a.get("transB", 0) else b_const
        if alpha != 1.0:
            b_arr = b_arr * np.asarray(alpha, dtype=b_arr.dtype)
            alpha = 1.0
        B = g.add_constant(g.fresh_name(f"{node.name}_B"), np.ascontiguousarray(b_arr))
    elif a.get("transB", 0):
        sb = g.shape(B)
        B = ctx.emit_internal("Transpose", f"{node.name}_Bt", [B], (sb[1], sb[0]), g.values[B].dtype,
                              {"perm": [1, 0]})
    out_shape, dtype = ctx.shapes[node.output[0]]
    has_c = len(node.input) > 2 and node.input[2]
    if not has_c and alpha == 1.0:
        ctx.emit(node, "MatMul", [A, B])
        return
    y = ctx.emit_internal("MatMul", f"{node.name}_mm", [A, B], out_shape, dtype)
    if alpha != 1.0:
        s = g.add_constant(g.fresh_name(f"{node.name}_alpha"), np.asarray(alpha, dtype=np.float32))
        y = ctx.emit_internal("Mul", f"{node.name}_scale", [y, s], out_shape, dtype) if has_c else y
        if not has_c:
            ctx.emit(node, "Mul", [y, s])
            return
    C = node.input[2]
    c_const = ctx.const(C)
    if beta != 1.0:
        if c_const is None:
            s = g.add_constant(g.fresh_name(f"{node.name}_beta"), np.asarray(beta, dtype=np.float32))
            C = ctx.emit_internal("Mul", f"{node.name}_cbeta", [C, s], g.shape(C), dtype)
        else:
            C = g.add_constant(g.fresh_name(f"{node.name}_C"), (c_const * beta).astype(c_const.dtype))
    ctx.emit(node, "Add", [y, C])
