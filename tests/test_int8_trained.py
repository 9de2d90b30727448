"""int8 on trained subjects (tests/trained_subjects.py): the artifact reproduces its own QDQ
simulation, holds the fp32 person IoU within a point on the 50 held-out photos, and agrees with
fp32 at least as well as ONNX Runtime's quantize_static (Entropy and Percentile calibrators) on
the same model, calibration photos and held-out photos.

The numbers come from benchmarks/int8_accuracy.py's run_subject, the script that prints the
side-by-side table; here only the two subjects that train in about a minute each on 2 cores
(the BiSeNet-shaped net and the tiny-input-range PReLU / depthwise net) run, the zoo subjects
are the benchmark's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from trained_subjects import INT8_SUBJECTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module", params=INT8_SUBJECTS)
def result(request, data, tmp_path_factory) -> dict:
    from int8_accuracy import run_subject

    work = tmp_path_factory.mktemp(request.param)
    return run_subject(request.param, data, work, num_calib=50, threads=2)


@pytest.mark.slow
def test_artifact_reproduces_its_qdq_simulation(result):
    a = result["artifact_vs_qdq"]
    assert a["agreement"] >= 0.999, a
    assert a["sqnr_db"] >= 40.0, a


@pytest.mark.slow
def test_int8_holds_fp32_iou_within_a_point(result):
    rows = result["rows"]
    fp32, int8 = rows["fp32"]["person_iou"], rows["vcc int8 (artifact)"]["person_iou"]
    assert int8 >= fp32 - 0.01, rows
    assert rows["vcc int8 (artifact)"]["agreement"] >= 0.99, rows


@pytest.mark.slow
def test_vcc_int8_at_least_as_close_to_fp32_as_ort(result):
    rows = result["rows"]
    vcc = rows["vcc int8 (artifact)"]
    for method in ("entropy", "percentile"):
        ort = rows[f"ORT int8 ({method})"]
        assert vcc["agreement"] >= ort["agreement"], (method, rows)
        assert vcc["sqnr_db"] >= ort["sqnr_db"], (method, rows)
