"""Compiling a Relax module for this CPU."""

from __future__ import annotations

import os
import platform
import shutil
from functools import lru_cache

import tvm
from tvm import relax

from vcc.errors import VccError

# TVM 0.27 marks tirx.round vectorizable but not tirx.nearbyint, which R.round legalizes to (both
# lower to llvm.nearbyint, which takes vectors): VectorizeLoop then turned every requantization
# epilogue into 16 scalar iterations, and only LLVM's SLP vectorizer sometimes rebuilt the
# vectors (not for a bare multiply -> round -> clip -> cast: 16 scalar converts per vector).
if tvm.ir.Op.get("tirx.nearbyint").get_attr("TVectorizable") is None:
    tvm.ir.register_op_attr("tirx.nearbyint", "TVectorizable", True)


@lru_cache(maxsize=1)
def host_cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def host_mcpu() -> str:
    """The LLVM cpu name for this host by its ISA flags (LLVM's own guess calls Sapphire Rapids
    "rocketlake", which lacks AMX and AVX512-FP16)."""
    flags = host_cpu_flags()
    if {"avx512_vnni", "avx512_fp16", "avx512_bf16"} <= flags:
        return "sapphirerapids"
    if {"avx512_vnni", "avx512bw"} <= flags:
        return "cascadelake"
    if {"avx512f", "avx512bw"} <= flags:
        return "skylake-avx512"
    if "avx2" in flags:
        return "haswell"
    return "x86-64"


# LLVM cpus with 512-bit vector registers (the ones host_mcpu names, and their kin)
AVX512_CPUS = frozenset({"sapphirerapids", "emeraldrapids", "graniterapids", "icelake-server", "icelake-client",
                         "tigerlake", "rocketlake", "cooperlake", "cascadelake", "skylake-avx512", "znver4",
                         "znver5"})


def cpu_target(mcpu: str | None = None, num_cores: int | None = None) -> tvm.target.Target:
    """The LLVM target for this CPU. On AVX-512 cpus the tuning flag `prefer-256-bit` is turned
    off: LLVM's Sapphire Rapids tuning otherwise splits every 16-lane float / int32 operation that
    is not an intrinsic into two 256-bit halves, and the schedules' vectors are 16 lanes. Measured
    on the int8 U-Net-MobileNetV2 (2 threads, alternating runs): 13.3 -> 10.9 ms, the int8 requantize
    epilogues and depthwise convs a third faster; fp32 builds unchanged."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise VccError(f"vcc targets x86-64 CPUs; this machine is {platform.machine()}")
    mcpu = mcpu or host_mcpu()
    spec = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu,
            "num-cores": int(num_cores or os.cpu_count() or 1)}
    if mcpu in AVX512_CPUS:
        spec["mattr"] = ["-prefer-256-bit"]
    return tvm.target.Target(spec)


def target_description(target: tvm.target.Target) -> dict:
    return {"kind": str(target.kind.name), "mtriple": str(target.attrs.get("mtriple", "")),
            "mcpu": str(target.attrs.get("mcpu", "")), "mattr": [str(a) for a in target.attrs.get("mattr", None) or []],
            "num-cores": int(target.attrs.get("num-cores", 0))}


def compile_relax(mod: tvm.IRModule, target: tvm.target.Target) -> relax.VMExecutable:
    """tvm.compile with the default Relax pipeline for `target`."""
    with target:
        return tvm.compile(mod, target=target)


@lru_cache(maxsize=1)
def _link_options() -> tuple[str, ...]:
    """gold where the host has it: it links the tens of MB of packed weights faster than GNU ld
    (the 256x256 BiSeNet's 52 MB library: 0.17-0.18 s against 0.25-0.85 s on a quiet 2-core EPYC)."""
    return ("-fuse-ld=gold",) if shutil.which("ld.gold") else ()


def export_executable(executable: relax.VMExecutable, path: str | os.PathLike) -> None:
    """Write the compiled model as one shared library (host code + VM bytecode + weights)."""
    options = list(_link_options())
    executable.export_library(str(path), **({"options": options} if options else {}))
