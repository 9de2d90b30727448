"""Fuzzing the front door: seeded mutations of small ONNX models (structural and byte-level), bad
calibration sets, tampered artifacts and bad checkpoints, each through the `vcc` command line.

Every case must end in exit 2 with one `error:` line naming its cause and no traceback, or in
exit 0 where the input is valid (for a random mutation: ONNX Runtime accepts and runs it; the
deliberately invalid cases must be exit 2); no process killed by a signal; no partial artifact.

The cases run in worker processes (`fuzz_runner.py`: `vcc.driver.cli.run_cli` per case, its
own stdout / stderr at the file-descriptor level), one worker for many cases, so the imports of
torch and TVM are paid once; a worker killed by a signal is a failing case, and a fresh worker
goes on with the rest. `test_worker_matches_the_cli` checks that a case gives the worker the
exit code and error line a plain `vcc` process gives.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from test_manifest import _drop, _set

from vcc.driver.build import BuildConfig, build

ROOT = Path(__file__).resolve().parents[1]
SEED = 20
N_RANDOM_STRUCTURAL = 50
N_BYTES = 30


# --- the base model: conv, batchnorm, relu, max-pool, conv, resize x2, concat, 1x1 conv -----------

def base_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 8, 3, 3), init("w3", 4, 16, 1, 1),
             numpy_helper.from_array(np.abs(rng.standard_normal(8)).astype(np.float32) + 0.5, "bn_s"),
             init("bn_b", 8), init("bn_m", 8),
             numpy_helper.from_array(np.abs(rng.standard_normal(8)).astype(np.float32) + 0.5, "bn_v"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[1, 1],
                              dilations=[1, 1], kernel_shape=[3, 3], name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3], name="conv2"),
             helper.make_node("Resize", ["c2", "roi", "scales"], ["up"], mode="linear", name="resize"),
             helper.make_node("Concat", ["r1", "up"], ["cat"], axis=1, name="concat"),
             helper.make_node("Conv", ["cat", "w3"], ["y"], kernel_shape=[1, 1], name="head")]
    graph = helper.make_graph(nodes, "fuzzbase", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _node(m, name):
    return next(n for n in m.graph.node if n.name == name)


def _set_attr(m, node, key, value):
    n = _node(m, node)
    for a in list(n.attribute):
        if a.name == key:
            n.attribute.remove(a)
    n.attribute.append(helper.make_attribute(key, value))


def _set_init(m, name, arr):
    for k, t in enumerate(m.graph.initializer):
        if t.name == name:
            m.graph.initializer[k].CopyFrom(numpy_helper.from_array(arr, name))
            return
    m.graph.initializer.append(numpy_helper.from_array(arr, name))


def _dim(m, axis, value):
    m.graph.input[0].type.tensor_type.shape.dim[axis].dim_value = value


def _meta(key, value):
    def f(m):
        m.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return f


def _w1(fn):
    def f(m):
        w = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "w1")).copy()
        _set_init(m, "w1", fn(w))
    return f


def _opset(v):
    def f(m):
        m.opset_import[0].version = v
    return f


def _custom(m):
    n = _node(m, "relu1")
    n.domain = "com.example"
    n.op_type = "FancyRelu"
    m.opset_import.append(helper.make_opsetid("com.example", 1))


def _drop_outputs(m):
    del m.graph.output[:]


def _remove_node(name):
    def f(m):
        m.graph.node.remove(_node(m, name))
    return f


def _dangling(m):
    _node(m, "head").input[0] = "nowhere"


def _duplicate(m):
    m.graph.node.insert(3, m.graph.node[2])


def _input_dtype(t):
    def f(m):
        m.graph.input[0].type.tensor_type.elem_type = t
    return f


# deliberately invalid: each must be exit 2
INVALID = {
    "strides 0": lambda m: _set_attr(m, "conv1", "strides", [0, 0]),
    "strides -1": lambda m: _set_attr(m, "conv1", "strides", [-1, 1]),
    "pool strides 0": lambda m: _set_attr(m, "pool", "strides", [0, 0]),
    "dilations 0": lambda m: _set_attr(m, "conv2", "dilations", [0, 0]),
    "pads negative": lambda m: _set_attr(m, "conv1", "pads", [-1, -1, 0, 0]),
    "pads wrong length": lambda m: _set_attr(m, "conv1", "pads", [1, 1]),
    "kernel 5x5 on 3x3 weights": lambda m: _set_attr(m, "conv1", "kernel_shape", [5, 5]),
    "pool kernel 0": lambda m: _set_attr(m, "pool", "kernel_shape", [0, 0]),
    "group 0": lambda m: _set_attr(m, "conv2", "group", 0),
    "group 3": lambda m: _set_attr(m, "conv2", "group", 3),
    "concat axis 7": lambda m: _set_attr(m, "concat", "axis", 7),
    "concat axis -9": lambda m: _set_attr(m, "concat", "axis", -9),
    "concat axis 2": lambda m: _set_attr(m, "concat", "axis", 2),
    "opset 99": _opset(99),
    "opset 1": _opset(1),
    "input dim 0": lambda m: _dim(m, 2, 0),
    "input dim 2^31+7": lambda m: _dim(m, 2, 2**31 + 7),
    "input height 1e9": lambda m: _dim(m, 2, 10**9),
    "input channels 4": lambda m: _dim(m, 1, 4),
    "custom-domain op": _custom,
    "float64 weights": _w1(lambda w: w.astype(np.float64)),
    "NaN weights": _w1(lambda w: np.where(w > 0.5, np.nan, w).astype(np.float32)),
    "Inf weights": _w1(lambda w: np.where(w > 0.5, np.inf, w).astype(np.float32)),
    "weight of wrong rank": _w1(lambda w: w.reshape(8, 27)),
    "zero-sized bias": lambda m: _set_init(m, "b1", np.zeros(0, np.float32)),
    "bias of wrong length": lambda m: _set_init(m, "b1", np.zeros(5, np.float32)),
    "resize scales 0": lambda m: _set_init(m, "scales", np.array([1, 1, 0, 0], np.float32)),
    "resize scales negative": lambda m: _set_init(m, "scales", np.array([1, 1, -2, 2], np.float32)),
    "resize scales NaN": lambda m: _set_init(m, "scales", np.array([1, 1, np.nan, 2], np.float32)),
    "resize scales 1e5": lambda m: _set_init(m, "scales", np.array([1, 1, 1e5, 1e5], np.float32)),
    "resize scales wrong length": lambda m: _set_init(m, "scales", np.array([2, 2], np.float32)),
    "resize scales vs declared shape": lambda m: _set_init(m, "scales", np.array([1, 1, 3, 3], np.float32)),
    "graph with no outputs": _drop_outputs,
    "node removed (dangling input)": _remove_node("conv2"),
    "dangling input": _dangling,
    "duplicated node": _duplicate,
    "weight initializer removed": lambda m: m.graph.initializer.remove(
        next(t for t in m.graph.initializer if t.name == "w2")),
    "input of type string": _input_dtype(TensorProto.STRING),
    "input of type int64": _input_dtype(TensorProto.INT64),
    "metadata preprocess not json": _meta("vcc.preprocess", "{not json"),
    "metadata preprocess a list": _meta("vcc.preprocess", "[1, 2]"),
    "metadata preprocess size text": _meta("vcc.preprocess", '{"size": "abc", "mean": [0, 0, 0]}'),
    "metadata preprocess mean wrong length": _meta("vcc.preprocess", '{"size": [16, 16], "mean": [0.5]}'),
    "metadata classes text": _meta("vcc.classes", "many"),
}


def _random_structural(rng: random.Random, m: onnx.ModelProto) -> str:
    """One random structural edit; returns what it did."""
    kind = rng.choice(["attr", "attr", "attr", "dim", "remove", "duplicate", "rewire", "init", "opset", "dtype"])
    nodes = list(m.graph.node)
    if kind == "attr":
        n = rng.choice([n for n in nodes if n.attribute])
        a = rng.choice(list(n.attribute))
        if a.type == onnx.AttributeProto.INTS:
            vals = [rng.choice([-3, -1, 0, 1, 2, 3, 7, 2**31]) if rng.random() < 0.5 else v for v in a.ints]
            if rng.random() < 0.2:
                vals = vals[:-1] or [0]
            _set_attr(m, n.name, a.name, vals)
        elif a.type == onnx.AttributeProto.INT:
            _set_attr(m, n.name, a.name, rng.choice([-9, -1, 0, 2, 5, 99, 2**40]))
        elif a.type == onnx.AttributeProto.STRING:
            _set_attr(m, n.name, a.name, rng.choice(["cubic", "bogus", "", "nearest"]))
        else:
            _set_attr(m, n.name, a.name, rng.choice([0.0, -1.0, float("nan"), 1e30]))
        return f"{n.name}.{a.name}"
    if kind == "dim":
        axis = rng.randrange(4)
        value = rng.choice([0, 1, 2, 5, 17, 64, 2**20 + 1, 2**33])
        _dim(m, axis, value)
        return f"input dim {axis} = {value}"
    if kind == "remove":
        n = rng.choice(nodes)
        m.graph.node.remove(n)
        return f"removed {n.name}"
    if kind == "duplicate":
        k = rng.randrange(len(nodes))
        m.graph.node.insert(rng.randrange(len(nodes) + 1), nodes[k])
        return f"duplicated {nodes[k].name}"
    if kind == "rewire":
        n = rng.choice(nodes)
        values = ["x"] + [o for nn in nodes for o in nn.output] + [t.name for t in m.graph.initializer]
        k = rng.randrange(len(n.input))
        n.input[k] = rng.choice(values + ["ghost"])
        return f"{n.name}.input[{k}] = {n.input[k]}"
    if kind == "init":
        t = rng.choice(list(m.graph.initializer))
        arr = numpy_helper.to_array(t).copy()
        choice = rng.choice(["shape", "nan", "scale", "empty", "int"])
        if choice == "shape" and arr.size > 1:
            arr = arr.reshape(-1)
        elif choice == "nan" and arr.size:
            arr.flat[rng.randrange(arr.size)] = np.nan
        elif choice == "scale":
            arr = (arr * rng.choice([0.0, -1.0, 1e20])).astype(arr.dtype)
        elif choice == "empty":
            arr = arr.reshape(-1)[:0]
        else:
            arr = arr.astype(np.int64)
        _set_init(m, t.name, arr)
        return f"initializer {t.name}: {choice}"
    if kind == "opset":
        v = rng.choice([6, 9, 10, 11, 13, 18, 21, 30])
        m.opset_import[0].version = v
        return f"opset {v}"
    t = rng.choice([TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.UINT8, TensorProto.BOOL])
    m.graph.input[0].type.tensor_type.elem_type = t
    return f"input dtype {t}"


def _ort_accepts(path: Path) -> bool:
    """The model is valid if ONNX Runtime loads it and runs it to the declared output shape."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
        y = sess.run(None, {inp.name: x})[0]
        declared = [d.dim_value for d in onnx.load(path).graph.output[0].type.tensor_type.shape.dim]
        return list(y.shape) == declared
    except Exception:
        return False


