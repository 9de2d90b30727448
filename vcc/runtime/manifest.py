"""The artifact manifest: its self-hash and the schema it is validated against on load.

The integrity check covers the manifest itself: `manifest_sha256` is the sha256 of the
manifest's canonical form (every other field, `json.dumps(sort_keys=True, separators=(",", ":"))`),
so a hand edit (an emptied `files` table that would let a modified model.so load, a changed
mean) is refused. It detects edits, not forgery: whoever recomputes the hash can rewrite the
artifact anyway. Then the schema: every field the runtime reads, its type and range; each
failure a VccError naming the manifest and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

from vcc.errors import VccError

FORMAT_VERSION = 2
HASH_KEY = "manifest_sha256"
DTYPES = ("fp32", "int8")
TENSOR_DTYPES = ("float32", "int8", "uint8", "int32", "int64")
MAX_DIM = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


def canonical_hash(manifest: dict) -> str:
    """sha256 of the manifest without its hash field, as canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != HASH_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(manifest: dict) -> dict:
    """The manifest with its format version and self-hash set (written last, over everything)."""
    body = {k: v for k, v in manifest.items() if k != HASH_KEY}
    body["format_version"] = FORMAT_VERSION
    return {**body, HASH_KEY: canonical_hash(body)}


class _Checker:
    def __init__(self, mpath: Path):
        self.mpath = mpath

    def fail(self, field: str, what: str):
        raise VccError(f"{self.mpath}: field {field!r} {what}")

    def get(self, d: dict, key: str, field: str, types, optional: bool = False):
        if key not in d:
            if optional:
                return None
            self.fail(field, "is missing")
        v = d[key]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.fail(field, f"must be {_names(types)}, got a bool")
        if not isinstance(v, types):
            self.fail(field, f"must be {_names(types)}, got {type(v).__name__} {_short(v)}")
        return v

    def number(self, v, field: str, lo: float, hi: float, lo_open: bool = False):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(field, f"must be a finite number, got {_short(v)}")
        if v < lo or v > hi or (lo_open and v == lo):
            self.fail(field, f"is {v}, outside {'(' if lo_open else '['}{lo}, {hi}]")
        return v

    def tensor(self, io, field: str):
        if not isinstance(io, dict):
            self.fail(field, f"must be an object {{name, shape, dtype}}, got {type(io).__name__}")
        name = self.get(io, "name", f"{field}.name", str)
        if not name:
            self.fail(f"{field}.name", "is empty")
        shape = self.get(io, "shape", f"{field}.shape", list)
        if not shape or len(shape) > 8:
            self.fail(f"{field}.shape", f"must have 1 to 8 dims, got {_short(shape)}")
        for k, d in enumerate(shape):
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DIM:
                self.fail(f"{field}.shape[{k}]", f"must be an int in [1, {MAX_DIM}], got {_short(d)}")
        dtype = self.get(io, "dtype", f"{field}.dtype", str)
        if dtype not in TENSOR_DTYPES:
            self.fail(f"{field}.dtype", f"is {dtype!r}, not one of {', '.join(TENSOR_DTYPES)}")


