"""The command line end to end: build, compare, run, inspect, and every error path's exit code 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image
from subjects import BiSeNetShaped, EfficientShaped, seeded

from vcc.frontends.torch_export import export_torch
from vcc.runtime.codegen import AVX512_CPUS, host_mcpu


@pytest.fixture(scope="module")
def bisenet_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "bisenet_shaped.onnx"
    export_torch(seeded(BiSeNetShaped(num_classes=19)), (1, 3, 256, 256), path)
    return path


@pytest.fixture(scope="module")
def bisenet_artifact(bisenet_onnx, tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("a") / "bisenet-fp32"
    proc = cli("build", bisenet_onnx, "--dtype", "fp32", "--out", out, check=0)
    assert "[compile] done" in proc.stderr and str(out) in proc.stderr
    # the schedule summary is printed, and every op left to TVM's default schedule is listed
    summary = json.loads((out / "manifest.json").read_text())["schedules"]
    assert f"schedules: {summary['summary']}" in proc.stderr
    fell_back = [f for f in summary["functions"] if f["schedule"] in ("dlight", "default")]
    assert proc.stderr.count("default schedule: ") == len(fell_back), proc.stderr
    return out


@pytest.mark.slow
def test_bisenet_shaped_build_and_compare(bisenet_artifact, bisenet_onnx, data, cli):
    manifest = json.loads((bisenet_artifact / "manifest.json").read_text())
    assert manifest["inputs"][0]["shape"] == [1, 3, 256, 256]
    assert manifest["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert manifest["target"]["mtriple"] == "x86_64-linux-gnu"
    # built for this host's cpu by its flags; an AVX-512 one gets full 512-bit vectors outside the
    # intrinsics too
    assert manifest["target"]["mcpu"] == host_mcpu()
    assert manifest["target"]["mattr"] == (["-prefer-256-bit"] if host_mcpu() in AVX512_CPUS else [])
    assert all(n["precision"] == "fp32" for n in manifest["nodes"])
    assert len(manifest["source_model"]["sha256"]) == 64
    proc = cli("compare", bisenet_artifact, "--ref", bisenet_onnx, "--images",
               data / "images" / "celebamask_hq_maskgan", "--json", check=0)
    summary = json.loads(proc.stdout)
    assert summary["images"] == 4
    assert summary["rel_error"] <= 1e-4, summary
    assert summary["agreement"] == 1.0, summary


@pytest.mark.slow
def test_efficient_ops_build_and_compare(tmp_path, data, cli):
    """Depthwise, dilated, grouped convs, ConvTranspose, PReLU, channel shuffle, softmax attention."""
    model = tmp_path / "eff.onnx"
    export_torch(seeded(EfficientShaped()), (1, 3, 192, 192), model)
    out = tmp_path / "eff"
    cli("build", model, "--out", out, "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", check=0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preprocess"]["source"] == "command line"
    assert {"ConvTranspose", "PRelu", "MatMul", "Softmax"} <= {n["op"] for n in manifest["nodes"]}
    proc = cli("compare", out, "--ref", model, "--images", data / "images" / "human_seg_vikram" / "images",
               "--limit", "5", "--json", check=0)
    summary = json.loads(proc.stdout)
    assert summary["images"] == 5
    assert summary["rel_error"] <= 1e-4 and summary["agreement"] == 1.0, summary


@pytest.mark.slow
def test_run_on_photo_and_tensor(bisenet_artifact, data, tmp_path, cli):
    photo = data / "images" / "celebamask_hq_maskgan" / "0.jpg"
    mask = tmp_path / "mask.png"
    cli("run", bisenet_artifact, photo, "--output", mask, check=0)
    im = Image.open(mask)
    assert im.mode == "P" and im.size == (256, 256)
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 256)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cli("run", bisenet_artifact, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", check=0)
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (1, 19, 256, 256) and np.isfinite(y).all()
    np.save(tmp_path / "bad.npy", x[:, :, :100])
    proc = cli("run", bisenet_artifact, "--input", tmp_path / "bad.npy", "--output", tmp_path / "z.npy", check=2)
    assert "expects float32[1, 3, 256, 256]" in proc.stderr


def test_inspect_reports_ops_params_macs(bisenet_onnx, cli):
    proc = cli("inspect", bisenet_onnx, "--json", check=0)
    info = json.loads(proc.stdout)
    assert info["ops"]["Conv"] > 10 and "BatchNormalization" not in info["ops"]
    assert info["params"] > 100_000 and info["macs"] > 1e8
    text = cli("inspect", bisenet_onnx, check=0).stdout
    assert "MACs" in text and "Conv(" in text


# --- errors: exit code 2 and a message that names the cause ------------------------------------

def test_missing_truncated_and_text_models(bisenet_onnx, tmp_path, cli):
    proc = cli("build", tmp_path / "nope.onnx", "--out", tmp_path / "o", check=2)
    assert "nope.onnx: no such file" in proc.stderr
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(bisenet_onnx.read_bytes()[:5000])
    proc = cli("build", trunc, "--out", tmp_path / "o", check=2)
    assert "trunc.onnx" in proc.stderr and "not a valid ONNX model" in proc.stderr
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    proc = cli("build", text, "--out", tmp_path / "o", check=2)
    assert "notes.onnx" in proc.stderr and "not a valid ONNX model" in proc.stderr
    assert not (tmp_path / "o").exists()
    assert not any(p.name.startswith(".o.") for p in tmp_path.iterdir()), "no half-written artifact"


def test_unsupported_ops_are_all_listed(tmp_path, cli):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("LRN", ["a"], ["b"], size=3, name="lrn_1"),
             helper.make_node("Relu", ["b"], ["c"], name="relu2"),
             helper.make_node("LRN", ["c"], ["d"], size=3, name="lrn_2"),
             helper.make_node("InstanceNormalization", ["d", "s", "bb"], ["y"], name="inorm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                              initializer=[onnx.numpy_helper.from_array(np.ones(2, np.float32), "s"),
                                           onnx.numpy_helper.from_array(np.zeros(2, np.float32), "bb")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "lrn.onnx"
    onnx.save(model, path)
    proc = cli("build", path, "--out", tmp_path / "o", check=2)
    err = proc.stderr
    assert "unsupported ONNX op types" in err
    assert "LRN (2x: lrn_1, lrn_2)" in err and "InstanceNormalization (1x: inorm)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_damaged_artifact_is_refused(bisenet_artifact, tmp_path, cli):
    broken = tmp_path / "broken"
    shutil.copytree(bisenet_artifact, broken)
    (broken / "model.so").unlink()
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 256, 256), np.float32))
    proc = cli("run", broken, "--input", x, "--output", tmp_path / "y.npy", check=2)
    assert "model.so is missing" in proc.stderr
    altered = tmp_path / "altered"
    shutil.copytree(bisenet_artifact, altered)
    with open(altered / "model.so", "ab") as f:
        f.write(b"\0")
    proc = cli("run", altered, "--input", x, "--output", tmp_path / "y.npy", check=2)
    assert "model.so was altered" in proc.stderr
    (altered / "manifest.json").unlink()
    proc = cli("compare", altered, "--ref", "x.onnx", "--images", tmp_path, check=2)
    assert "manifest.json is missing" in proc.stderr


def test_bad_options(bisenet_onnx, tmp_path, cli):
    proc = cli("build", bisenet_onnx, "--out", tmp_path / "o", "--mean", "0.5,0.5", check=2)
    assert "--mean: expected 3 numbers" in proc.stderr
    proc = cli("build", bisenet_onnx, "--out", tmp_path / "o", "--dtype", "int4", check=2)
    assert "--dtype 'int4' is not supported" in proc.stderr
    proc = cli("build", bisenet_onnx, "--out", tmp_path / "o", "--size", "300", "300", check=2)
    assert "256" in proc.stderr  # the model is fixed at 256x256: the message shows what it is
    assert not (tmp_path / "o").exists()


def test_measure_alternating_rounds():
    """Each engine gets its warm-up, then rounds of one discarded run + up to 5 timed runs, the
    engines taking turns; every engine ends with exactly `runs` timings."""
    from vcc.runtime.bench import measure_alternating

    order = []
    fns = {name: (lambda n=name: order.append(n)) for name in ("a", "b")}
    lat = measure_alternating(fns, runs=7, block=5, warmup=2)
    assert {k: v.runs for k, v in lat.items()} == {"a": 7, "b": 7}
    # warm-up a a b b, then round 1: a x (1 + 5), b x 6, round 2: a x (1 + 2), b x 3
    assert order == ["a"] * 2 + ["b"] * 2 + ["a"] * 6 + ["b"] * 6 + ["a"] * 3 + ["b"] * 3
    assert all(v.median_ms >= 0 and v.p90_ms >= v.min_ms for v in lat.values())
