"""int8: the quantization plan, the QDQ rewrite, integer codegen, calibration data and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from subjects import BiSeNetShaped, EfficientShaped, seeded

from vcc.calib.calibrate import CalibrationSettings, calibrate
from vcc.calib.dataset import calibration_source, choose_evenly
from vcc.errors import VccError
from vcc.frontends.onnx_export import export_onnx
from vcc.frontends.onnx_import import load_model
from vcc.frontends.torch_export import export_torch
from vcc.ir.preprocess import Preprocess
from vcc.passes import PassManager, default_fp32_pipeline
from vcc.passes.quantize import (
    TensorQuant,
    insert_qdq,
    output_writers,
    plan_quantization,
    quantize_weights_per_channel,
    resolve_group_quant,
)
from vcc.runtime.reference import OrtSession

SIZE = 96


@pytest.fixture(scope="module")
def bisenet(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "bisenet_shaped.onnx"
    export_torch(seeded(BiSeNetShaped(num_classes=5, width=16)), (1, 3, SIZE, SIZE), path)
    graph = PassManager(default_fp32_pipeline()).run(load_model(path))
    return path, graph


def test_plan_quantizes_convs_and_shares_concat_scales(bisenet):
    _, g = bisenet
    plan = plan_quantization(g)
    convs = [n for n in g.nodes if n.op == "Conv"]
    # the logits conv (-> Resize -> output) stays fp32 by the output rule
    (head,) = output_writers(g)
    assert plan.skipped[head].startswith("writes the model output")
    assert g.consumers()[g.node(head).outputs[0]][0].op == "Resize"
    assert head in plan_quantization(g, output_fp32=False).nodes
    skipped = {n.name for n in convs if n.name not in plan.nodes} - {head}
    # and exactly the convs on a 1x1 map (ARM / FFM attention vectors, global context)
    assert skipped == {n.name for n in convs if np.prod(g.shape(n.outputs[0])[2:]) == 1}
    assert len(skipped) == 5
    # the ARM / FFM gates by block rule, the global-context conv (in no block) by the 1x1-map rule
    in_blocks = {n for b in g.blocks if b.kind in ("arm", "ffm") for n in b.nodes}
    assert {s for s in skipped if plan.skipped[s].startswith("block rule: ")} == skipped & in_blocks
    assert len(skipped & in_blocks) == 4
    assert all("1x1 map" in plan.skipped[s] for s in skipped - in_blocks)
    # --no-block-rules quantizes the gates like any conv; --quantize-attention the rest too
    plain = plan_quantization(g, block_rules=False)
    assert set(plain.nodes) == set(plan.nodes) | (skipped & in_blocks)
    assert set(plan_quantization(g, block_rules=False, attention_fp32=False, output_fp32=False).nodes) == \
        set(plan.nodes) | skipped | {head}
    assert g.inputs[0] in plan.tensors and g.outputs[0] not in plan.tensors
    concat = next(n for n in g.nodes if n.op == "Concat")
    groups = {plan.groups[t] for t in concat.inputs + concat.outputs if t in plan.groups}
    assert len(groups) == 1, "a Concat's inputs and output share one scale"
    with pytest.raises(VccError, match="do not exist: nope"):
        plan_quantization(g, fallback=["nope"])
    fb = plan_quantization(g, fallback=[plan.nodes[0]])
    assert plan.nodes[0] not in fb.nodes and fb.skipped[plan.nodes[0]] == "--fallback"


class _TwoHeads(torch.nn.Module):
    """Logits through upsample + softmax, an auxiliary output through a residual Add."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.cls = torch.nn.Conv2d(8, 4, 1)
        self.aux = torch.nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        f = torch.relu(self.body(x))
        logits = torch.softmax(torch.nn.functional.interpolate(self.cls(f), scale_factor=2.0, mode="bilinear"), 1)
        return logits, self.aux(f) + f


