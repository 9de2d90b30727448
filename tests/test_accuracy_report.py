"""The accuracy-diff report: per-layer errors, ground truth, gates, accuracy.json / accuracy.html
(rendered in headless Chromium), `vcc compare --out`, `vcc eval` and `vcc build --eval`."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from subjects import BiSeNetShaped, seeded

from vcc.calib.calibrate import CalibrationSettings, calibrate
from vcc.calib.dataset import calibration_source
from vcc.calib.images import load_image
from vcc.errors import VccError
from vcc.frontends.onnx_export import export_onnx
from vcc.frontends.onnx_import import load_model
from vcc.frontends.torch_export import export_torch
from vcc.ir.preprocess import Preprocess
from vcc.passes import PassManager, default_fp32_pipeline
from vcc.passes.quantize import TensorQuant, plan_quantization
from vcc.reports.accuracy import (
    AccuracySettings,
    accuracy_report,
    argmax_at,
    check_gates,
    eval_set,
    parse_dataset,
)
from vcc.reports.labels import decode_voc_target
from vcc.reports.layers import (
    NO_SIGNAL_RMS,
    ErrorStats,
    LayerAnalysis,
    QuantizedModel,
    layerwise_graph,
)
from vcc.reports.metrics import (
    confusion_matrix,
    cosine_similarity,
    iou_per_class,
    rel_error,
    sqnr_db,
)
from vcc.runtime.artifact import sha256_file
from vcc.runtime.reference import OrtSession

SIZE = 96
VOC = ("images", "voc2012_vainf_samples")
PERSON = ("images", "human_seg_vikram")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("acc") / "bisenet_shaped.onnx"
    export_torch(seeded(BiSeNetShaped(num_classes=21, width=16)), (1, 3, SIZE, SIZE), path)
    return path


@pytest.fixture(scope="module")
def quantized(model, data):
    """The fp32 IR, plan and KL calibration on 4 VOC photos."""
    g = PassManager(default_fp32_pipeline()).run(load_model(model))
    plan = plan_quantization(g)
    pre = Preprocess(size=(SIZE, SIZE))
    src = calibration_source(data.joinpath(*VOC), g.shape(g.inputs[0]), pre, 4)
    cal = calibrate(g, plan, src, sha256_file(model), pre.to_dict(), CalibrationSettings("kl"), progress=False)
    return g, plan, cal, pre


def _lonely_conv_input(g, plan) -> tuple[str, str]:
    """A quantized conv whose quantized input has a scale of its own and is read by that conv
    alone (Q/DQ sit on the inputs of quantized nodes): its scale affects that conv alone."""
    consumers = g.consumers()
    members = plan.group_members()
    for name in plan.nodes[1:]:  # not the stem: its input is the image
        n = g.node(name)
        t = n.inputs[0]
        if (t in plan.tensors and members[plan.groups[t]] == [t]
                and [c.name for c in consumers.get(t, [])] == [name]):
            return name, t
    raise AssertionError("no quantized conv with an input of its own")


class QdqPredictor:
    """An 'artifact' that is the QDQ simulation in ONNX Runtime: the report's code path without
    compiling anything (the real int8 artifacts are checked in the slow tests below)."""

    def __init__(self, model: Path, qm: QuantizedModel, pre: Preprocess, dtype: str = "int8"):
        self.path = None
        self.preprocess = pre
        self._session = OrtSession(export_onnx(qm.qdq), optimize=False)
        g = qm.fp32
        io = lambda n: {"name": n, "shape": list(g.shape(n)), "dtype": "float32"}  # noqa: E731
        self.manifest = {
            "dtype": dtype, "inputs": [io(g.inputs[0])], "outputs": [io(g.outputs[0])],
            "preprocess": pre.to_dict(), "source_model": {"file": model.name, "sha256": sha256_file(model)},
            "nodes": [{"name": n.name, "op": n.op, "block": "arm" if "arm" in n.name else None} for n in g.nodes],
            "quantization": {"fallback": [], "output_fp32": True, "int8_nodes": list(qm.plan.nodes)},
        }

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(x)[0]


# --- per-layer errors ---------------------------------------------------------------------------

def test_error_stats_match_the_metrics_on_concatenated_images():
    rng = np.random.default_rng(0)
    refs = [rng.standard_normal((2, 3, 4)) for _ in range(3)]
    tests = [r + 0.1 * rng.standard_normal(r.shape) for r in refs]
    st = ErrorStats()
    for r, t in zip(refs, tests, strict=True):
        st.add(r, t)
    cat_r = np.concatenate([r.ravel() for r in refs])
    cat_t = np.concatenate([t.ravel() for t in tests])
    assert st.sqnr_db == pytest.approx(sqnr_db(cat_r, cat_t))
    assert st.cosine == pytest.approx(cosine_similarity(cat_r, cat_t))
    assert st.rel_error == pytest.approx(rel_error(cat_r, cat_t))
    same = ErrorStats()
    same.add(refs[0], refs[0])
    assert same.sqnr_db == math.inf and same.cosine == pytest.approx(1.0) and same.rel_error == 0.0
    assert st.reference_rms == pytest.approx(float(np.sqrt(np.mean(cat_r ** 2))))
    dead = ErrorStats()  # a dead layer (weights ~1e-41) quantized to zero: 0 dB, but no signal
    dead.add(np.full(8, 3e-39), np.zeros(8))
    assert dead.sqnr_db == 0.0 and dead.reference_rms < NO_SIGNAL_RMS < st.reference_rms


def test_layerwise_graph_holds_one_quantized_copy_per_node(quantized):
    g, plan, cal, _ = quantized
    qm = QuantizedModel.make(g, plan, cal.quant)
    aug, taps = layerwise_graph(qm)
    assert [t.node for t in taps] == plan.nodes
    copies = [n for n in aug.nodes if "/layerwise/" in n.name and n.op in ("Conv", "ConvTranspose", "MatMul")]
    assert len(copies) == len(plan.nodes)
    assert len(aug.nodes) > len(g.nodes) and len(g.nodes) == len(qm.fp32.nodes), "the fp32 IR is not modified"
    for tap in taps:  # a quantized output is compared after its QuantizeLinear -> DequantizeLinear
        assert (tap.output_dtype in ("uint8", "int8")) == (tap.tensor in plan.tensors)


def test_layer_figures_on_real_photos(quantized, data):
    g, plan, cal, pre = quantized
    qm = QuantizedModel.make(g, plan, cal.quant)
    analysis = LayerAnalysis(qm)
    one_by_one = LayerAnalysis(qm, max_bytes=1)  # every node's tensors fetched in a run of their own
    assert len(analysis.chunks) == 1 and len(one_by_one.chunks) == len(plan.nodes)
    photos = sorted(data.joinpath(*VOC).glob("*_image.png"))[:3]
    for p in photos:
        x = load_image(p, pre)
        np.testing.assert_array_equal(analysis.add(x), one_by_one.add(x))
    records = analysis.records()
    assert one_by_one.records() == records
    assert len(records) == len(plan.nodes) and analysis.images == 3
    by_node = {r["node"]: r for r in records}
    first = by_node[plan.nodes[0]]
    # the first node reads the (quantized) graph input: graphwise and layerwise are the same thing
    assert first["graphwise_sqnr_db"] == pytest.approx(first["layerwise_sqnr_db"], abs=1e-6)
    assert all(10 < r["layerwise_sqnr_db"] < 80 for r in records), records
    assert all(r["cosine"] > 0.9 for r in records)
    # the error accumulates: the last quantized node is further from fp32 than it is alone
    last = by_node[plan.nodes[-1]]
    assert last["graphwise_sqnr_db"] < last["layerwise_sqnr_db"]
    lw = [r["layerwise_sqnr_db"] for r in records]
    assert lw == sorted(lw), "worst (lowest layerwise SQNR) first"


def test_a_bad_scale_ranks_its_node_worst(quantized, data):
    g, plan, cal, pre = quantized
    node, tensor = _lonely_conv_input(g, plan)
    quant = dict(cal.quant)
    q = quant[tensor]
    quant[tensor] = TensorQuant(q.scale / 50, q.dtype, q.threshold / 50)  # clips nearly everything
    analysis = LayerAnalysis(QuantizedModel.make(g, plan, quant))
    for p in sorted(data.joinpath(*VOC).glob("*_image.png"))[:2]:
        analysis.add(load_image(p, pre))
    records = analysis.records()
    assert records[0]["node"] == node, [(r["node"], r["layerwise_sqnr_db"]) for r in records[:3]]
    assert records[0]["layerwise_sqnr_db"] < records[1]["layerwise_sqnr_db"] - 10


# --- evaluation sets ---------------------------------------------------------------------------

def test_eval_sets_pair_photos_with_labels(data, tmp_path):
    voc = data.joinpath(*VOC)
    ev = eval_set(dataset=f"voc:{voc}")
    assert len(ev.images) == 14 and ev.labelled and len(ev.class_names) == 21
    assert all(p.name.endswith("_image.png") for p in ev.images)
    assert ev.labels[ev.images[0]].path.name == ev.images[0].name.replace("_image", "_target")
    same = eval_set(images=voc, dataset="voc", labels=voc, limit=3)
    assert same.images == ev.images[:3]
    used = ev.images[:5]
    rest = eval_set(dataset=f"voc:{voc}", exclude=used)
    assert rest.excluded == 5 and not set(rest.images) & set(used)
    person = data.joinpath(*PERSON)
    binary = eval_set(images=person / "images", dataset="binary", labels=person, limit=4)
    assert len(binary.images) == 4 and binary.labels[binary.images[0]].path.parent.name == "masks"
    # photos in one folder, labels in another: paired by name
    photos, labels = tmp_path / "photos", tmp_path / "labels"
    photos.mkdir()
    labels.mkdir()
    for p in ev.images[:2]:
        shutil.copy(p, photos / p.name)
        shutil.copy(ev.labels[p].path, labels / ev.labels[p].path.name)
    apart = eval_set(images=photos, dataset="voc", labels=labels)
    assert [p.name for p in apart.images] == [p.name for p in ev.images[:2]]
    assert apart.labels[apart.images[1]].path.parent == labels
    assert parse_dataset("cityscapes") == ("cityscapes", None)
    with pytest.raises(VccError, match="unknown dataset 'coco'"):
        eval_set(dataset="coco:/x")
    with pytest.raises(VccError, match="--labels needs --dataset"):
        eval_set(images=voc, labels=voc)
    with pytest.raises(VccError, match="celebamask labels only"):
        eval_set(dataset=f"voc:{voc}", remap="face-parsing")
    with pytest.raises(VccError, match=r"no evaluation images left \(2 were used for calibration\)"):
        eval_set(images=photos, exclude=list(photos.iterdir()) + ev.images[:3])


def test_argmax_at_resizes_logits_not_labels():
    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[0, 1, :, 1] = 1.0  # right column is class 1, left column class 0
    logits[0, 0] = 1.0 - logits[0, 1]
    up = argmax_at(logits, (4, 4))
    assert up.shape == (4, 4)
    # half-pixel centres: output columns 0..3 sit at input x = 0, 0.25, 0.75, 1 (clamped)
    assert up.tolist() == [[0, 0, 1, 1]] * 4
    assert argmax_at(logits, (2, 2)).tolist() == [[0, 1], [0, 1]]


# --- the report without a compiled artifact ----------------------------------------------------

@pytest.fixture(scope="module")
def qdq_report(model, quantized, data):
    g, plan, cal, pre = quantized
    qm = QuantizedModel.make(g, plan, cal.quant)
    pred = QdqPredictor(model, qm, pre)
    ev = eval_set(dataset=f"voc:{data.joinpath(*VOC)}", limit=6)
    report = accuracy_report(pred, ev, model, cal.document, AccuracySettings(layer_images=3, progress=False))
    return report, ev, pred


def test_report_figures_against_an_independent_computation(qdq_report, model):
    report, ev, pred = qdq_report
    doc = report.document
    assert doc["images"] == 6 and doc["labels"]["dataset"] == "voc"
    ort = OrtSession(model)
    conf_ref = np.zeros((21, 21), np.int64)
    conf_art = np.zeros((21, 21), np.int64)
    agree = pixels = 0
    for p in ev.images:
        x = load_image(p, pred.preprocess)
        ref, art = ort.run(x)[0], pred(x)
        agree += int((ref.argmax(1) == art.argmax(1)).sum())
        pixels += ref[:, 0].size
        label = decode_voc_target(ev.labels[p].path)
        h, w = label.shape
        for logits, conf in ((ref, conf_ref), (art, conf_art)):
            up = np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BILINEAR)) for c in logits[0]])
            conf += confusion_matrix(up.argmax(0), label, 21)
    assert doc["agreement"] == pytest.approx(agree / pixels)
    iou_ref, iou_art = iou_per_class(conf_ref), iou_per_class(conf_art)
    assert doc["miou_ref"] == pytest.approx(np.nanmean(iou_ref))
    assert doc["miou_artifact"] == pytest.approx(np.nanmean(iou_art))
    assert doc["miou_drop_points"] == pytest.approx(100 * (doc["miou_ref"] - doc["miou_artifact"]))
    for row in doc["per_class"]:
        k = row["class"]
        expect = None if math.isnan(iou_art[k]) else pytest.approx(iou_art[k])
        assert row["iou_artifact"] == expect
        assert row["label_pixels"] == int(conf_art[k].sum())
    assert [r["name"] for r in doc["per_class"]][:3] == ["background", "aeroplane", "bicycle"]
    # the QDQ 'artifact' is its own simulation: the per-layer check sees them identical
    sim = doc["layers_method"]["simulation_vs_artifact"]
    assert sim["agreement"] == 1.0 and doc["layers_method"]["images"] == 3
    assert doc["layers"] and doc["layers"][0]["layerwise_sqnr_db"] <= doc["layers"][-1]["layerwise_sqnr_db"]
    assert {r["block"] for r in doc["layers"]} <= {None, "arm"}
    assert "arm" in {r["block"] for r in doc["layers"]}, "the manifest's block names are carried"
    assert len(report.pictures) == 4 and len(doc["worst_images"]) == 4
    worst_agreement = sorted(r["agreement"] for r in doc["per_image"])[:4]
    by_name = {r["name"]: r for r in doc["per_image"]}
    assert [by_name[n]["agreement"] for n in doc["worst_images"]] == worst_agreement


def test_report_json_is_strict_and_has_the_keys(qdq_report, tmp_path):
    report, _, _ = qdq_report
    json_path, html_path = report.write(tmp_path / "out")
    doc = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    for key in ("agreement", "miou_vs_fp32", "sqnr_db", "miou_ref", "miou_artifact", "per_class", "layers",
                "verdict", "per_image", "layers_method"):
        assert key in doc, key
    assert 0 <= doc["miou_ref"] <= 1 and 0 <= doc["miou_artifact"] <= 1
    layer = doc["layers"][0]
    for key in ("node", "op", "block", "graphwise_sqnr_db", "layerwise_sqnr_db", "cosine"):
        assert key in layer, key
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 4 * 5  # input, label, fp32, artifact, difference
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="lineplot"' in html
    _assert_self_contained(html)


def _assert_self_contained(html: str) -> None:
    without_xmlns = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://", without_xmlns), "the report links to the network"
    assert "<script" not in html and "<link" not in html


def test_gates(qdq_report):
    report, _, _ = qdq_report
    doc = report.document
    assert check_gates(report, min_agreement=0.0, max_miou_drop=100.0) == []
    assert [g["passed"] for g in doc["gates"]] == [True, True]
    failures = check_gates(report, min_agreement=1.01)
    assert len(failures) == 1 and failures[0].startswith("argmax agreement") and "< --min-agreement 101" in failures[0]
    assert doc["severity"] == "bad" and "FAILED argmax agreement" in doc["verdict"]
    drop = doc["miou_drop_points"]
    failures = check_gates(report, max_miou_drop=drop - 0.01)
    assert len(failures) == 1 and f"mIoU drop against the labels {drop:.3f} points" in failures[0]
    check_gates(report)  # no gates: back to the report's own verdict
    assert doc["gates"] == [] and "FAILED" not in doc["verdict"]


def test_labels_must_match_the_model_classes(model, quantized, data):
    g, plan, cal, pre = quantized
    pred = QdqPredictor(model, QuantizedModel.make(g, plan, cal.quant), pre)
    ev = eval_set(images=data.joinpath(*PERSON, "images"), dataset="binary", labels=data.joinpath(*PERSON), limit=2)
    with pytest.raises(VccError, match="outputs 21 classes, the binary labels have 2"):
        accuracy_report(pred, ev, model, cal.document, AccuracySettings(progress=False))


def test_layers_skipped_for_another_reference_model(qdq_report, tmp_path):
    _, ev, pred = qdq_report
    other = tmp_path / "other.onnx"
    export_torch(seeded(BiSeNetShaped(num_classes=21, width=16), seed=1), (1, 3, SIZE, SIZE), other)
    one = dataclasses.replace(ev, images=ev.images[:1])
    report = accuracy_report(pred, one, other, None, AccuracySettings(progress=False))
    assert report.document["layers"] == []
    assert "not the model the artifact was built from" in report.document["layers_method"]["skipped"]
    assert report.document["reference"]["is_artifact_source"] is False


# --- headless Chromium ------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium not found: install Debian's chromium package (apt-get install chromium), "
                "as the README's test command does")


def render_in_chromium(html_path: Path, tmp: Path) -> tuple[Path, str]:
    """Screenshot (1280x2400) and the DOM after load of a page with a probe that records whether
    every image decoded."""
    probe = tmp / "probe.html"
    text = html_path.read_text()
    script = ("<script>document.body.setAttribute('data-images-ok', String(Array.from(document.images)"
              ".every(i => i.complete && i.naturalWidth > 0)) + ':' + document.images.length);</script>")
    probe.write_text(text.replace("</body>", script + "</body>"))
    png = tmp / "page.png"
    base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}"]
    subprocess.run([*base, f"--screenshot={png}", "--window-size=1280,2400", html_path.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*base, "--dump-dom", probe.resolve().as_uri()], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    return png, dom


def assert_page_rendered(png: Path, dom: str, images: int) -> None:
    arr = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    assert arr.shape == (2400, 1280, 3)
    non_white = np.any(arr < 235, axis=2).mean()
    assert non_white > 0.03 and arr.std() > 20, f"the screenshot looks blank ({non_white:.1%} non-white)"
    assert f'data-images-ok="true:{images}"' in dom, re.findall(r'data-images-ok="[^"]*"', dom)
    for table in ("setup", "outputs", "miou", "per-class", "worst-layers", "per-image"):
        assert f'<table id="{table}"' in dom or f'<table class="kv" id="{table}"' in dom, table
    assert "<svg" in dom and 'class="lineplot"' in dom


def test_accuracy_html_renders_in_chromium(qdq_report, tmp_path):
    report, _, _ = qdq_report
    _, html = report.write(tmp_path / "out")
    png, dom = render_in_chromium(html, tmp_path)
    assert_page_rendered(png, dom, images=20)


# --- end to end on compiled int8 artifacts -----------------------------------------------------

@pytest.fixture(scope="module")
def int8_build(model, data, tmp_path_factory, cli):
    """An int8 build with --eval on the VOC photos (6 of them calibrate, the other 8 evaluate)."""
    tmp = tmp_path_factory.mktemp("int8")
    voc = data.joinpath(*VOC)
    cache = tmp / "calib-cache.json"
    out = tmp / "int8"
    proc = cli("build", model, "--dtype", "int8", "--calib", voc, "--num-calib", "6", "--calib-cache", cache,
               "--no-schedules", "--eval", f"voc:{voc}", "--out", out, check=0)
    return out, cache, proc.stderr


@pytest.mark.slow
def test_build_eval_writes_the_report_into_the_artifact(int8_build, data):
    out, cache, stderr = int8_build
    assert "[evaluate] done" in stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"accuracy.json", "accuracy.html", "calibration.json", "calibration.html"} <= set(manifest["files"])
    # the blocks found, each node's block, the block rules applied, each calibrated tensor's block
    kinds = [b["kind"] for b in manifest["blocks"]]
    assert kinds.count("arm") == 2 and kinds.count("ffm") == 1
    arm = next(b for b in manifest["blocks"] if b["kind"] == "arm")
    assert all(n["block"] == arm["name"] for n in manifest["nodes"] if n["name"] in arm["nodes"])
    assert manifest["quantization"]["block_rules"] is True
    ruled = [why for why in manifest["quantization"]["fp32_nodes"].values() if why.startswith("block rule: arm:")]
    assert len(ruled) == 2
    assert manifest["quantization"]["output_fp32"] is True
    assert sum(why.startswith("writes the model output") for why in manifest["quantization"]["fp32_nodes"].values()) == 1
    tensors = json.loads((out / "calibration.json").read_text())["tensors"]
    named = {t["block"] for t in tensors} - {None}
    assert named and named <= {b["name"] for b in manifest["blocks"]}
    doc = json.loads((out / "accuracy.json").read_text())
    assert doc["images"] == 8 and doc["excluded_images"] == 6
    calibrated = {p.name for p in calibration_source(data.joinpath(*VOC), (1, 3, SIZE, SIZE),
                                                     Preprocess(size=(SIZE, SIZE)), 6).files}
    assert len(calibrated) == 6 and not calibrated & {r["name"] for r in doc["per_image"]}
    assert doc["layers"] and doc["layers_method"]["source"] == "qdq-simulation"
    # the rebuilt QDQ simulation is the artifact up to rounding steps
    sim = doc["layers_method"]["simulation_vs_artifact"]
    assert sim["agreement"] > 0.99 and sim["sqnr_db"] > 30, sim
    assert 0.8 < doc["agreement"] <= 1.0 and "miou_ref" in doc
    _assert_self_contained((out / "accuracy.html").read_text())
    html = (out / "calibration.html").read_text()
    cal = json.loads((out / "calibration.json").read_text())
    assert html.count('class="hist"') == len(cal["tensors"])
    _assert_self_contained(html)


@pytest.mark.slow
def test_compare_with_labels_gates_and_chromium(int8_build, model, data, tmp_path, cli):
    out, _, _ = int8_build
    voc = data.joinpath(*VOC)
    report = tmp_path / "report"
    proc = cli("compare", out, "--ref", model, "--labels", voc, "--dataset", "voc", "--out", report,
               "--min-agreement", "0.5", "--max-miou-drop", "100", check=0)
    assert "worst layers" in proc.stdout and "voc labels, 14 images" in proc.stdout
    doc = json.loads((report / "accuracy.json").read_text())
    assert doc["images"] == 14 and all(g["passed"] for g in doc["gates"])
    png, dom = render_in_chromium(report / "accuracy.html", tmp_path)
    assert_page_rendered(png, dom, images=4 * 5)
    proc = cli("compare", out, "--ref", model, "--images", voc, "--limit", "3", "--min-agreement", "1.0",
               "--no-layers", check=1)
    assert "FAILED: argmax agreement" in proc.stderr and "< --min-agreement 100.000%" in proc.stderr
    proc = cli("eval", out, "--dataset", f"voc:{voc}", "--limit", "4", "--json", check=0)
    ev = json.loads(proc.stdout)
    assert ev["images"] == 4 and "miou_artifact" in ev and "agreement" not in ev and ev["layers"] == []
    proc = cli("compare", out, "--ref", model, "--dataset", "voc:/no/such/dir", check=2)
    assert "/no/such/dir" in proc.stderr


@pytest.mark.slow
def test_a_tampered_scale_in_the_calibration_cache_is_ranked_worst(int8_build, model, data, tmp_path, cli):
    """Build once with --calib-cache, put one tensor's scale far off in the cache, rebuild from it:
    the report ranks the node that tensor belongs to worst."""
    _, cache, _ = int8_build
    g = PassManager(default_fp32_pipeline()).run(load_model(model))
    node, tensor = _lonely_conv_input(g, plan_quantization(g))
    doc = json.loads(cache.read_text())
    rec = next(r for r in doc["tensors"] if r["name"] == tensor)
    rec["scale"] /= 50
    rec["threshold"] /= 50
    tampered = tmp_path / "tampered-cache.json"
    tampered.write_text(json.dumps(doc))
    out = tmp_path / "tampered"
    voc = data.joinpath(*VOC)
    proc = cli("build", model, "--dtype", "int8", "--calib", voc, "--num-calib", "6", "--calib-cache", tampered,
               "--no-schedules", "--out", out, check=0)
    assert "from cache" in proc.stderr
    report = tmp_path / "report"
    cli("compare", out, "--ref", model, "--images", voc, "--limit", "4", "--out", report, check=0)
    layers = json.loads((report / "accuracy.json").read_text())["layers"]
    assert layers[0]["node"] == node, [(r["node"], r["layerwise_sqnr_db"]) for r in layers[:3]]
    assert layers[0]["layerwise_sqnr_db"] < layers[1]["layerwise_sqnr_db"] - 10


@pytest.mark.slow
def test_fp32_artifact_report_end_to_end(model, data, tmp_path, cli):
    """An fp32 build with --eval: the same report, no per-layer part, the artifact ~ ORT."""
    voc = data.joinpath(*VOC)
    out = tmp_path / "fp32"
    cli("build", model, "--dtype", "fp32", "--no-schedules", "--eval", f"voc:{voc}", "--out", out, check=0)
    doc = json.loads((out / "accuracy.json").read_text())
    assert doc["images"] == 14 and doc["excluded_images"] == 0, "fp32 builds calibrate nothing"
    assert doc["agreement"] > 0.999 and doc["rel_error"] < 1e-4 and doc["sqnr_db"] > 80, doc["verdict"]
    assert abs(doc["miou_drop_points"]) < 0.1 and doc["layers"] == []
    assert "no quantized nodes" in doc["layers_method"]["skipped"]
    assert "No per-layer figures" in (out / "accuracy.html").read_text()
