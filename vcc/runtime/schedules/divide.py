"""Division by a float32 constant as a multiply and two FMAs, bit-identical to the division.

Every requantization divides by the output scale (`round(x / s)`, QuantizeLinear's definition),
and in an int8 conv's epilogue that division is the costliest instruction: `vdivps` on 16
lanes takes about ten cycles against half a cycle for a multiply or an FMA. With r = 1/s rounded
to float32, q = x * r is within an ulp of x / s, e = fma(-q, s, x) is its exact remainder and
q + e * r (one more FMA) is x / s correctly rounded (Markstein's correction, the sequence the
Itanium and POWER divide routines end with), so the result is the division's, bit for bit, as
tests/test_requant.py checks on millions of values including ties, infinities, NaN and signed
zeros. The exception: where x is below 2^-100 in magnitude or the quotient is subnormal, the
remainder underflows and the result may be one ulp off, a difference no quantization can see.
A power-of-two s needs no correction: x * r is exact.

Registered for `relax.divide` in the legalize map of `pipeline.optimize_for_cpu`; any other
division (a tensor divisor, another dtype) goes to TOPI as before.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.tirx.op import fma

from .pack_core import _const_np, _is_const

DIVIDE = "divide"
_MAX = float(np.finfo(np.float32).max)


def _scalar_float32(e: relax.Expr) -> np.float32 | None:
    if not _is_const(e):
        return None
    arr = _const_np(e)
    return np.float32(arr.reshape(())) if arr.size == 1 and arr.dtype == np.float32 else None


def exact_reciprocal_divide(x: te.Tensor, divisor: float) -> te.Tensor:
    """x / divisor, elementwise, computed as x * (1 / divisor) corrected by two FMAs."""
    s = tirx.const(divisor, "float32")
    r = tirx.const(float(np.float32(1) / np.float32(divisor)), "float32")
    exact = math.frexp(divisor)[0] == 0.5  # a power of two: the product is the quotient

    def quotient(*i):
        v = x(*i)
        q = v * r
        if exact:
            return q
        e = fma(-q, s, v)
        # correct only a finite q by a nonzero remainder: a NaN remainder (x infinite or NaN)
        # or an infinite q (overflow, which x / s does too) keeps q, as does e = 0 (which keeps
        # the sign of a zero quotient). NaN compares false; `e != e` would be simplified away.
        fix = tirx.all(tirx.abs(e) > tirx.const(0.0, "float32"), tirx.abs(q) <= tirx.const(_MAX, "float32"))
        return tirx.Select(fix, fma(e, r, q), q)

    return te.compute(x.shape, quotient, name="T_divide")


def legalize_divide(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """relax.divide by a finite, nonzero float32 scalar constant whose reciprocal is a normal float32
    -> `exact_reciprocal_divide`; anything else -> the default (TOPI) legalization."""
    x, d = call.args
    c = _scalar_float32(d)
    if c is not None and str(x.ty.dtype) == "float32" and np.isfinite(c) and c != 0:
        r = np.float32(1) / c
        if np.isfinite(r) and abs(r) >= np.finfo(np.float32).tiny:
            return bb.call_te(exact_reciprocal_divide, x, float(c), primfunc_name_hint=DIVIDE)
    return tvm.ir.Op.get("relax.divide").get_attr("FLegalize")(bb, call)  # TOPI's, as registered
