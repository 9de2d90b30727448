"""HistogramObserver: streaming statistics, range growth, fixed memory, determinism, cache form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcc.calib.observers import NUM_BINS, NUM_SIGNED_BINS, HistogramObserver
from vcc.errors import VccError


def _growing_batches(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((4, 50, 50)) * (k + 1)).astype(np.float32) for k in range(10)]


def _fed(batches: list[np.ndarray], name: str = "t") -> HistogramObserver:
    obs = HistogramObserver(name)
    for b in batches:
        obs.observe(b)
    return obs


def test_growth_matches_one_batch_statistics():
    batches = _growing_batches()
    streamed = _fed(batches)
    whole = _fed([np.concatenate([b.ravel() for b in batches])])
    total = sum(b.size for b in batches)
    for obs in (streamed, whole):
        assert obs.count == total
        assert int(obs.hist_abs.sum()) == total
        assert int(obs.hist_signed.sum()) == total
    assert streamed.min == whole.min == float(min(b.min() for b in batches))
    assert streamed.max == whole.max == float(max(b.max() for b in batches))
    assert streamed.amax == whole.amax
    assert streamed.abs_edges[-1] == streamed.amax
    # Re-binning smears by about a bin per growth: the distributions stay close.
    for a, b in ((streamed.hist_abs, whole.hist_abs), (streamed.hist_signed, whole.hist_signed)):
        cdf_a = np.cumsum(a) / total
        cdf_b = np.cumsum(b) / total
        assert np.abs(cdf_a - cdf_b).max() < 0.002


def test_growth_by_exact_factor_is_lossless():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, 20000).astype(np.float32)
    x[0] = 1.0
    obs = HistogramObserver()
    obs.observe(x)
    abs_before = obs.hist_abs.copy()
    signed_before = obs.hist_signed.copy()
    # Doubling merges |x| bins pairwise; tripling merges signed bins in threes around zero.
    obs.observe(np.array([2.0], dtype=np.float32))
    expected = np.zeros(NUM_BINS, dtype=np.int64)
    expected[: NUM_BINS // 2] = abs_before.reshape(-1, 2).sum(axis=1)
    expected[-1] += 1
    np.testing.assert_array_equal(obs.hist_abs, expected)

    obs = HistogramObserver()
    obs.observe(x)
    obs.observe(np.array([-3.0], dtype=np.float32))
    centre = NUM_SIGNED_BINS // 2
    offsets = np.arange(NUM_SIGNED_BINS) - centre
    target = np.floor((offsets + 1) / 3).astype(np.int64) + centre
    expected = np.bincount(target, weights=signed_before, minlength=NUM_SIGNED_BINS)
    expected = expected.astype(np.int64)
    expected[0] += 1
    np.testing.assert_array_equal(obs.hist_signed, expected)


def test_memory_does_not_grow_with_batches():
    rng = np.random.default_rng(2)
    obs = HistogramObserver()
    obs.observe(rng.standard_normal(1000).astype(np.float32))
    sizes = (
        obs.hist_abs.nbytes,
        obs.hist_signed.nbytes,
        len(json.dumps(obs.to_dict()["hist_abs"])),
    )
    for k in range(60):
        obs.observe((rng.standard_normal(500) * (1 + k / 10)).astype(np.float32))
    assert obs.hist_abs.shape == (NUM_BINS,)
    assert obs.hist_signed.shape == (NUM_SIGNED_BINS,)
    assert (obs.hist_abs.nbytes, obs.hist_signed.nbytes) == sizes[:2]
    assert len(obs.to_dict()["hist_abs"]) == NUM_BINS
    assert len(obs.to_dict()["hist_signed"]) == NUM_SIGNED_BINS


def test_deterministic_and_round_trips_through_json():
    batches = _growing_batches(3)
    a = json.dumps(_fed(batches).to_dict(), sort_keys=True)
    b = json.dumps(_fed([b.copy() for b in batches]).to_dict(), sort_keys=True)
    assert a == b
    restored = HistogramObserver.from_dict(json.loads(a))
    assert json.dumps(restored.to_dict(), sort_keys=True) == a
    # A restored observer keeps streaming exactly like the original.
    extra = (np.arange(100, dtype=np.float32) - 30.0) * 2.0
    orig = _fed(batches)
    orig.observe(extra)
    restored.observe(extra)
    assert restored.to_dict() == orig.to_dict()


def test_zeros_stay_in_the_zero_bins_through_growth():
    obs = HistogramObserver()
    obs.observe(np.zeros(1000, dtype=np.float32))
    assert obs.amax == 0.0 and obs.count == 1000
    relu = np.maximum(np.random.default_rng(4).standard_normal(5000), 0).astype(np.float32)
    obs.observe(relu)
    obs.observe(np.array([50.0], dtype=np.float32))
    zeros = 1000 + int((relu == 0).sum())
    assert obs.hist_abs[0] >= zeros
    assert obs.hist_signed[NUM_SIGNED_BINS // 2] >= zeros
    assert obs.hist_signed[: NUM_SIGNED_BINS // 2].sum() == 0
    assert obs.nonneg


def test_nonneg_flag():
    assert not HistogramObserver().nonneg
    obs = HistogramObserver()
    obs.observe(np.array([0.0, 1.0, 2.0], dtype=np.float32))
    assert obs.nonneg
    obs.observe(np.array([-1e-3], dtype=np.float32))
    assert not obs.nonneg


def test_bad_batches_raise_vcc_error_naming_the_tensor():
    obs = HistogramObserver("conv1_out")
    with pytest.raises(VccError, match="conv1_out.*NaN"):
        obs.observe(np.array([1.0, np.nan], dtype=np.float32))
    with pytest.raises(VccError, match="conv1_out.*NaN or Inf"):
        obs.observe(np.array([np.inf], dtype=np.float32))
    with pytest.raises(VccError, match="conv1_out"):
        obs.observe(np.array(["a", "b"]))
    assert obs.count == 0
    obs.observe(np.zeros((0, 3), dtype=np.float32))
    assert obs.count == 0
    with pytest.raises(VccError, match="odd"):
        HistogramObserver("x", num_signed_bins=8000)


def test_from_dict_rejects_bad_state_naming_the_key():
    obs = _fed(_growing_batches()[:2], name="relu3")
    state = obs.to_dict()
    bad = dict(state, hist_abs=state["hist_abs"][:-1])
    with pytest.raises(VccError, match="relu3.*'hist_abs'"):
        HistogramObserver.from_dict(bad)
    bad = dict(state, count=state["count"] + 1)
    with pytest.raises(VccError, match="relu3.*summing"):
        HistogramObserver.from_dict(bad)
    bad = dict(state)
    del bad["amax"]
    with pytest.raises(VccError, match="'amax'"):
        HistogramObserver.from_dict(bad)
    with pytest.raises(VccError, match="format"):
        HistogramObserver.from_dict(dict(state, version=99))


def test_merge():
    batches = _growing_batches(5)
    left, right = _fed(batches[:5]), _fed(batches[5:])
    whole = _fed(batches)
    merged = HistogramObserver.from_dict(left.to_dict())
    merged.merge(right)
    other_way = HistogramObserver.from_dict(right.to_dict())
    other_way.merge(left)
    assert merged.count == whole.count
    assert (merged.min, merged.max, merged.amax) == (whole.min, whole.max, whole.amax)
    assert int(merged.hist_abs.sum()) == whole.count
    np.testing.assert_array_equal(merged.hist_abs, other_way.hist_abs)
    np.testing.assert_array_equal(merged.hist_signed, other_way.hist_signed)
    cdf_m = np.cumsum(merged.hist_abs) / whole.count
    cdf_w = np.cumsum(whole.hist_abs) / whole.count
    assert np.abs(cdf_m - cdf_w).max() < 0.002
    empty = HistogramObserver()
    empty.merge(left)
    assert empty.to_dict()["hist_abs"] == left.to_dict()["hist_abs"]
    with pytest.raises(VccError, match="bin counts"):
        left.merge(HistogramObserver(num_bins=1024))
