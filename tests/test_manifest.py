"""The manifest is covered by the integrity check and validated on load: every hand edit, every
field of the wrong type or range, an older format, each refused with the manifest and field named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import vcc.runtime
from vcc.driver.build import BuildConfig, build
from vcc.errors import VccError
from vcc.runtime.manifest import FORMAT_VERSION, canonical_hash, seal


def tiny_onnx(path):
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              initializer=[numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    d = tmp_path_factory.mktemp("man")
    return build(BuildConfig(model=tiny_onnx(d / "tiny.onnx"), out=d / "tiny", schedules=False)).out


def _copy(artifact, tmp_path, edit, reseal=False):
    out = tmp_path / "edited"
    shutil.copytree(artifact, out)
    m = json.loads((out / "manifest.json").read_text())
    m = edit(m)
    if reseal:
        m = seal(m)
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def test_written_manifest_is_sealed_and_loads(artifact):
    m = json.loads((artifact / "manifest.json").read_text())
    assert m["format_version"] == FORMAT_VERSION and m["manifest_sha256"] == canonical_hash(m)
    p = vcc.runtime.load(artifact)
    assert p(np.ones((1, 3, 8, 8), np.float32)).shape == (1, 4, 8, 8)


def _set(path, value):
    def edit(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return m
    return edit


def _drop(key):
    def edit(m):
        del m[key]
        return m
    return edit


# hand edits: the self-hash catches them, whatever they are
HAND_EDITS = {
    "emptied files": _set(["files"], {}),
    "mean 9,9,9": _set(["preprocess", "mean"], [9, 9, 9]),
    "a files entry a list": _set(["files", "model.so"], ["x", 1]),
    "missing inputs": _drop("inputs"),
    "hash removed": _drop("manifest_sha256"),
}


@pytest.mark.parametrize("name", sorted(HAND_EDITS))
def test_hand_edit_is_refused(name, artifact, tmp_path):
    out = _copy(artifact, tmp_path, HAND_EDITS[name])
    with pytest.raises(VccError, match=r"manifest\.json: (the manifest was altered|field 'manifest_sha256')"):
        vcc.runtime.load(out)


def test_emptied_files_with_modified_library_does_not_run(artifact, tmp_path, cli):
    """The bypass of the issue: empty `files`, alter model.so: refused, exit 2, no traceback."""
    out = _copy(artifact, tmp_path, _set(["files"], {}))
    with open(out / "model.so", "ab") as f:
        f.write(b"\0")
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    proc = cli("run", out, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", check=2)
    assert "manifest was altered" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "y.npy").exists()


# edits that are re-sealed (the hash recomputed): the schema still refuses them, naming the field
SCHEMA = {
    "emptied files": (_set(["files"], {}), "'files' does not list model.so"),
    "files entry a list": (_set(["files", "model.so"], ["x"]), "'files.model.so' must be an object"),
    "missing inputs": (_drop("inputs"), "'inputs' is missing"),
    "inputs a string": (_set(["inputs"], "x"), "'inputs' must be a list"),
    "shape of zero": (_set(["inputs", 0, "shape"], [1, 3, 0, 8]), r"'inputs\[0\].shape\[2\]' must be an int"),
    "shape of a float": (_set(["outputs", 0, "shape"], [1, 4.5, 8, 8]), r"'outputs\[0\].shape\[1\]'"),
    "bad dtype": (_set(["inputs", 0, "dtype"], "float128"), r"'inputs\[0\].dtype' is 'float128'"),
    "std of zero": (_set(["preprocess", "std"], [0, 1, 1]), r"'preprocess.std\[0\]' is 0"),
    "mean a string": (_set(["preprocess", "mean"], ["a", 1, 1]), r"'preprocess.mean\[0\]' must be a finite"),
    "size vs input": (_set(["preprocess", "size"], [9, 9]), "'preprocess.size' is"),
    "sha not hex": (_set(["files", "model.so", "sha256"], "zz"), "'files.model.so.sha256'"),
    "bytes a string": (_set(["files", "model.so", "bytes"], "12"), "'files.model.so.bytes' must be an int"),
    "path in files": (_set(["files", "../x.so"], {"sha256": "0" * 64, "bytes": 1}), "not a plain file name"),
    "dtype": (_set(["dtype"], "int4"), "'dtype' is 'int4'"),
}


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_schema_refuses_resealed_edit(name, artifact, tmp_path):
    edit, message = SCHEMA[name]
    out = _copy(artifact, tmp_path, edit, reseal=True)
    with pytest.raises(VccError, match=message) as e:
        vcc.runtime.load(out)
    assert str(out / "manifest.json") in str(e.value)


def test_not_an_object_and_older_format(artifact, tmp_path):
    out = _copy(artifact, tmp_path, lambda m: [m])
    with pytest.raises(VccError, match="must be a JSON object, got a JSON list"):
        vcc.runtime.load(out)
    (out / "manifest.json").write_text(json.dumps({**json.loads((artifact / "manifest.json").read_text()),
                                                   "format_version": 1}))
    with pytest.raises(VccError, match="artifact format 1 is older .* rebuild it with `vcc build`"):
        vcc.runtime.load(out)
    (out / "manifest.json").write_text("[" * 100000)
    with pytest.raises(VccError, match="corrupt manifest"):
        vcc.runtime.load(out)


def test_library_size_is_checked(artifact, tmp_path):
    out = _copy(artifact, tmp_path, _set(["files", "model.so", "bytes"], 1), reseal=True)
    with pytest.raises(VccError, match="model.so was altered"):
        vcc.runtime.load(out)
