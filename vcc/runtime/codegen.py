"""Compiling a Relax module for this CPU."""

from __future__ import annotations

import os
import platform
import shutil
from functools import lru_cache

import numpy as np
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


# the symbol a TVM shared library carries its imported modules (the Relax VM bytecode and the
# weights) under; tvm's own packing emits it as an LLVM constant or a C array
_LIBRARY_BIN = "__tvm_ffi__library_bin"


def _pack_imports_incbin(mod, is_system_lib: bool, symbol_prefix: str, workspace_dir: str) -> str:
    """export_library's fpack_imports: the imports' blob (tvm's ModulePackImportsToTensor, the
    bytes tvm's LLVM / C packers embed) written to a file and pulled into the library by an
    assembler `.incbin` under the symbol tvm looks for. Codegen of the blob as an LLVM constant
    takes seconds for tens of MB of weights; the assembler copies the bytes."""
    if is_system_lib or symbol_prefix:
        raise VccError("vcc writes plain shared libraries (no system-lib / symbol prefix)")
    blob = np.from_dlpack(tvm.runtime._ffi_api.ModulePackImportsToTensor(mod))
    bin_path = os.path.join(workspace_dir, "devc.bin")
    blob.tofile(bin_path)
    asm_path = os.path.join(workspace_dir, "devc.S")
    with open(asm_path, "w") as f:
        f.write(f'\t.section .rodata\n\t.globl {_LIBRARY_BIN}\n\t.type {_LIBRARY_BIN}, @object\n'
                f'\t.p2align 6\n{_LIBRARY_BIN}:\n\t.incbin "{bin_path}"\n'
                f'\t.size {_LIBRARY_BIN}, .-{_LIBRARY_BIN}\n\t.section .note.GNU-stack,"",@progbits\n')
    return asm_path


@lru_cache(maxsize=1)
def _link_options() -> tuple[str, ...]:
    """gold where the host has it: it links the tens of MB of weights in a third of GNU ld's
    time (0.39 s against 1.37 s for the 256x256 BiSeNet's 52 MB on this machine)."""
    return ("-fuse-ld=gold",) if shutil.which("ld.gold") else ()


def export_executable(executable: relax.VMExecutable, path: str | os.PathLike) -> None:
    """Write the compiled model as one shared library (host code + VM bytecode + weights)."""
    options = list(_link_options())
    executable.mod.export_library(str(path), fpack_imports=_pack_imports_incbin,
                                  **({"options": options} if options else {}))
