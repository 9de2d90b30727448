"""What this host's CPU can run, and the check of code built for a CPU it cannot run.

The machines vcc is built and tested on differ (Sapphire Rapids, Zen 4/5, and hosts whose
virtual CPU shows AVX2 only). A test runs the code it compiles where the host has the
instructions; for a CPU the host lacks it compiles for that LLVM cpu and checks the
instructions in the assembly (`assembly`), and runs the host's own build beside it.
"""

from __future__ import annotations

import tvm

from vcc.runtime.codegen import host_cpu_flags, host_mcpu

# the /proc/cpuinfo flags an LLVM cpu's code may use, for the cpus the tests target
_NEEDS = {
    "x86-64": frozenset(),
    "haswell": frozenset({"avx2", "fma", "f16c", "bmi2"}),
    "skylake-avx512": frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}),
    "cascadelake": frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"}),
    "znver4": frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
                         "avx512_bf16"}),
    "sapphirerapids": frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
                                 "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"}),
}


def llvm_target(mcpu: str, num_cores: int = 2) -> tvm.target.Target:
    return tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu,
                              "num-cores": num_cores})


HOST_MCPU = host_mcpu()
HOST = llvm_target(HOST_MCPU)
SPR = llvm_target("sapphirerapids")  # AVX-512, VNNI, BF16, AVX512-FP16, AMX: the widest the tests build for


def runs_here(target: tvm.target.Target) -> bool:
    """Whether this host has every instruction set `target`'s code may use."""
    mcpu = str(target.attrs.get("mcpu", "x86-64"))
    if mcpu not in _NEEDS:
        raise ValueError(f"hostcpu: no flag list for LLVM cpu {mcpu!r}; add it to _NEEDS")
    return _NEEDS[mcpu] <= host_cpu_flags()


def assembly(executable) -> str:
    """The x86 assembly of a compiled Relax executable (its one LLVM module)."""
    (lib,) = [m for m in executable.mod.imports if m.kind == "llvm"]
    return lib.inspect_source("asm")


def instructions(asm: str) -> set[str]:
    """The mnemonics of an assembly listing."""
    out = set()
    for line in asm.splitlines():
        if line.startswith("\t") and not line.startswith("\t."):
            out.add(line.split()[0])
    return out
