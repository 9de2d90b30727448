"""`vcc deploy`: a self-contained folder that runs an artifact with no Python.

    BUNDLE/bin/vcc_run           the command line (rpath $ORIGIN/../lib)
    BUNDLE/lib/                  libvcc_runtime, libtvm_runtime, libtvm_ffi; cmake/vcc (find_package)
    BUNDLE/include/vcc/runtime.hpp
    BUNDLE/model/                the artifact (manifest.json, model.so, ...)
    BUNDLE/README                three lines

The C++ is the root CMakeLists.txt's `cmake --install` into the bundle; the build tree is
given (`--build-dir`) or configured and built once under the cache folder. Written into a
temporary sibling folder and renamed into place, so a failure leaves no half bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vcc.errors import VccError
from vcc.runtime.artifact import read_manifest

SOURCE_ROOT = Path(__file__).resolve().parents[2]
README = """vcc bundle of {name} ({dtype}, input {shape}); needs no Python.
Run: bin/vcc_run model photo.jpg -o mask.png  |  bin/vcc_run model --input x.npy -o y.npy  |  bin/vcc_run model --bench
C++: include/vcc/runtime.hpp, link lib/libvcc_runtime.so (find_package(vcc) with CMAKE_PREFIX_PATH=this folder).
"""


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VccError(f"{what} failed ({' '.join(cmd)}):\n{(proc.stdout + proc.stderr)[-3000:]}")


def build_cpp(build_dir: Path) -> Path:
    """Configure (if needed) and build the C++ runtime of this source tree into `build_dir`."""
    if not (SOURCE_ROOT / "CMakeLists.txt").is_file():
        raise VccError(f"{SOURCE_ROOT}: no CMakeLists.txt (vcc deploy needs a source checkout, pip install -e .)")
    if shutil.which("cmake") is None:
        raise VccError("cmake is not installed")
    if not (build_dir / "CMakeCache.txt").is_file():
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", str(SOURCE_ROOT), "-B", str(build_dir), *gen, "-DCMAKE_BUILD_TYPE=Release",
              f"-DPython3_EXECUTABLE={sys.executable}"], "configuring the C++ runtime")
    _run(["cmake", "--build", str(build_dir)], "building the C++ runtime")
    return build_dir


def default_build_dir() -> Path:
    cache = Path(os.environ.get("VCC_CACHE", Path.home() / ".cache" / "vcc"))
    return cache / "cpp-build"


def deploy(artifact: Path, out: Path, build_dir: Path | None = None) -> Path:
    manifest = read_manifest(artifact)  # a damaged artifact is refused before anything is written
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VccError(f"{out}: exists and is not an empty folder; refusing to overwrite it")
    build = build_cpp(build_dir or default_build_dir())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _run(["cmake", "--install", str(build), "--prefix", str(tmp)], "installing the C++ runtime")
        shutil.copytree(artifact, tmp / "model")
        inp = manifest["inputs"][0]
        (tmp / "README").write_text(README.format(name=manifest.get("source_model", {}).get("file", artifact.name),
                                                  dtype=manifest.get("dtype", "?"), shape=inp["shape"]))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def bundle_bytes(bundle: Path) -> dict[str, int]:
    """Bytes per top-level part of a bundle (bin, lib, include, model, README)."""
    return {p.name: sum(f.stat().st_size for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
            for p in sorted(bundle.iterdir())}