# --- cases ----------------------------------------------------------------------------------------

def model_cases(d: Path) -> list[dict]:
    rng = random.Random(SEED)
    base = base_model()
    onnx.save(base, d / "base.onnx")
    cases = [{"id": "model: base", "argv": ["inspect", str(d / "base.onnx")], "expect": 0}]
    for k, (name, edit) in enumerate(INVALID.items()):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        edit(m)
        path = d / f"invalid_{k}.onnx"
        path.write_bytes(m.SerializeToString())
        cases.append({"id": f"model: {name}", "argv": ["inspect", str(path)], "expect": 2})
    for k in range(N_RANDOM_STRUCTURAL):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        what = "; ".join(_random_structural(rng, m) for _ in range(rng.choice([1, 1, 2])))
        path = d / f"random_{k}.onnx"
        path.write_bytes(m.SerializeToString())
        cases.append({"id": f"model: random {k} ({what})", "argv": ["inspect", str(path)], "expect": "valid?",
                      "model": str(path)})
    data = base.SerializeToString()
    for k in range(N_BYTES):
        b = bytearray(data)
        if k % 3 == 0:
            b = b[:rng.randrange(1, len(b))]
            what = f"truncated to {len(b)} bytes"
        else:
            flips = rng.choice([1, 2, 8, 64])
            for _ in range(flips):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            what = f"{flips} flipped bits"
        path = d / f"bytes_{k}.onnx"
        path.write_bytes(bytes(b))
        cases.append({"id": f"model bytes {k} ({what})", "argv": ["inspect", str(path)], "expect": "valid?",
                      "model": str(path)})
    # a few builds: a failed build leaves no artifact and no temporary sibling
    for name in ("strides 0", "concat axis 7", "graph with no outputs", "resize scales vs declared shape"):
        k = list(INVALID).index(name)
        cases.append({"id": f"build: {name}", "argv": ["build", str(d / f"invalid_{k}.onnx"), "--no-schedules",
                                                        "--out", str(d / "builds" / f"out{k}")],
                      "expect": 2, "no_artifact": str(d / "builds" / f"out{k}")})
    return cases


