"""Segmentation metrics against hand-computed confusion matrices, and output comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcc.errors import VccError
from vcc.reports.metrics import (
    OutputComparison,
    argmax_agreement,
    confusion_matrix,
    cosine_similarity,
    iou_per_class,
    max_abs_diff,
    mean_iou,
    miou_between,
    pixel_accuracy,
    rel_error,
    sqnr_db,
    ties_within_error,
)

# 4 classes; class 3 appears nowhere; the last pixel is ignored (its prediction 2 must not count)
TARGET = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 0, 2]])
HAND_CONF = np.array([
    [1, 1, 0, 0],
    [0, 2, 0, 0],
    [1, 0, 0, 0],
    [0, 0, 0, 0],
])


def test_confusion_matrix_by_hand():
    conf = confusion_matrix(PRED, TARGET, 4)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, HAND_CONF)


def test_iou_and_miou_by_hand():
    iou = iou_per_class(HAND_CONF)
    # class 0: tp 1, row 2, col 2 -> 1/3; class 1: tp 2, row 2, col 3 -> 2/3; class 2: 0/1
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 0.0])
    assert math.isnan(iou[3])
    assert mean_iou(HAND_CONF) == pytest.approx(1 / 3)
    assert pixel_accuracy(HAND_CONF) == pytest.approx(3 / 5)


def test_class_only_in_prediction_counts_as_zero():
    conf = confusion_matrix(np.array([3, 1]), np.array([0, 1]), 4)
    iou = iou_per_class(conf)
    assert iou[0] == 0.0 and iou[3] == 0.0 and iou[1] == 1.0 and math.isnan(iou[2])
    assert mean_iou(conf) == pytest.approx(1 / 3)


def test_confusion_accumulates_across_images():
    conf = np.zeros((4, 4), np.int64)
    conf += confusion_matrix(PRED[:1], TARGET[:1], 4)
    conf += confusion_matrix(PRED[1:], TARGET[1:], 4)
    np.testing.assert_array_equal(conf, HAND_CONF)


def test_ignore_none_and_empty():
    conf = confusion_matrix(np.array([1]), np.array([1]), 2, ignore_index=None)
    np.testing.assert_array_equal(conf, [[0, 0], [0, 1]])
    empty = np.zeros((3, 3), np.int64)
    assert math.isnan(mean_iou(empty)) and math.isnan(pixel_accuracy(empty))


@pytest.mark.parametrize("pred,target,match", [
    (np.array([0, 1]), np.array([0, 1, 1]), "shape"),
    (np.array([0, 5]), np.array([0, 1]), "prediction holds ids \\[5\\]"),
    (np.array([0, 1]), np.array([0, 7]), "target holds ids \\[7\\]"),
])
def test_confusion_bad_input(pred, target, match):
    with pytest.raises(VccError, match=match):
        confusion_matrix(pred, target, 4)


def test_tensor_comparison_by_hand():
    ref = np.array([1.0, -2.0, 3.0, 0.0])
    test = np.array([1.0, -2.0, 3.5, 0.5])
    assert max_abs_diff(ref, test) == pytest.approx(0.5)
    assert rel_error(ref, test) == pytest.approx(0.5 / 3)
    assert sqnr_db(ref, test) == pytest.approx(10 * math.log10(14 / 0.5))
    assert cosine_similarity(ref, test) == pytest.approx(15.5 / math.sqrt(14 * 17.5))
    assert sqnr_db(ref, ref) == math.inf
    assert max_abs_diff(ref, ref) == 0.0 and rel_error(ref, ref) == 0.0
    assert cosine_similarity(ref, 2 * ref) == pytest.approx(1.0)
    assert cosine_similarity(ref, -ref) == pytest.approx(-1.0)
    assert cosine_similarity([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    with pytest.raises(VccError, match="shape"):
        sqnr_db(ref, test[:3])


def _logits(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(1, C, H, W) logits whose argmax is `labels` (H, W)."""
    onehot = np.eye(num_classes, dtype=np.float32)[labels]  # H, W, C
    return onehot.transpose(2, 0, 1)[None] * 4.0 - 1.0