def test_output_writers_follow_non_compute_ops_only(tmp_path):
    path = tmp_path / "two_heads.onnx"
    export_torch(seeded(_TwoHeads()), (1, 3, 16, 16), path)
    g = PassManager(default_fp32_pipeline()).run(load_model(path))
    convs = {n.name: n for n in g.nodes if n.op == "Conv"}
    cls = next(k for k, n in convs.items() if g.shape(n.outputs[0])[1] == 4)
    # the classes conv reaches an output through Resize and Softmax; the aux conv only through an
    # Add (a computation: its output is not the conv's own) and the body conv through convs
    assert output_writers(g) == {cls}
    plan = plan_quantization(g)
    assert cls not in plan.nodes and len(plan.nodes) == 2


def test_weights_per_channel_symmetric():
    w = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32)
    w[3] *= 100  # one channel 100x larger must not hurt the others
    q, s = quantize_weights_per_channel(w, axis=0)
    assert q.dtype == np.int8 and s.shape == (8,) and np.abs(q).max() == 127
    err = np.abs(q * s.reshape(-1, 1, 1, 1) - w).max(axis=(1, 2, 3))
    assert np.all(err <= s / 2 + 1e-7)
    assert s[3] > 50 * s[0]


def test_dead_channels_keep_their_bias():
    """Trained nets have channels whose weights decayed to ~1e-41 (CGNet: dozens per conv); their
    output is the bias. max|w|/127 as the weight scale makes the int32 bias code overflow (and
    underflows to a zero scale), so the channel's constant output was lost."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w[1] = 1e-41  # denormal: max/127 is below float32's smallest normal
    w[2] = 3e-40
    w[3] = 0.0
    b = np.array([0.1, 0.7, -1.3, 2.0], np.float32)
    s_in = 1e-3
    q, s = quantize_weights_per_channel(w, 0, b, s_in)
    assert np.all(np.isfinite(s)) and np.all(s >= np.finfo(np.float32).tiny)
    b_codes = np.round(b / (s_in * s))
    assert np.abs(b_codes).max() <= 2**24
    assert np.abs(b_codes * s_in * s - b).max() <= (s_in * s).max()  # the bias survives
    assert np.all(q[1:] == 0)  # weights that small are zero for every purpose
    q0, s0 = quantize_weights_per_channel(w[:1], 0, b[:1], s_in)  # a live channel is untouched
    assert s0[0] == np.float32(np.abs(w[0]).max() / 127) and np.array_equal(q0, q[:1])


def test_tensor_quant_dtype_and_scale():
    assert TensorQuant.from_threshold(2.55, unsigned=True) == TensorQuant(np.float32(0.01).item(), "uint8", 2.55)
    q = TensorQuant.from_threshold(1.27, unsigned=False)
    assert q.dtype == "int8" and abs(q.scale - 0.01) < 1e-9


def test_qdq_model_and_int8_codegen_match_on_real_images(bisenet, data, tmp_path):
    """Calibrate on real photos, run the QDQ model in ORT and the integer TVM build on them."""
    import tvm
    from tvm import relax

    from vcc.calib.images import list_images, load_image
    from vcc.runtime.codegen import compile_relax, cpu_target
    from vcc.runtime.lower import lower_to_relax

    path, g = bisenet
    plan = plan_quantization(g)
    pre = Preprocess(size=(SIZE, SIZE))
    src = calibration_source(data / "images" / "voc2012_vainf_samples", g.shape(g.inputs[0]), pre, 6)
    cal = calibrate(g, plan, src, "0" * 64, pre.to_dict(), CalibrationSettings("kl"), progress=False)
    qg = insert_qdq(g, plan, cal.quant)
    ops = [n.op for n in qg.nodes]
    assert ops.count("QuantizeLinear") == len(plan.tensors)
    rec = {r["name"]: r for r in cal.document["tensors"]}
    relu_out = next(n.outputs[0] for n in g.nodes if n.op == "Relu" and n.outputs[0] in rec)
    assert rec[relu_out]["dtype"] == "uint8" and rec[g.inputs[0]]["dtype"] == "int8"
    sim = OrtSession(export_onnx(qg), optimize=False)
    fp32 = OrtSession(path)
    vm = relax.VirtualMachine(compile_relax(lower_to_relax(qg), cpu_target()), tvm.cpu())
    for img in list_images(data / "images" / "celebamask_hq_maskgan"):
        x = load_image(img, pre)
        ref, q_sim = fp32.run(x)[0], sim.run(x)[0]
        art = vm["main"](tvm.runtime.tensor(x)).numpy()
        scale = np.abs(ref).max()
        assert np.abs(q_sim - ref).max() < 0.25 * scale, "int8 simulation far from fp32"
        # the integer build differs from the float simulation only by rounding steps
        assert np.abs(art - q_sim).max() < 0.1 * scale


def test_calibration_is_deterministic_and_cached(bisenet, data, tmp_path):
    path, g = bisenet
    plan = plan_quantization(g)
    pre = Preprocess(size=(SIZE, SIZE))
    folder = data / "images" / "voc2012_vainf_samples"
    docs = []
    for _ in range(2):
        src = calibration_source(folder, g.shape(g.inputs[0]), pre, 5)
        docs.append(calibrate(g, plan, src, "a" * 64, pre.to_dict(), CalibrationSettings("percentile"),
                              progress=False).document)
    assert json.dumps(docs[0], sort_keys=True) == json.dumps(docs[1], sort_keys=True)
    cache = tmp_path / "calib.json"
    src = calibration_source(folder, g.shape(g.inputs[0]), pre, 5)
    first = calibrate(g, plan, src, "a" * 64, pre.to_dict(), CalibrationSettings("kl"), cache, progress=False)
    again = calibrate(g, plan, src, "a" * 64, pre.to_dict(), CalibrationSettings("kl"), cache, progress=False)
    assert not first.from_cache and again.from_cache and again.quant == first.quant
    with pytest.raises(VccError, match="stale calibration cache.*method"):
        calibrate(g, plan, src, "a" * 64, pre.to_dict(), CalibrationSettings("minmax"), cache, progress=False)
    with pytest.raises(VccError, match="stale calibration cache.*model_sha256"):
        calibrate(g, plan, src, "b" * 64, pre.to_dict(), CalibrationSettings("kl"), cache, progress=False)
    # another plan (a --fallback node, other block rules) quantizes other tensors or groups
    other = plan_quantization(g, fallback=[plan.nodes[-1]])
    with pytest.raises(VccError, match="stale calibration cache.*plan_sha256"):
        calibrate(g, other, src, "a" * 64, pre.to_dict(), CalibrationSettings("kl"), cache, progress=False)


def test_calibration_sources(tmp_path, data):
    assert choose_evenly(list(range(10)), 3) == [0, 4, 9]
    assert choose_evenly(list(range(3)), 10) == [0, 1, 2]
    shape = (1, 3, 8, 8)
    npy = tmp_path / "npy"
    npy.mkdir()
    for k in range(4):
        np.save(npy / f"{k}.npy", np.full((3, 8, 8), k, np.float32))
    src = calibration_source(npy, shape, None, 2)
    arrays = list(src)
    assert src.kind == "npy" and len(arrays) == 2 and arrays[1].shape == shape and arrays[1][0, 0, 0, 0] == 3
    np.save(npy / "5.npy", np.zeros((3, 9, 8), np.float32))
    with pytest.raises(VccError, match=r"5.npy: tensor of shape \[3, 9, 8\] does not match"):
        list(calibration_source(npy, shape, None, None))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mixed / "grey.png")
    Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(mixed / "rgba.png")
    (mixed / "broken.jpg").write_bytes(b"not a jpeg")
    src = calibration_source(mixed, shape, Preprocess(size=(8, 8)), 50)
    assert [p.name for p in src.files] == ["grey.png", "rgba.png"] and src.skipped[0].endswith("broken.jpg")
    assert all(x.shape == shape for x in src)


def _tiny_model(tmp_path):
    path = tmp_path / "eff.onnx"
    export_torch(seeded(EfficientShaped(num_classes=2, width=8)), (1, 3, 64, 64), path)
    return path


def test_int8_error_paths(tmp_path, cli, data):
    model = _tiny_model(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    proc = cli("build", model, "--dtype", "int8", "--calib", empty, "--out", out, check=2)
    assert "no calibration images or .npy tensors found" in proc.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"garbage")
    (bad / "b.png").write_bytes(b"\x89PNG broken")
    proc = cli("build", model, "--dtype", "int8", "--calib", bad, "--out", out, check=2)
    assert "none of the 2 image files could be read" in proc.stderr
    proc = cli("build", model, "--dtype", "int8", "--out", out, check=2)
    assert "needs calibration data: --calib" in proc.stderr
    photos = data / "images" / "celebamask_hq_maskgan"
    proc = cli("build", model, "--dtype", "int8", "--calib", photos, "--fallback", "no_such_node",
               "--out", out, check=2)
    assert "--fallback names nodes that do not exist: no_such_node" in proc.stderr
    proc = cli("build", model, "--dtype", "int8", "--calib", photos, "--calib-method", "magic",
               "--out", out, check=2)
    assert "unknown --calib-method 'magic'" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_int8_build_writes_calibration_and_reuses_cache(tmp_path, cli, data):
    model = _tiny_model(tmp_path)
    photos = data / "images" / "voc2012_vainf_samples"
    cache = tmp_path / "calib-cache.json"
    outs = []
    for k in range(2):
        out = tmp_path / f"int8-{k}"
        proc = cli("build", model, "--dtype", "int8", "--calib", photos, "--num-calib", "6", "--calib-cache", cache,
                   "--out", out, "--emit-qdq", tmp_path / "qdq.onnx", check=0)
        outs.append(out)
    assert "from cache" in proc.stderr
    manifest = json.loads((outs[1] / "manifest.json").read_text())
    assert manifest["dtype"] == "int8" and manifest["calibration"]["from_cache"]
    precisions = {n["precision"] for n in manifest["nodes"]}
    assert {"int8", "fp32", "QuantizeLinear", "DequantizeLinear"} <= precisions
    int8 = [n for n in manifest["nodes"] if n["precision"] == "int8"]
    assert all("input_scale" in n and n["weight_scales"] for n in int8)
    assert (outs[0] / "calibration.json").read_bytes() == (outs[1] / "calibration.json").read_bytes()
    cal = json.loads((outs[0] / "calibration.json").read_text())
    assert cal["summary"]["images_used"] == 6 and cal["key"]["method"] == "kl"
    # a stale cache is refused: same file, other method
    proc = cli("build", model, "--dtype", "int8", "--calib", photos, "--num-calib", "6", "--calib-cache", cache,
               "--calib-method", "percentile", "--out", tmp_path / "stale", check=2)
    assert "stale calibration cache" in proc.stderr and "method" in proc.stderr
    assert not (tmp_path / "stale").exists()
    # vcc bench on the int8 artifact: ORT fp32 and ORT's own int8 QDQ model timed beside it
    proc = cli("bench", outs[0], "--ref", model, "--runs", "3", "--threads", "1", "--calib", photos, "--json",
               check=0)
    bench = json.loads(proc.stdout)
    assert bench["dtype"] == "int8" and bench["threads"] == 1 and bench["input_shape"] == [1, 3, 64, 64]
    for key in ("artifact_ms", "ort_fp32_ms", "ort_int8_ms"):
        assert bench[key] > 0, bench
    assert bench["ratio_vs_ort_int8"] == pytest.approx(bench["artifact_ms"] / bench["ort_int8_ms"], rel=0.01)
    assert bench["ort_int8"]["calibration"] == str(photos)


class _ConvPoolConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1), torch.nn.ReLU())
        self.pool = torch.nn.MaxPool2d(3, 2, 1)
        self.head = torch.nn.Conv2d(16, 4, 3, 1, 1)

    def forward(self, x):
        return self.head(self.pool(self.stem(x)))


def test_maxpool_runs_on_the_integers(tmp_path, monkeypatch):
    """DQ -> MaxPool lowers to a max-pool of the uint8 tensor (the stem conv writes uint8) and gives
    the same bits as pooling the dequantized floats."""
    import tvm
    from tvm import relax

    from vcc.runtime import lower
    from vcc.runtime.codegen import compile_relax, cpu_target

    path = tmp_path / "pool.onnx"
    export_torch(seeded(_ConvPoolConv()), (1, 3, 32, 32), path)
    g = PassManager(default_fp32_pipeline()).run(load_model(path))
    plan = plan_quantization(g, output_fp32=False)  # the head conv int8 too
    pool_in = next(n.inputs[0] for n in g.nodes if n.op == "MaxPool")
    assert pool_in in plan.tensors
    quant = {t: TensorQuant.from_threshold(3.0 if t != g.inputs[0] else 2.5, t != g.inputs[0])
             for t in plan.tensors}
    qg = insert_qdq(g, plan, quant)
    mod = lower.lower_to_relax(qg)
    assert 'R.nn.max_pool2d(' in mod.script() and \
        any("max_pool2d" in line and "uint8" in line for line in mod.script().splitlines())

    def float_pool(cx, n):  # the reference: pool the dequantized floats
        a = n.attrs
        return relax.op.nn.max_pool2d(cx.arg(n.inputs[0]), pool_size=a["kernel_shape"], strides=a["strides"],
                                      padding=a["pads"], dilation=a["dilations"])

    x = tvm.runtime.tensor(np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32))
    target = cpu_target()
    got = relax.VirtualMachine(compile_relax(mod, target), tvm.cpu())["main"](x).numpy()
    monkeypatch.setitem(lower.LOWERINGS, "MaxPool", float_pool)
    ref_mod = lower.lower_to_relax(qg)
    assert not any("max_pool2d" in line and "uint8" in line for line in ref_mod.script().splitlines())
    ref = relax.VirtualMachine(compile_relax(ref_mod, target), tvm.cpu())["main"](x).numpy()
    np.testing.assert_array_equal(got, ref)


class _Fusion(torch.nn.Module):
    """Two branches concatenated (shared scale) and read by a conv: an FFM-style concat."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 1, 1), torch.nn.ReLU())
        self.b = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 1, 2, dilation=2), torch.nn.ReLU())
        self.out = torch.nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.out(torch.cat([self.a(x), self.b(x)], 1))