def calib_cases(d: Path, model: Path) -> list[dict]:
    cases = []
    rng = np.random.default_rng(SEED)

    def folder(name, files: dict) -> Path:
        f = d / "calib" / name
        f.mkdir(parents=True)
        for fname, write in files.items():
            write(f / fname)
        return f

    def npy(arr):
        return lambda p: np.save(p, arr)

    def raw(data: bytes):
        return lambda p: p.write_bytes(data)

    good = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    photo = Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8))
    sets = {
        "decompression bomb png": (2, {"bomb.png": lambda p: Image.new("1", (14000, 14000)).save(p)}),
        "npy of strings": (2, {"a.npy": npy(np.full((1, 3, 16, 16), "x"))}),
        "npy complex": (2, {"a.npy": npy(good.astype(np.complex64))}),
        "npy NaN": (2, {"a.npy": npy(np.where(good > 1, np.nan, good).astype(np.float32))}),
        "npy Inf": (2, {"a.npy": npy(np.where(good > 1, np.inf, good).astype(np.float32))}),
        "npy float64 1e300": (2, {"a.npy": npy(good.astype(np.float64) * 1e300)}),
        "npy wrong shape": (2, {"a.npy": npy(good[:, :, :8])}),
        "npy 0-d": (2, {"a.npy": npy(np.float32(1))}),
        "npy object (pickle)": (2, {"a.npy": lambda p: np.save(p, np.array([{"a": 1}], dtype=object),
                                                                allow_pickle=True)}),
        "npy truncated": (2, {"a.npy": lambda p: (np.save(p, good), p.write_bytes(p.read_bytes()[:100]))}),
        "npy empty file": (2, {"a.npy": raw(b"")}),
        "npy bool": (2, {"a.npy": npy(good > 0)}),
        "empty folder": (2, {}),
        "text named png": (2, {"a.png": raw(b"hello " * 100)}),
        "zero-byte jpg": (2, {"a.jpg": raw(b"")}),
        "truncated jpg": (2, {"a.jpg": lambda p: (photo.save(p, "JPEG"), p.write_bytes(p.read_bytes()[:200]))}),
        "npy int8 (valid)": (0, {"a.npy": npy((good * 10).astype(np.int8))}),
        "npy unbatched (valid)": (0, {"a.npy": npy(good[0])}),
        "png 1x1 (valid)": (0, {"a.png": lambda p: Image.new("RGB", (1, 1), (9, 9, 9)).save(p)}),
        "grey 16-bit png (valid)": (0, {"a.png": lambda p: Image.fromarray(
            (rng.random((20, 20)) * 60000).astype(np.uint16)).save(p)}),
        "cmyk jpg (valid)": (0, {"a.jpg": lambda p: photo.convert("CMYK").save(p, "JPEG")}),
        "rgba png + one broken (valid: skipped with a warning)": (0, {
            "a.png": lambda p: photo.convert("RGBA").save(p), "b.png": raw(b"broken")}),
    }
    for k, (name, (expect, files)) in enumerate(sets.items()):
        f = folder(f"set{k}", files)
        cases.append({"id": f"calib: {name}", "argv": ["calibrate", str(model), "--calib", str(f),
                                                        "--calib-method", "minmax",
                                                        "-o", str(d / "calib" / f"out{k}.json")],
                      "expect": expect})
    return cases


