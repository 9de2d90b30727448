"""Threshold search on known distributions, against plain-loop references, and the factory."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from vcc.calib.observers import HistogramObserver
from vcc.calib.thresholds import (
    METHODS,
    TINY_THRESHOLD,
    ThresholdResult,
    compute_threshold,
    kl_mxnet_threshold,
    kl_threshold,
    percentile_threshold,
)
from vcc.errors import VccError

ALL = ("kl", "kl-mxnet", "percentile", "minmax", "mse")


def _observer(x: np.ndarray, batches: int = 10, name: str = "t") -> HistogramObserver:
    obs = HistogramObserver(name)
    for b in np.array_split(x.astype(np.float32), batches):
        obs.observe(b)
    return obs


@pytest.fixture(scope="module")
def gauss() -> tuple[np.ndarray, HistogramObserver]:
    x = np.random.default_rng(0).standard_normal(1_000_000).astype(np.float32)
    return x, _observer(x)


@pytest.fixture(scope="module")
def gauss_results(gauss) -> dict[str, ThresholdResult]:
    return {m: compute_threshold(m, gauss[1], unsigned=False) for m in ALL}


def test_gaussian_thresholds_in_plausible_bands(gauss, gauss_results):
    x, obs = gauss
    amax = float(np.abs(x).max())
    r = gauss_results
    # N(0,1), 1e6 samples, max |x| ~ 4.7: KL clips a few tail samples; percentile 99.99 of |x|
    # is 3.89 sigma; the MSE optimum for 127 levels is near 3.9 sigma.
    for m in ("kl", "kl-mxnet"):
        assert 2.5 <= r[m].threshold < amax, m
        assert r[m].kl is not None and r[m].kl > 0.0
        assert 0.0 < r[m].clipped_fraction < 1e-3
    assert 3.5 <= r["mse"].threshold <= 4.3
    assert 3.7 <= r["percentile"].threshold <= 4.1
    assert r["minmax"].threshold == amax
    assert r["minmax"].clipped_fraction == 0.0
    assert r["kl"].extra["levels"] == 128
    assert r["kl"].extra["num_candidates"] == 2048 - 128


def test_percentile_matches_numpy_within_one_bin(gauss):
    x, obs = gauss
    width = obs.amax / obs.num_bins
    ax = np.abs(x)
    for q in (90.0, 99.0, 99.9, 99.99):
        got = compute_threshold("percentile", obs, False, percentile=q).threshold
        assert abs(got - float(np.percentile(ax, q))) <= width, q
    with pytest.raises(VccError, match="percentile"):
        percentile_threshold(obs.hist_abs, obs.abs_edges, percentile=0.0)


def test_uniform_keeps_nearly_the_whole_range():
    x = np.random.default_rng(1).uniform(-1.0, 1.0, 400_000).astype(np.float32)
    obs = _observer(x)
    amax = obs.amax
    width = amax / obs.num_bins
    kl = compute_threshold("kl", obs, False).threshold
    mse = compute_threshold("mse", obs, False).threshold
    assert kl >= 0.99 * amax
    # Closed form for U[0,1] with 127 steps: t = 1 - t/254, so t = 254/255.
    assert abs(mse - 254.0 / 255.0 * amax) <= 2 * width
    assert compute_threshold("kl-mxnet", obs, False).threshold >= 0.98 * amax


def test_outliers_are_clipped_except_by_minmax():
    rng = np.random.default_rng(2)
    body = rng.laplace(size=1_000_000)
    x = np.concatenate([body, [200.0, -300.0, 250.0]]).astype(np.float32)
    obs = _observer(x)
    body_max = float(np.abs(body).max())
    r = {m: compute_threshold(m, obs, False) for m in ALL}
    assert r["minmax"].threshold == 300.0
    for m in ("kl", "kl-mxnet", "percentile", "mse"):
        assert r[m].threshold < 200.0, m
        assert r[m].clipped_fraction >= 3 / x.size * 0.99, m
    # KL and percentile land near the Laplace body, well inside the outliers.
    for m in ("kl", "kl-mxnet", "percentile"):
        assert r[m].threshold < 2 * body_max, m


def test_unsigned_relu_uses_256_levels():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal(500_000), 0.0).astype(np.float32)
    obs = _observer(x)
    assert obs.nonneg
    kl_u = compute_threshold("kl", obs, unsigned=True)
    assert kl_u.extra["levels"] == 256
    assert kl_u.extra["num_candidates"] == 2048 - 256
    assert kl_u.extra["bin"] >= 256
    # The spike of exact zeros (half the data) must not drag the threshold down.
    assert 2.5 <= kl_u.threshold <= obs.max
    assert compute_threshold("kl", obs, unsigned=False).extra["levels"] == 128
    assert compute_threshold("mse", obs, unsigned=True).extra["levels"] == 255
    assert compute_threshold("mse", obs, unsigned=False).extra["levels"] == 127
    assert compute_threshold("minmax", obs, unsigned=True).threshold == obs.max


def test_all_zero_tensor_gets_tiny_positive_threshold():
    obs = _observer(np.zeros((8, 16, 16), dtype=np.float32), batches=2)
    for m in ALL:
        for unsigned in (False, True):
            t = compute_threshold(m, obs, unsigned).threshold
            assert t == TINY_THRESHOLD > 0.0, m
            scale = np.float32(t / (255 if unsigned else 127))
            assert np.isfinite(np.float32(1.0) / scale) and scale > 0


def test_factory_errors():
    obs = _observer(np.arange(10, dtype=np.float32), batches=1, name="head.conv")
    with pytest.raises(
        VccError, match=r"'entropy'.*head\.conv.*kl, kl-mxnet, minmax, mse, percentile"
    ):
        compute_threshold("entropy", obs, False)
    with pytest.raises(VccError, match="bins"):
        compute_threshold("kl", obs, False, bins=3)
    with pytest.raises(VccError, match="'empty'.*no calibration data"):
        compute_threshold("kl", HistogramObserver("empty"), False)
    assert sorted(METHODS) == sorted(ALL)


def test_results_clamped_serialisable_and_deterministic(gauss, gauss_results):
    _, obs = gauss
    for m, res in gauss_results.items():
        assert res.method == m
        assert 0.0 < res.threshold <= obs.amax
        json.dumps(res.to_dict())
    for m in ("kl", "kl-mxnet", "mse"):
        again = compute_threshold(m, obs, False)
        assert json.dumps(again.to_dict()) == json.dumps(gauss_results[m].to_dict())


def test_kl_is_fast(gauss):
    _, obs = gauss
    t0 = time.perf_counter()
    kl_threshold(obs.hist_abs, obs.abs_edges, unsigned=False)
    assert time.perf_counter() - t0 < 1.0


# -- plain-loop references (slow, small histograms) -------------------------------------------


def _loop_kl_trt(bins: np.ndarray, levels: int, eps: float = 1e-12) -> np.ndarray:
    bins = bins.astype(np.float64).copy()
    bins[0] = bins[1]
    out = []
    for i in range(levels, bins.size):
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        level = (np.arange(i) * levels) // i
        mass = np.bincount(level, weights=bins[:i], minlength=levels)
        filled = np.bincount(level, weights=bins[:i] > 0, minlength=levels)
        q = np.where(bins[:i] > 0, mass[level] / np.maximum(filled[level], 1), 0.0)
        p /= p.sum()
        q /= q.sum()
        q[q == 0] = eps
        keep = p > 0
        out.append(float(np.sum(p[keep] * np.log(p[keep] / q[keep]))))
    return np.array(out)


def _loop_smooth(x: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    zero = x == 0
    if zero.all():
        return None
    out = x + eps * zero - eps * zero.sum() / (~zero).sum() * ~zero
    return None if (out <= 0).any() else out


def _loop_kl_mxnet(hist: np.ndarray, nq: int = 255) -> np.ndarray:
    hist = hist.astype(np.float64)
    zero = hist.size // 2
    out = []
    for i in range(nq // 2, zero + 1):
        lo, hi = zero - i, zero + i + 1
        sliced = hist[lo:hi]
        p = sliced.copy()
        p[0] += hist[:lo].sum()
        p[-1] += hist[hi:].sum()
        merged = sliced.size // nq
        q = np.zeros(sliced.size)
        for j in range(nq):
            a = j * merged
            b = sliced.size if j == nq - 1 else a + merged
            filled = (p[a:b] != 0).sum()
            if filled:
                q[a:b] = sliced[a:b].sum() / filled
        q[p == 0] = 0
        ps, qs = _loop_smooth(p), _loop_smooth(q)
        if ps is None or qs is None:
            out.append(np.inf)
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        out.append(float(np.sum(ps * np.log(ps / qs))))
    return np.array(out)


@pytest.mark.parametrize("unsigned", [False, True])
def test_kl_trt_matches_loop_reference(unsigned):
    rng = np.random.default_rng(5)
    x = np.concatenate([np.abs(rng.standard_t(3, 30_000)), np.zeros(5000), [40.0]])
    hist, edges = np.histogram(x, bins=520, range=(0.0, x.max()))
    levels = 256 if unsigned else 128
    ref = _loop_kl_trt(hist, levels)
    best = ref.size - 1 - int(np.argmin(ref[::-1]))
    res = kl_threshold(hist, edges, unsigned=unsigned)
    assert res.extra["bin"] == best + levels
    assert res.threshold == edges[best + levels]
    assert res.kl == pytest.approx(ref[best], rel=1e-9)


def test_kl_mxnet_matches_loop_reference():
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.laplace(size=20_000), [25.0, -30.0], np.zeros(3000)])
    amax = np.abs(x).max()
    hist, edges = np.histogram(x, bins=601, range=(-amax, amax))
    ref = _loop_kl_mxnet(hist)
    best = int(np.argmin(ref))
    res = kl_mxnet_threshold(hist, edges)
    assert res.extra["half_width"] == best + 127
    assert res.threshold == edges[300 + best + 127 + 1]
    assert res.kl == pytest.approx(ref[best], rel=1e-9)
    with pytest.raises(VccError, match="odd"):
        kl_mxnet_threshold(hist[:-1], edges[:-1])
