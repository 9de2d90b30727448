"""The artifact: a directory with the compiled library and `manifest.json`.

Written atomically (a temporary sibling directory renamed into place, so a failed build
leaves nothing behind); loaded with every file checked against the manifest's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vcc.errors import VccError
from vcc.runtime.manifest import FORMAT_VERSION, seal, validate_manifest

MANIFEST = "manifest.json"
LIBRARY = "model.so"
__all__ = ["FORMAT_VERSION", "LIBRARY", "MANIFEST", "Predictor", "read_manifest", "sha256_file", "write_artifact"]


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_artifact(out_dir: str | os.PathLike, manifest: dict,
                   writers: dict[str, Callable[[Path], None]]) -> Path:
    """Create `out_dir` with `manifest.json` and one file per writer (name -> fn(path)).

    Everything is written into a temporary directory beside `out_dir` first; only when all
    files are complete is it moved into place (replacing an earlier artifact there)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise VccError(f"{out_dir}: exists and is not a directory")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists():
        raise VccError(f"{out_dir}: exists, is not empty and holds no vcc artifact; refusing to overwrite it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        files = {}
        for name, write in writers.items():
            write(tmp / name)
            files[name] = {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
        manifest = seal({**manifest, "files": files})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            if old.exists():
                shutil.rmtree(old)
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_manifest(art_dir: str | os.PathLike, check_files: bool = True) -> dict:
    """The artifact's manifest, validated (format version, self-hash, schema: see
    `vcc.runtime.manifest`), and with `check_files` every listed file checked by size and sha256."""
    art_dir = Path(art_dir)
    if not art_dir.is_dir():
        raise VccError(f"{art_dir}: no such artifact directory")
    mpath = art_dir / MANIFEST
    if not mpath.is_file():
        raise VccError(f"{art_dir}: not a vcc artifact ({MANIFEST} is missing)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise VccError(f"{mpath}: corrupt manifest ({str(e)[:120]})") from e
    except OSError as e:
        raise VccError(f"{mpath}: cannot read the manifest ({e.strerror or e})") from e
    validate_manifest(manifest, mpath, LIBRARY)
    if check_files:
        for name, info in manifest["files"].items():
            path = art_dir / name
            if not path.is_file():
                raise VccError(f"{art_dir}: artifact file {name} is missing")
            if path.stat().st_size != info["bytes"] or sha256_file(path) != info["sha256"]:
                raise VccError(f"{art_dir}: artifact file {name} was altered (sha256 differs from the manifest)")
    return manifest


class Predictor:
    """A loaded artifact: `predictor(x)` runs a float32 NCHW array and returns the first output.

    Safe to share between threads: a Relax VM keeps its register file and frames in the VM
    object, so two threads inside one VM corrupt each other (seen: `Check failed: reg <
    frame->register_file.size()`, mismatched-argument TypeErrors, segfaults). Each call holds
    a lock around the one VM, from the input copy to the output copy back into numpy, so N
    threads get exactly the sequential results, one call at a time, each call using TVM's whole
    thread pool. The alternative, one VM per thread (created lazily from the loaded module),
    was measured and did not pay: with 2 threads on 2 cores (hrnetv2_w18_small_v1 at 64x64,
    `benchmarks/predictor_threads.py`) the lock gave 56 calls/s fp32 and 14.4 int8 against 51 and
    14.1 per thread (sequential 53 and 13.5): the cores are already busy inside one call, and
    concurrent calls only oversubscribe them (each calling thread gets its own TVM pool).
    """

    def __init__(self, art_dir: Path | None, manifest: dict, vm, device):
        self.path = art_dir
        self.manifest = manifest
        self._vm = vm
        self._device = device
        self._lock = threading.Lock()
        self.input = manifest["inputs"][0]
        self.outputs = manifest["outputs"]

    @staticmethod
    def load(art_dir: str | os.PathLike) -> Predictor:
        import tvm
        from tvm import relax

        art_dir = Path(art_dir)
        manifest = read_manifest(art_dir)
        try:
            lib = tvm.runtime.load_module(str(art_dir / LIBRARY))
        except Exception as e:
            raise VccError(f"{art_dir / LIBRARY}: cannot load the compiled library ({e})") from e
        device = tvm.cpu()
        return Predictor(art_dir, manifest, relax.VirtualMachine(lib, device), device)

    @property
    def preprocess(self):
        from vcc.ir.preprocess import Preprocess

        return Preprocess.from_dict(self.manifest["preprocess"])

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        import tvm

        want = tuple(self.input["shape"])
        if tuple(x.shape) != want or x.dtype != np.dtype(self.input["dtype"]):
            raise VccError(f"input {self.input['name']!r} expects {self.input['dtype']}{list(want)}, "
                           f"got {x.dtype}{list(x.shape)}")
        with self._lock:
            out = self._vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x), self._device))
            if len(self.outputs) == 1:
                return [out.numpy()]
            return [o.numpy() for o in out]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run_all(x)[0]

    def time_once(self, x) -> None:
        """Run without copying the result back (for latency measurement)."""
        import tvm

        with self._lock:
            self._vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x), self._device))