def artifact_cases(d: Path, art: Path) -> list[dict]:
    from vcc.runtime.manifest import seal

    x = d / "x.npy"
    np.save(x, np.zeros((1, 3, 8, 8), np.float32))
    manifest = json.loads((art / "manifest.json").read_text())

    def edit_manifest(fn, reseal=False):
        def f(a):
            m = json.loads(json.dumps(manifest))
            m = fn(m)
            if reseal:
                m = seal(m)
            (a / "manifest.json").write_text(m if isinstance(m, str) else json.dumps(m))
        return f

    def lib(fn):
        return lambda a: (a / "model.so").write_bytes(fn((a / "model.so").read_bytes()))

    def flip(b):
        b = bytearray(b)
        b[len(b) // 2] ^= 0x10
        return bytes(b)

    tampers = {
        "emptied files + altered model.so": lambda a: (edit_manifest(_set(["files"], {}))(a),
                                                       lib(lambda b: b + b"\0")(a)),
        "emptied files, resealed": edit_manifest(_set(["files"], {}), reseal=True),
        "mean 9,9,9": edit_manifest(_set(["preprocess", "mean"], [9, 9, 9])),
        "manifest a JSON list": edit_manifest(lambda m: [m]),
        "files entry a list": edit_manifest(_set(["files", "model.so"], ["a"])),
        "files entry a list, resealed": edit_manifest(_set(["files", "model.so"], ["a"]), reseal=True),
        "missing inputs": edit_manifest(_drop("inputs")),
        "missing inputs, resealed": edit_manifest(_drop("inputs"), reseal=True),
        "inputs a dict, resealed": edit_manifest(_set(["inputs"], {"name": "x"}), reseal=True),
        "input shape negative, resealed": edit_manifest(_set(["inputs", 0, "shape"], [1, 3, -8, 8]), reseal=True),
        "input shape 2^40, resealed": edit_manifest(_set(["inputs", 0, "shape"], [1, 3, 2**40, 8]), reseal=True),
        "std 0, resealed": edit_manifest(_set(["preprocess", "std"], [0, 0, 0]), reseal=True),
        "format_version 1": edit_manifest(_set(["format_version"], 1)),
        "format_version text": edit_manifest(_set(["format_version"], "2")),
        "manifest not json": edit_manifest(lambda m: "{oops"),
        "manifest empty": edit_manifest(lambda m: ""),
        "manifest NaN": edit_manifest(lambda m: json.dumps(m).replace('"classes": 4', '"classes": NaN')),
        "manifest deleted": lambda a: (a / "manifest.json").unlink(),
        "model.so flipped byte": lib(flip),
        "model.so truncated": lib(lambda b: b[: len(b) // 3]),
        "model.so emptied": lib(lambda b: b""),
        "model.so deleted": lambda a: (a / "model.so").unlink(),
        "model.so a directory": lambda a: ((a / "model.so").unlink(), (a / "model.so").mkdir()),
        "artifact a file": lambda a: (shutil.rmtree(a), a.write_text("x")),
        "listed file missing, resealed": edit_manifest(_set(["files", "extra.bin"], {"sha256": "0" * 64, "bytes": 1}),
                                                      reseal=True),
    }
    cases = []
    for k, (name, tamper) in enumerate(tampers.items()):
        a = d / "tampered" / f"a{k}"
        shutil.copytree(art, a)
        tamper(a)
        cases.append({"id": f"artifact: {name}", "argv": ["run", str(a), "--input", str(x),
                                                           "-o", str(d / "tampered" / f"y{k}.npy")],
                      "expect": 2, "no_output": str(d / "tampered" / f"y{k}.npy")})
    cases.append({"id": "artifact: untouched", "argv": ["run", str(art), "--input", str(x), "-o", str(d / "y.npy")],
                  "expect": 0})
    return cases


ZOO = "unet_mobilenetv2"


def checkpoint_cases(d: Path) -> list[dict]:
    from vcc.frontends.zoo.export import build_zoo_module

    _, module = build_zoo_module(ZOO)
    sd = module.state_dict()
    first = next(k for k, v in sd.items() if v.is_floating_point() and v.ndim == 4)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    ck = d / "ckpt"
    ck.mkdir()
    real = ck / "real.pth"
    torch.save(sd, real)
    bad = {
        "empty file": lambda p: p.write_bytes(b""),
        "text file": lambda p: p.write_text("not a checkpoint\n"),
        "truncated": lambda p: p.write_bytes(real.read_bytes()[: real.stat().st_size // 2]),
        "malicious pickle": lambda p: torch.save({"x": Evil()}, p),
        "a list": lambda p: torch.save([torch.zeros(1)], p),
        "a bare tensor": lambda p: torch.save(torch.zeros(3), p),
        "missing keys": lambda p: torch.save(dict(list(sd.items())[:10]), p),
        "extra keys": lambda p: torch.save({**sd, "extra.weight": torch.zeros(1)}, p),
        "wrong shape": lambda p: torch.save({**sd, first: torch.zeros(1, 1, 1, 1)}, p),
        "all NaN": lambda p: torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                                         for k, v in sd.items()}, p),
        "integer weights": lambda p: torch.save({**sd, first: sd[first].to(torch.int64)}, p),
        "wrapped under junk key": lambda p: torch.save({"junk": sd}, p),
        "empty dict": lambda p: torch.save({}, p),
    }
    cases = []
    for k, (name, write) in enumerate(bad.items()):
        p = ck / f"bad{k}.pth"
        write(p)
        cases.append({"id": f"checkpoint: {name}", "argv": ["export", ZOO, "--size", "32", "32", "--weights", str(p),
                                                             "-o", str(ck / f"out{k}.onnx")],
                      "expect": 2, "no_output": str(ck / f"out{k}.onnx")})
    cases.append({"id": "checkpoint: wrapped under model_state (valid)",
                  "argv": ["export", ZOO, "--size", "32", "32", "--weights", str(_wrapped(ck, sd)),
                           "-o", str(ck / "ok.onnx")], "expect": 0})
    return cases


def _wrapped(ck: Path, sd) -> Path:
    p = ck / "wrapped.pth"
    torch.save({"model_state": sd, "epoch": 3}, p)
    return p


# --- running --------------------------------------------------------------------------------------

def run_cases(cases: list[dict], work: Path, pythonpath: str | None = None, timeout: int = 600) -> dict[str, dict]:
    """Run the cases in workers; a worker killed by a signal marks its case and a new one goes on."""
    import os

    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    results: dict[str, dict] = {}
    todo = list(cases)
    n = 0
    while todo:
        n += 1
        spec, out = work / f"cases{n}.json", work / f"results{n}.jsonl"
        spec.write_text(json.dumps([{"id": c["id"], "argv": c["argv"]} for c in todo]))
        proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_runner.py"), str(spec), str(out)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=work)
        started = None
        for line in out.read_text().splitlines() if out.exists() else []:
            r = json.loads(line)
            if r.get("started"):
                started = r["id"]
            else:
                results[r["id"]] = r
                started = None
        if started is None:
            if proc.returncode != 0 and len(results) < len(cases):
                raise AssertionError(f"fuzz worker failed before its first case:\n{proc.stderr[-3000:]}")
            break
        sig = -proc.returncode if proc.returncode < 0 else None
        results[started] = {"id": started, "code": proc.returncode,
                            "signal": signal.Signals(sig).name if sig else None, "output": proc.stderr[-2000:]}
        todo = [c for c in todo if c["id"] not in results]
    return results


def classify(case: dict, r: dict) -> tuple[str, str]:
    """clean (exit 2, one error line, no traceback; or a valid input built), crash (a signal, a
    traceback, exit 1, more than one error line), silent (exit 0 on an invalid input)."""
    out = r.get("output", "")
    if r.get("signal") or r["code"] < 0:
        return "crash", f"killed by {r.get('signal')}"
    if "Traceback" in out:
        return "crash", "traceback: " + out.strip().splitlines()[-1][:200]
    if r["code"] == 0:
        expect = case["expect"]
        if expect == 2 or (expect == "valid?" and not _ort_accepts(Path(case["model"]))):
            return "silent", "exit 0 on an invalid input"
        return "clean", "exit 0"
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    if r["code"] != 2:
        return "crash", f"exit {r['code']}: {(errors or out.strip().splitlines() or [''])[-1][:200]}"
    if len(errors) != 1 or not out.rstrip().endswith(errors[0]) or len(errors[0]) > 420:
        return "crash", f"exit 2 but not one final error line: {out[-300:]!r}"
    if case["expect"] == 0:
        return "crash", f"exit 2 on a valid input: {errors[0][:200]}"
    return "clean", errors[0][:200]


@pytest.fixture(scope="module")
def fuzz_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    cases = model_cases(d)
    tiny = d / "tiny.onnx"
    m = base_model()
    onnx.save(m, tiny)
    cases += calib_cases(d, tiny)
    art_model = d / "art.onnx"
    sys.path.insert(0, str(Path(__file__).parent))
    from test_manifest import tiny_onnx

    tiny_onnx(art_model)
    art = build(BuildConfig(model=art_model, out=d / "art", schedules=False)).out
    cases += artifact_cases(d, art)
    cases += checkpoint_cases(d)
    return d, cases


@pytest.mark.slow
def test_fuzz_every_case_is_a_clean_exit(fuzz_inputs):
    d, cases = fuzz_inputs
    assert len(cases) >= 150
    results = run_cases(cases, d)
    verdicts = {c["id"]: classify(c, results[c["id"]]) for c in cases}
    counts = {k: sum(v[0] == k for v in verdicts.values()) for k in ("clean", "crash", "silent")}
    print(f"fuzz: {len(cases)} cases: {counts}")
    for c in cases:
        for key in ("no_artifact", "no_output"):
            if key in c:
                p = Path(c[key])
                assert not p.exists(), f"{c['id']}: left {p}"
                assert not any(q.name.startswith(f".{p.name}.") for q in p.parent.glob(".*")), \
                    f"{c['id']}: left a temporary artifact beside {p}"
    bad = {k: v for k, v in verdicts.items() if v[0] != "clean"}
    assert not bad, f"{counts}; " + "\n".join(f"{k}: {v}" for k, v in list(bad.items())[:40])


def test_worker_matches_the_cli(tmp_path):
    """The worker runs a case as `vcc` does: the same exit code and the same error line."""
    m = base_model()
    _set_attr(m, "conv1", "strides", [0, 0])
    bad = tmp_path / "bad.onnx"
    onnx.save(m, bad)
    onnx.save(base_model(), tmp_path / "good.onnx")
    cases = [{"id": "bad", "argv": ["inspect", str(bad)]}, {"id": "good", "argv": ["inspect", str(tmp_path / "good.onnx")]},
             {"id": "missing", "argv": ["inspect", str(tmp_path / "nope.onnx")]}]
    worker = run_cases(cases, tmp_path)
    for c in cases:
        proc = subprocess.run([sys.executable, "-m", "vcc.driver.cli", *c["argv"]], capture_output=True,
                              text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == worker[c["id"]]["code"], c["id"]
        cli_err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert cli_err == [ln for ln in worker[c["id"]]["output"].splitlines() if ln.startswith("error:")]
    assert worker["bad"]["code"] == 2 and "strides [0, 0] must be positive" in worker["bad"]["output"]
    assert worker["good"]["code"] == 0