def test_argmax_agreement_and_miou_between():
    ref_lab = np.array([[0, 0], [1, 2]])
    test_lab = np.array([[0, 1], [1, 2]])
    ref, test = _logits(ref_lab, 3), _logits(test_lab, 3)
    assert argmax_agreement(ref, test) == pytest.approx(3 / 4)
    # scored as label = ref: class 0 IoU 1/2, class 1 1/2, class 2 1
    assert miou_between(ref, test) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert miou_between(ref, ref) == 1.0 and argmax_agreement(ref, ref) == 1.0
    # channels-last via axis
    assert argmax_agreement(ref.transpose(0, 2, 3, 1), test.transpose(0, 2, 3, 1), axis=-1) == 0.75


def test_output_comparison_overall_matches_concatenation():
    rng = np.random.default_rng(0)
    refs = [rng.normal(size=(1, 3, 4, 5)), rng.normal(size=(1, 3, 2, 5)) * 3]
    tests = [r + rng.normal(scale=0.3, size=r.shape) for r in refs]
    cmp = OutputComparison()
    for i, (r, t) in enumerate(zip(refs, tests, strict=True)):
        fig = cmp.add(r, t, name=f"img{i}")
        assert fig["sqnr_db"] == pytest.approx(sqnr_db(r, t))
        assert fig["miou_vs_fp32"] == pytest.approx(miou_between(r, t))
    s = cmp.summary()
    ref_all, test_all = np.concatenate(refs, axis=2), np.concatenate(tests, axis=2)
    assert s["images"] == 2 and [f["name"] for f in s["per_image"]] == ["img0", "img1"]
    assert s["max_abs_diff"] == pytest.approx(max_abs_diff(ref_all, test_all))
    assert s["rel_error"] == pytest.approx(rel_error(ref_all, test_all))
    assert s["sqnr_db"] == pytest.approx(sqnr_db(ref_all, test_all))
    assert s["agreement"] == pytest.approx(argmax_agreement(ref_all, test_all))  # pixel-weighted
    assert s["miou_vs_fp32"] == pytest.approx(miou_between(ref_all, test_all))
    assert s["cosine"] == pytest.approx(np.mean([cosine_similarity(r, t) for r, t in zip(refs, tests, strict=True)]))
    assert 0 < s["agreement"] < 1


def test_output_comparison_identical_and_errors():
    ref = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    cmp = OutputComparison()
    with pytest.raises(VccError, match="no images"):
        cmp.summary()
    cmp.add(ref, ref.copy())
    s = cmp.summary()
    assert s["sqnr_db"] == math.inf and s["agreement"] == 1.0 and s["miou_vs_fp32"] == 1.0
    assert s["max_abs_diff"] == 0.0 and s["cosine"] == pytest.approx(1.0)
    with pytest.raises(VccError, match="3 classes, earlier images had 2"):
        cmp.add(np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2)), name="x")
    with pytest.raises(VccError, match="shape"):
        cmp.add(ref, ref[:, :, :2])


def test_output_comparison_keeps_nan_visible():
    ref = np.ones((1, 2, 2, 2))
    bad = ref.copy()
    bad[0, 0, 0, 0] = np.nan
    cmp = OutputComparison()
    cmp.add(ref, bad, name="broken")
    cmp.add(ref, ref, name="fine")
    assert math.isnan(cmp.summary()["max_abs_diff"])


def test_ties_within_error_by_hand():
    # 2 classes, 4 pixels: reference margins 1.0, 0.01, 0.5, 0.0 (class 0 wins or ties)
    ref = np.array([[[[1.0, 0.01, 0.5, 0.0]], [[0.0, 0.0, 0.0, 0.0]]]])  # (1, 2, 1, 4)
    test = ref.copy()
    test[0, 1, 0, 1] = 0.02  # flips pixel 1 with an error of 0.02 (margin 0.01: a tie)
    test[0, 1, 0, 2] = 0.6  # flips pixel 2 with an error of 0.6 (margin 0.5 <= 1.2: a tie too)
    a, b = ref.argmax(1), test.argmax(1)
    assert ties_within_error(ref, a, b, 0.02) == 1  # only pixel 1's margin is <= 0.04
    assert ties_within_error(ref, a, b, 0.6) == 2
    assert ties_within_error(ref, a, a, 0.6) == 0
    cmp = OutputComparison()
    fig = cmp.add(ref, test)
    assert fig["disagreements"] == 2 and fig["ties_within_error"] == 2  # max|diff| is 0.6
    s = cmp.summary()
    assert s["disagreements"] == 2 and s["ties_within_error"] == 2