def _names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {dict: "an object", list: "a list", str: "a string", int: "an int", float: "a number",
             bool: "a bool", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _short(v, n: int = 40) -> str:
    s = json.dumps(v) if isinstance(v, (dict, list, str, int, float, bool, type(None))) else repr(v)
    return s if len(s) <= n else s[:n] + "..."


def validate_manifest(manifest, mpath: Path, library: str) -> dict:
    """Check the parsed manifest of `mpath`: format version, self-hash, schema. Returns it."""
    c = _Checker(mpath)
    if not isinstance(manifest, dict):
        raise VccError(f"{mpath}: the manifest must be a JSON object, got a JSON {type(manifest).__name__}")
    version = manifest.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
        raise VccError(f"{mpath}: artifact format {version} is older than this vcc's ({FORMAT_VERSION}); "
                       "rebuild it with `vcc build`")
    if version != FORMAT_VERSION:
        raise VccError(f"{mpath}: unknown artifact format {_short(version)} (this vcc reads {FORMAT_VERSION})")
    stored = manifest.get(HASH_KEY)
    if not isinstance(stored, str) or not _HEX64.fullmatch(stored):
        c.fail(HASH_KEY, "is missing or not a sha256 hex digest")
    try:
        actual = canonical_hash(manifest)
    except ValueError as e:  # NaN / Infinity in the JSON
        raise VccError(f"{mpath}: the manifest holds a non-finite number ({e})") from e
    if actual != stored:
        raise VccError(f"{mpath}: the manifest was altered (its {HASH_KEY} does not match its contents); "
                       "rebuild the artifact")

    dtype = c.get(manifest, "dtype", "dtype", str)
    if dtype not in DTYPES:
        c.fail("dtype", f"is {dtype!r}, not one of {', '.join(DTYPES)}")
    c.get(manifest, "vcc_version", "vcc_version", str)
    for key in ("inputs", "outputs"):
        ios = c.get(manifest, key, key, list)
        if not ios:
            c.fail(key, "is empty")
        for k, io in enumerate(ios):
            c.tensor(io, f"{key}[{k}]")
    files = c.get(manifest, "files", "files", dict)
    if library not in files:
        c.fail("files", f"does not list {library}")
    for name, info in files.items():
        field = f"files.{name}"
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            c.fail(field, "is not a plain file name")
        if not isinstance(info, dict):
            c.fail(field, f"must be an object {{sha256, bytes}}, got {type(info).__name__}")
        sha = c.get(info, "sha256", f"{field}.sha256", str)
        if not _HEX64.fullmatch(sha):
            c.fail(f"{field}.sha256", "is not a sha256 hex digest")
        size = c.get(info, "bytes", f"{field}.bytes", int)
        if size < 0:
            c.fail(f"{field}.bytes", f"is negative ({size})")
    pre = c.get(manifest, "preprocess", "preprocess", dict)
    size = c.get(pre, "size", "preprocess.size", list)
    if len(size) != 2:
        c.fail("preprocess.size", f"must be [H, W], got {_short(size)}")
    for k, v in enumerate(size):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DIM:
            c.fail(f"preprocess.size[{k}]", f"must be an int in [1, {MAX_DIM}], got {_short(v)}")
    for key, lo, hi, lo_open in (("mean", -1e3, 1e3, False), ("std", 0.0, 1e3, True)):
        vals = c.get(pre, key, f"preprocess.{key}", list)
        if not vals:
            c.fail(f"preprocess.{key}", "is empty")
        for k, v in enumerate(vals):
            c.number(v, f"preprocess.{key}[{k}]", lo, hi, lo_open)
    if len(pre["mean"]) != len(pre["std"]):
        c.fail("preprocess.std", f"has {len(pre['std'])} values, mean has {len(pre['mean'])}")
    in_shape = manifest["inputs"][0]["shape"]
    if len(in_shape) == 4 and list(in_shape[2:]) != size:
        c.fail("preprocess.size", f"is {size}, but inputs[0] is {in_shape}")
    color = c.get(pre, "color", "preprocess.color", str, optional=True)
    if color is not None and color not in ("RGB", "BGR"):
        c.fail("preprocess.color", f"is {color!r}, not RGB or BGR")
    classes = c.get(manifest, "classes", "classes", (int, type(None)), optional=True)
    if classes is not None and classes < 1:
        c.fail("classes", f"is {classes}, not a positive count")
    for key, types in (("nodes", list), ("blocks", list), ("source_model", dict), ("target", dict),
                       ("quantization", (dict, type(None))), ("calibration", (dict, type(None)))):
        c.get(manifest, key, key, types, optional=True)
    for k, n in enumerate(manifest.get("nodes", [])):
        if not isinstance(n, dict):
            c.fail(f"nodes[{k}]", f"must be an object, got {type(n).__name__}")
    return manifest
