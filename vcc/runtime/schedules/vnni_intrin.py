"""The VNNI tensor intrinsics of the int8 schedules, and whether a target has VNNI.

`VNNI_LOCAL_INTRIN` is the 16 x 4 u8 x s8 -> s32 dot product of the int8 convs (`vpdpbusd` on
zmm registers, its accumulator in registers); `DW_VNNI_INTRIN` the same instruction on int32
lanes that each hold 4 kernel rows of a depthwise channel. `register_vnni_intrin` registers both
once per process; `has_vnni` says whether an LLVM target can run them.

The wheel's `dot_16x4_vnni` does not compile with its LLVM 22 (vpdpbusd now takes 64 x i8
operands) and its accumulator buffer must be global; `VNNI_LOCAL_INTRIN` is ours.
"""

from __future__ import annotations

from tvm import s_tir
from tvm.script import tirx as T

VNNI_LOCAL_INTRIN = "vcc_dot_16x4_vnni_local"
DW_VNNI_INTRIN = "vcc_dw_16x4_vnni_local"


@T.prim_func(s_tir=True)
def _dot_desc(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _dot_vnni(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        a_u8x64 = T.reinterpret(T.broadcast(a_i32, 16), dtype="uint8x64")
        b_i8x64 = B.vload([0, 0], dtype="int8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"),
            a_u8x64,
            b_i8x64,
            dtype="int32x16",
        )


@T.prim_func(s_tir=True)
def _dw_desc(
    A: T.Buffer((16,), "int32", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:16], B[0:16, 0:4])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            with T.sblock("update"):
                vi = T.axis.spatial(16, i)
                C[vi] = C[vi] + (T.bitwise_and(A[vi], 255) * T.Cast("int32", B[vi, 0])
                                 + T.bitwise_and(T.shift_right(A[vi], 8), 255) * T.Cast("int32", B[vi, 1])
                                 + T.bitwise_and(T.shift_right(A[vi], 16), 255) * T.Cast("int32", B[vi, 2])
                                 + T.bitwise_and(T.shift_right(A[vi], 24), 255) * T.Cast("int32", B[vi, 3]))


@T.prim_func(s_tir=True)
def _dw_vnni(
    A: T.Buffer((16,), "int32", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:16], B[0:16, 0:4])
        T.writes(C[0:16])
        a_u8x64 = T.reinterpret(A.vload([0], "int32x16"), dtype="uint8x64")
        b_i8x64 = B.vload([0, 0], dtype="int8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"),
            a_u8x64,
            b_i8x64,
            dtype="int32x16",
        )


# LLVM cpu names with AVX512-VNNI (vpdpbusd on zmm registers)
VNNI_CPUS = frozenset({"cascadelake", "cooperlake", "icelake-server", "icelake-client", "tigerlake",
                       "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids",
                       "graniterapids-d", "diamondrapids", "znver4", "znver5"})


def has_vnni(target) -> bool:
    """Whether the LLVM target can run the VNNI intrinsic (by mcpu or an explicit mattr)."""
    mcpu = str(target.attrs.get("mcpu", "") or "")
    mattr = [str(a) for a in (target.attrs.get("mattr", None) or [])]
    if "-avx512vnni" in mattr:
        return False
    return mcpu in VNNI_CPUS or "+avx512vnni" in mattr


_REGISTERED: list[bool] = []


def register_vnni_intrin() -> str:
    """Register our VNNI intrinsics once per process; returns the conv one's name."""
    if not _REGISTERED:
        s_tir.TensorIntrin.register(VNNI_LOCAL_INTRIN, _dot_desc, _dot_vnni, override=True)
        s_tir.TensorIntrin.register(DW_VNNI_INTRIN, _dw_desc, _dw_vnni, override=True)
        _REGISTERED.append(True)
    return VNNI_LOCAL_INTRIN
