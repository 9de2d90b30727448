"""calibration.html: the histogram plot, the page from a real calibration, `vcc calibrate`."""

from __future__ import annotations

import json
import re

import pytest
from subjects import BiSeNetShaped, EfficientShaped, seeded

from vcc.calib.calibrate import CalibrationSettings, calibrate
from vcc.calib.dataset import calibration_source
from vcc.errors import VccError
from vcc.frontends.onnx_import import load_model
from vcc.frontends.torch_export import export_torch
from vcc.ir.preprocess import Preprocess
from vcc.passes import PassManager, default_fp32_pipeline
from vcc.passes.quantize import plan_quantization
from vcc.reports.calibration import render_calibration_html, write_calibration_html
from vcc.reports.plots import histogram_svg, line_plot_svg

SIZE = 64


def _lines(svg: str) -> list[tuple[float, str]]:
    return [(float(x), color) for x, color in
            re.findall(r'<line class="threshold" x1="([\d.]+)"[^>]*stroke="(#[0-9a-f]+)"', svg)]


def test_histogram_svg_draws_the_threshold_where_it_is():
    bins = [100, 50, 0, 10] + [0] * 124
    svg = histogram_svg(bins, amax=8.0, threshold=2.0, width=320)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert _lines(svg) == [(80.0, "#d62728")]  # 2 / 8 of 320 px
    assert svg.count("M") == 3, "one bar per non-empty bin"
    assert "T 2" in svg and "|x| max 8" in svg
    # the clipped range beyond the threshold is shaded
    assert '<rect x="80" y="0" width="240"' in svg
    own = histogram_svg(bins, amax=8.0, threshold=4.0, own_threshold=2.0, width=320)
    assert sorted(_lines(own)) == [(80.0, "#ff7f0e"), (160.0, "#d62728")]
    assert "no data" in histogram_svg([0] * 8, amax=0.0, threshold=1e-12)


def test_line_plot_svg_points_and_gaps():
    svg = line_plot_svg({"a": [1.0, 2.0, None, 4.0], "b": [3.0, float("inf"), 1.0, 2.0]},
                        labels=["n0", "n1", "n2", "n3"])
    assert svg.count("<polyline") == 3  # 'a' is broken by its None
    assert svg.count("<circle") == 7
    assert "<title>n1: b inf</title>" in svg and "<title>n3: a 4.00</title>" in svg


@pytest.fixture(scope="module")
def calibration(data, tmp_path_factory):
    model = tmp_path_factory.mktemp("cal") / "bisenet.onnx"
    export_torch(seeded(BiSeNetShaped(num_classes=5, width=8)), (1, 3, SIZE, SIZE), model)
    g = PassManager(default_fp32_pipeline()).run(load_model(model))
    plan = plan_quantization(g)
    pre = Preprocess(size=(SIZE, SIZE))
    src = calibration_source(data / "images" / "celebamask_hq_maskgan", g.shape(g.inputs[0]), pre, 3)
    return calibrate(g, plan, src, "0" * 64, pre.to_dict(), CalibrationSettings("kl"), progress=False)


def test_calibration_html_shows_every_tensor(calibration, tmp_path):
    path = write_calibration_html(tmp_path / "calibration.html", calibration)
    html = path.read_text()
    records = calibration.document["tensors"]
    assert html.count('class="hist"') == len(records) and html.count('<tr id="t') == len(records)
    for rec in records:
        assert f">{rec['name']}" in html
        assert f"{rec['scale']:.5g}" in html  # the scale as a table cell
    assert "3 images" in html and "kl" in html and "1x1 map" in html  # summary: images, method, fp32 nodes
    kl_cells = [r["kl"] for r in records if r["kl"] is not None]
    assert kl_cells and f"{kl_cells[0]:.3g}" in html
    without_xmlns = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://", without_xmlns) and "<script" not in html and "<link" not in html
    # deterministic: the same calibration renders the same page
    assert render_calibration_html(calibration.document, calibration.seconds) == html


def test_calibration_html_from_cache_and_broken_documents(calibration):
    html = render_calibration_html(calibration.document, 0.0, from_cache=True)
    assert "reused from the calibration cache" in html
    doc = json.loads(json.dumps(calibration.document))
    del doc["tensors"][0]["scale"]
    with pytest.raises(VccError, match="lacks 'scale'"):
        render_calibration_html(doc)
    with pytest.raises(VccError, match="not a calibration document"):
        render_calibration_html({"tensors": []})


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cal") / "eff.onnx"
    export_torch(seeded(EfficientShaped(num_classes=2, width=8)), (1, 3, SIZE, SIZE), path)
    return path


@pytest.mark.slow
def test_calibrate_command(small_model, data, tmp_path, cli):
    photos = data / "images" / "voc2012_vainf_samples"
    out = tmp_path / "cal" / "calibration.json"
    proc = cli("calibrate", small_model, "--calib", photos, "--num-calib", "3", "--calib-method", "percentile",
               "-o", out, check=0)
    assert "wrote" in proc.stderr and out.is_file() and out.with_suffix(".html").is_file()
    doc = json.loads(out.read_text())
    assert doc["summary"]["images_used"] == 3 and doc["key"]["method"] == "percentile"
    assert doc["key"]["method_params"] == {"percentile": 99.99}
    # every tensor by the method asked for, except ReLU6 (Clip) outputs: their observed range
    assert all(r["scale"] > 0 for r in doc["tensors"])
    methods = {r["name"]: r["method"] for r in doc["tensors"]}
    assert {m for t, m in methods.items() if "Clip" not in t} == {"percentile"}, methods
    assert {m for t, m in methods.items() if "Clip" in t} == {"minmax"}, methods
    html = out.with_suffix(".html").read_text()
    assert html.count('class="hist"') == len(doc["tensors"])
    again = tmp_path / "again.json"
    cli("calibrate", small_model, "--calib", photos, "--num-calib", "3", "--calib-method", "percentile",
        "-o", again, check=0)
    assert again.read_bytes() == out.read_bytes(), "calibration.json is deterministic"
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("calibrate", small_model, "--calib", empty, "-o", tmp_path / "x.json", check=2)
    assert "no calibration images" in proc.stderr


@pytest.mark.slow
def test_calibrate_output_is_a_cache_the_build_reuses(small_model, data, tmp_path, cli):
    photos = data / "images" / "voc2012_vainf_samples"
    cal = tmp_path / "calibration.json"
    cli("calibrate", small_model, "--calib", photos, "--num-calib", "4", "-o", cal, check=0)
    out = tmp_path / "int8"
    proc = cli("build", small_model, "--dtype", "int8", "--calib", photos, "--num-calib", "4",
               "--calib-cache", cal, "--no-schedules", "--out", out, check=0)
    assert "from cache" in proc.stderr
    assert (out / "calibration.json").read_bytes() == cal.read_bytes()
    html = (out / "calibration.html").read_text()
    assert "reused from the calibration cache" in html
    assert html.count('class="hist"') == len(json.loads(cal.read_text())["tensors"])
