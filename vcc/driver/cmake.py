"""Where the C++ build finds the TVM runtime: `python -m vcc.driver.cmake` prints a CMake script.

The root `CMakeLists.txt` runs it (as torch's `cmake_prefix_path` and pybind11's `--cmakedir`
are used) and includes what it prints: the tvm-ffi headers (with dlpack) and the two shared
libraries a vcc artifact needs at run time, `libtvm_runtime.so` and `libtvm_ffi.so`, all from
the installed `apache-tvm` / `apache-tvm-ffi` wheels. The packages are located without being
imported (importing tvm loads its 250 MB compiler library).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from vcc.errors import VccError


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise VccError(f"the Python package {name!r} is not installed (pip install -e . installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def tvm_paths() -> dict[str, Path]:
    """The include folder and the runtime libraries of the installed TVM wheels."""
    tvm, ffi = _package_dir("tvm"), _package_dir("tvm_ffi")
    paths = {"TVM_FFI_INCLUDE_DIR": ffi / "include",
             "TVM_RUNTIME_LIBRARY": tvm / "lib" / "libtvm_runtime.so",
             "TVM_FFI_LIBRARY": ffi / "lib" / "libtvm_ffi.so"}
    for key, path in paths.items():
        if not path.exists():
            raise VccError(f"{path}: not found ({key}); is the apache-tvm wheel complete?")
    if not (paths["TVM_FFI_INCLUDE_DIR"] / "dlpack" / "dlpack.h").is_file():
        raise VccError(f"{paths['TVM_FFI_INCLUDE_DIR']}: has no dlpack/dlpack.h")
    return paths


def cmake_script() -> str:
    return "".join(f'set(VCC_{key} "{path.as_posix()}")\n' for key, path in tvm_paths().items())


def main() -> None:
    try:
        sys.stdout.write(cmake_script())
    except VccError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