def test_shared_scale_concat_runs_on_the_integers(tmp_path, monkeypatch):
    """A concat of inputs dequantized with one scale concatenates the uint8 tensors, bit-identical
    to concatenating the floats."""
    import tvm
    from tvm import relax

    from vcc.runtime import lower
    from vcc.runtime.codegen import compile_relax, cpu_target

    path = tmp_path / "cat.onnx"
    export_torch(seeded(_Fusion()), (1, 3, 24, 24), path)
    g = PassManager(default_fp32_pipeline()).run(load_model(path))
    plan = plan_quantization(g, output_fp32=False)  # the head conv int8 too
    thresholds = {t: 1.0 + k for k, t in enumerate(plan.tensors)}
    quant = resolve_group_quant(plan, thresholds, {t: t != g.inputs[0] for t in plan.tensors})
    qg = insert_qdq(g, plan, quant)
    mod = lower.lower_to_relax(qg)
    assert any("R.concat(" in line and "uint8" in line for line in mod.script().splitlines())

    def float_concat(cx, n):
        return relax.op.concat(cx.args(n), axis=n.attrs["axis"])

    x = tvm.runtime.tensor(np.random.default_rng(2).standard_normal((1, 3, 24, 24)).astype(np.float32))
    target = cpu_target()
    got = relax.VirtualMachine(compile_relax(mod, target), tvm.cpu())["main"](x).numpy()
    monkeypatch.setitem(lower.LOWERINGS, "Concat", float_concat)
    ref = relax.VirtualMachine(compile_relax(lower.lower_to_relax(qg), target), tvm.cpu())["main"](x).numpy()
    np.testing.assert_array_equal(got, ref)
