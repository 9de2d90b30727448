"""Compiling a Relax module for this CPU."""

from __future__ import annotations

import os
import platform
from functools import lru_cache

import tvm
from tvm import relax

from vcc.errors import VccError


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


def cpu_target(mcpu: str | None = None, num_cores: int | None = None) -> tvm.target.Target:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise VccError(f"vcc targets x86-64 CPUs; this machine is {platform.machine()}")
    spec = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu or host_mcpu(),
            "num-cores": int(num_cores or os.cpu_count() or 1)}
    return tvm.target.Target(spec)


def target_description(target: tvm.target.Target) -> dict:
    return {"kind": str(target.kind.name), "mtriple": str(target.attrs.get("mtriple", "")),
            "mcpu": str(target.attrs.get("mcpu", "")), "num-cores": int(target.attrs.get("num-cores", 0))}


def compile_relax(mod: tvm.IRModule, target: tvm.target.Target) -> relax.VMExecutable:
    """tvm.compile with the default Relax pipeline for `target`."""
    with target:
        return tvm.compile(mod, target=target)
