"""`vcc build --max-drop`: the precision search (worst nodes to fp32, doubling + bisection)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from subjects import EfficientShaped, seeded

from vcc.calib.calibrate import CalibrationSettings, calibrate
from vcc.calib.dataset import calibration_source
from vcc.calib.images import load_image
from vcc.driver.precision_search import search_fallback
from vcc.errors import VccError
from vcc.frontends.onnx_export import export_onnx
from vcc.frontends.onnx_import import load_model
from vcc.frontends.torch_export import export_torch
from vcc.ir.preprocess import Preprocess
from vcc.passes import PassManager, default_fp32_pipeline
from vcc.passes.quantize import insert_qdq, plan_quantization
from vcc.reports.metrics import miou_between
from vcc.runtime.reference import OrtSession

SIZE = 64
PRE = Preprocess((SIZE, SIZE), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "RGB", "test")


@pytest.fixture(scope="module")
def subject(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ps") / "eff.onnx"
    export_torch(seeded(EfficientShaped(num_classes=4, width=8)), (1, 3, SIZE, SIZE), path)
    graph = PassManager(default_fp32_pipeline()).run(load_model(path))
    photos = data / "images" / "celebamask_hq_maskgan"
    source = calibration_source(photos, graph.shape(graph.inputs[0]), PRE, 3)

    def plan_for(extra):
        return plan_quantization(graph, tuple(extra), True)

    cal = calibrate(graph, plan_for(()), source, "test", PRE.to_dict(),
                    CalibrationSettings("minmax", 99.99, 3), progress=False)
    voc = sorted((data / "images" / "voc2012_vainf_samples").glob("*_image.png"))
    held = voc[:4]  # photos calibration did not see
    inputs = [load_image(p, PRE) for p in held]
    return path, graph, plan_for, cal.quant, inputs, [str(p) for p in held]


def _drop(graph, plan, quant, inputs):
    ref = OrtSession(export_onnx(graph), optimize=False)
    sim = OrtSession(export_onnx(insert_qdq(graph, plan, quant)), optimize=False)
    refs = np.concatenate([ref.run(x)[0] for x in inputs], axis=2)
    tests = np.concatenate([sim.run(x)[0] for x in inputs], axis=2)
    return 100.0 * (1.0 - miou_between(refs, tests))


def test_zero_budget_moves_a_prefix_of_the_ranking_and_bisects(subject):
    _, graph, plan_for, quant, inputs, names = subject
    r = search_fallback(graph, plan_for, quant, inputs, names, 0.0)
    n = len(r.ranked)
    assert n >= 4 and r.met and r.best.drop <= 0.0
    assert r.moved_nodes == [x["node"] for x in r.ranked[:r.best.moved]]
    assert len(r.steps) <= 2 * math.ceil(math.log2(n)) + 2
    by_k = {s.moved: s for s in r.steps}
    assert not by_k[0].meets  # quantizing everything costs something on this subject
    if r.best.moved - 1 in by_k:  # bisection stopped at the first k that meets the budget
        assert not by_k[r.best.moved - 1].meets
    # the search's figure is the independent simulation's
    assert r.best.drop == pytest.approx(_drop(graph, plan_for(r.moved_nodes), quant, inputs), abs=1e-9)
    assert by_k[0].drop == pytest.approx(_drop(graph, plan_for(()), quant, inputs), abs=1e-9)
    doc = r.to_dict()
    assert doc["fallback_option"] == "--fallback " + ",".join(r.moved_nodes)
    assert json.loads(json.dumps(doc))["result"]["moved"] == r.best.moved


def test_loose_budget_moves_nothing(subject):
    _, graph, plan_for, quant, inputs, names = subject
    r = search_fallback(graph, plan_for, quant, inputs, names, 100.0)
    assert r.met and r.best.moved == 0 and len(r.steps) == 1 and r.moved_nodes == []
    assert r.best.float_mac_share < 0.2


def test_bad_budgets(subject):
    _, graph, plan_for, quant, inputs, names = subject
    with pytest.raises(VccError, match="budget is a number of mIoU points"):
        search_fallback(graph, plan_for, quant, inputs, names, -1.0)
    with pytest.raises(VccError, match="no photos"):
        search_fallback(graph, plan_for, quant, [], [], 0.5)


def test_cli_max_drop_errors(subject, cli, data, tmp_path):
    model = subject[0]
    out = tmp_path / "out"
    photos = data / "images" / "celebamask_hq_maskgan"
    proc = cli("build", model, "--max-drop", "0.5", "--out", out, check=2)
    assert "--max-drop applies to --dtype int8" in proc.stderr
    proc = cli("build", model, "--dtype", "int8", "--calib", photos, "--max-drop", "-1", "--out", out, check=2)
    assert "budget is a number of mIoU points >= 0" in proc.stderr
    proc = cli("build", model, "--dtype", "int8", "--calib", photos, "--num-calib", "50", "--max-drop", "0.5",
               "--out", out, check=2)
    assert "--max-drop needs photos calibration did not use" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_cli_max_drop_build_records_the_search(subject, cli, data, tmp_path):
    model = subject[0]
    out = tmp_path / "int8"
    photos = data / "images" / "celebamask_hq_maskgan"
    proc = cli("build", model, "--dtype", "int8", "--calib", photos, "--num-calib", "3", "--calib-method",
               "minmax", "--max-drop", "0", "--out", out, check=0)
    assert "precision search: budget 0 points met" in proc.stderr + proc.stdout
    m = json.loads((out / "manifest.json").read_text())
    ps = m["precision_search"]
    # the folder's 4 photos: 3 calibrate, the 4th is the held-out photo the search measures on
    assert ps["met"] and ps["result"]["drop"] <= 0 and len(ps["images"]) == 1
    assert m["quantization"]["fallback"] == ps["result"]["nodes"] and ps["result"]["nodes"]
    int8 = {n["name"] for n in m["nodes"] if n["precision"] == "int8"}
    assert not int8 & set(ps["result"]["nodes"])
    assert "drop" in ps["artifact"] and ps["artifact"]["agreement"] > 0.9
    cal = json.loads((out / "calibration.json").read_text())  # calibrated for the plan that was built
    assert set(cal["summary"]["fp32_nodes"]) >= set(ps["result"]["nodes"])
