"""Threshold search over an observer's histograms: one small pure function per method.

Every function returns a :class:`ThresholdResult` whose ``threshold`` is on |x|: the int8 scale
is ``threshold / 127`` (signed) or ``threshold / 255`` (unsigned, post-ReLU tensors).
:func:`compute_threshold` picks the method by name from :data:`METHODS`.

A tensor whose values are all zero gets :data:`TINY_THRESHOLD` (any positive scale maps zeros to
zero, and dividing by it stays finite); so does any method whose answer would be below it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vcc.calib.observers import HistogramObserver
from vcc.errors import VccError

TINY_THRESHOLD = 1e-8
# Stand-in for Q where Q == 0 but P > 0 (TensorRT flavour); see kl_threshold.
KL_Q_EPS = 1e-12
# MXNet's smoothing of zero bins, applied to raw counts as MXNet / old TVM do.
MXNET_SMOOTH_EPS = 1e-4
_BLOCK = 128


@dataclass(frozen=True)
class ThresholdResult:
    """A clipping threshold on |x| and how it was found.

    ``kl`` is the divergence at the chosen threshold (KL methods only); ``clipped_fraction`` is
    the share of elements whose |x| lies beyond the threshold, read from the histogram.
    """

    threshold: float
    method: str
    kl: float | None = None
    clipped_fraction: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form for the calibration cache and report."""
        return {
            "threshold": self.threshold,
            "method": self.method,
            "kl": self.kl,
            "clipped_fraction": self.clipped_fraction,
            "extra": dict(self.extra),
        }


def _check_hist(hist: np.ndarray, edges: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(hist)
    e = np.asarray(edges, dtype=np.float64)
    if h.ndim != 1 or e.ndim != 1 or e.size != h.size + 1:
        raise VccError(
            f"{what}: histogram of shape {h.shape} needs {h.size + 1} edges, got shape {e.shape}"
        )
    if h.size and (h < 0).any():
        raise VccError(f"{what}: histogram holds negative counts")
    return h.astype(np.float64), e


def _tiny(method: str, reason: str) -> ThresholdResult:
    return ThresholdResult(TINY_THRESHOLD, method, extra={"reason": reason})


def _tail_fraction(hist: np.ndarray, first_clipped_bin: int) -> float:
    total = hist.sum()
    return float(hist[first_clipped_bin:].sum() / total) if total > 0 else 0.0


# -- KL, TensorRT flavour ---------------------------------------------------------------------


def _kl_trt_block(
    bins: np.ndarray, cum: np.ndarray, nzcum: np.ndarray, cands: np.ndarray, levels: int
) -> np.ndarray:
    """KL(P||Q) for a block of candidate bin counts ``cands`` (vectorised over candidates)."""
    n = bins.size
    total = cum[-1]
    i = cands[:, None]
    j = np.arange(n)[None, :]
    # Level k gathers source bins j with k*i <= j*levels < (k+1)*i; its first bin is ceil(k*i/L).
    k = np.arange(levels + 1)[None, :]
    bounds = (k * i + levels - 1) // levels
    mass = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    nonempty = nzcum[bounds[:, 1:]] - nzcum[bounds[:, :-1]]
    density = mass / np.maximum(nonempty, 1)
    inside = j < i
    level = np.minimum((j * levels) // i, levels - 1)
    q = np.take_along_axis(density, level, axis=1)
    q = np.where(inside & (bins[None, :] > 0), q, 0.0)
    kept = cum[cands]
    q /= np.maximum(kept, 1e-300)[:, None]
    p = np.where(inside, bins[None, :], 0.0)
    rows = np.arange(cands.size)
    p[rows, cands - 1] += total - kept
    p /= total
    q = np.where(q > 0.0, q, KL_Q_EPS)
    terms = np.zeros_like(p)
    pos = p > 0.0
    np.multiply(p, np.log(p / q, where=pos, out=np.zeros_like(p)), out=terms, where=pos)
    return terms.sum(axis=1)


def kl_threshold(
    hist_abs: np.ndarray, edges: np.ndarray, unsigned: bool = False
) -> ThresholdResult:
    """Entropy calibration, TensorRT flavour, on a histogram of |x| (normally 2048 bins).

    ``levels`` is 128 (signed) or 256 (unsigned). For each candidate ``i`` in
    ``range(levels, nbins)`` (128..2047 signed, 256..2047 unsigned): P is ``bins[:i]`` with all
    outlier mass ``sum(bins[i:])`` added to ``P[i-1]``; Q is ``bins[:i]`` merged into ``levels``
    contiguous chunks (source bin j goes to level ``j*levels//i``), each chunk's mass spread
    evenly over its non-empty source bins (empty source bins stay 0). Both are normalised and
    KL(P||Q) is summed over bins with P > 0. Where Q == 0 but P > 0 (possible only at ``i-1``,
    when that bin is empty but outliers were folded into it) Q is taken as :data:`KL_Q_EPS`, a
    heavy but finite penalty, where scipy's entropy would give inf. The threshold is the upper
    edge ``edges[i]`` of the best candidate; ties go to the largest ``i``.

    Before the search the count of bin 0 is replaced by that of bin 1, as NVIDIA's
    pytorch-quantization ``_compute_amax_entropy`` does: post-ReLU tensors hold a spike of exact
    zeros in bin 0 which would otherwise dominate the divergence and drag the threshold down
    (measured on half-rectified N(0,1), 1e6 samples: 1.76 with the spike, 4.24 without).
    ``clipped_fraction`` is read from the unmodified histogram.
    """
    what = "kl_threshold"
    bins, e = _check_hist(hist_abs, edges, what)
    levels = 256 if unsigned else 128
    n = bins.size
    total = bins.sum()
    if total == 0 or e[-1] <= 0.0:
        return _tiny("kl", "no non-zero data")
    if n <= levels:
        raise VccError(f"{what}: needs more than {levels} bins for {levels} levels, got {n}")
    search = bins.copy()
    search[0] = search[1]
    if search.sum() == 0:
        return ThresholdResult(float(e[-1]), "kl", extra={"reason": "all data in bin 0"})
    cum = np.concatenate([[0.0], np.cumsum(search)])
    nzcum = np.concatenate([[0], np.cumsum(search > 0)])
    cands = np.arange(levels, n)
    kl = np.concatenate(
        [
            _kl_trt_block(search, cum, nzcum, cands[s : s + _BLOCK], levels)
            for s in range(0, cands.size, _BLOCK)
        ]
    )
    best = kl.size - 1 - int(np.argmin(kl[::-1]))
    i = int(cands[best])
    return ThresholdResult(
        float(e[i]),
        "kl",
        kl=float(kl[best]),
        clipped_fraction=_tail_fraction(bins, i),
        extra={"bin": i, "levels": levels, "num_candidates": int(cands.size)},
    )


# -- KL, MXNet / old TVM flavour -------------------------------------------------------------


def _kl_mxnet_block(hist: np.ndarray, cum: np.ndarray, cands: np.ndarray, nq: int) -> np.ndarray:
    """KL for a block of half-widths ``cands`` on an odd signed histogram (vectorised).

    Works from per-chunk sums: Q is constant over the non-zero bins of a chunk and the
    smoothing shifts every non-zero bin of a row by the same amount, so only the sum of
    ``P log P`` needs a pass over the bins of each slice.
    """
    eps = MXNET_SMOOTH_EPS
    n = hist.size
    zero = n // 2
    total = cum[-1]
    rows = np.arange(cands.size)
    width = 2 * cands + 1
    start = zero - cands
    stop = start + width
    left_out = cum[start]
    right_out = total - cum[stop]
    # P per bin: the slice, with the outliers folded into its end bins.
    cols = int(width.max())
    padded = np.concatenate([hist, np.zeros(cols)])
    p = np.lib.stride_tricks.sliding_window_view(padded, cols)[start].copy()
    p[np.arange(cols)[None, :] >= width[:, None]] = 0.0
    p[rows, 0] += left_out
    p[rows, width - 1] += right_out
    nonzero = p != 0.0
    n_nonzero = nonzero.sum(axis=1)
    n_zero = width - n_nonzero
    # Chunks: nq runs of width // nq bins, the remainder joining the last one.
    merged = width // nq
    bounds = np.arange(nq + 1)[None, :] * merged[:, None]
    bounds[:, -1] = width
    gb = start[:, None] + bounds
    qmass = cum[gb[:, 1:]] - cum[gb[:, :-1]]
    nzcum = np.concatenate([[0], np.cumsum(hist != 0)])
    norm = (nzcum[gb[:, 1:]] - nzcum[gb[:, :-1]]).astype(np.float64)
    norm[:, 0] += (hist[start] == 0) & (left_out > 0)
    norm[:, -1] += (hist[stop - 1] == 0) & (right_out > 0)
    pmass = qmass.copy()
    pmass[:, 0] += left_out
    pmass[:, -1] += right_out
    # Q per chunk, spread over the chunk's non-zero P bins; zero where the chunk has no mass.
    has_q = (norm > 0) & (qmass > 0)
    density = np.where(has_q, qmass / np.maximum(norm, 1.0), 0.0)
    q_zero = n_zero + np.where((norm > 0) & ~has_q, norm, 0.0).sum(axis=1)
    q_nonzero = width - q_zero
    # Smoothing of raw counts: zeros get eps, non-zeros lose eps1 each (sums are unchanged).
    e1p = eps * n_zero / np.maximum(n_nonzero, 1)
    e1q = eps * q_zero / np.maximum(q_nonzero, 1)
    pmin = np.min(p, axis=1, where=nonzero, initial=np.inf)
    qmin = np.min(density, axis=1, where=has_q, initial=np.inf)
    ok = (n_nonzero > 0) & (q_nonzero > 0) & (pmin > e1p) & (qmin > e1q)
    sp = total
    sq = cum[stop] - cum[start]
    sq_safe = np.where(sq > 0, sq, 1.0)
    # Non-zero P bins: P = (p - e1p) / sp; Q = (density - e1q) / sq, or eps / sq in a chunk
    # without mass.
    shifted = np.where(nonzero, p - e1p[:, None], 1.0)
    plogp = (shifted * np.log(np.maximum(shifted, 1e-300))).sum(axis=1, where=nonzero)
    kl = (plogp - np.log(sp) * (pmass.sum(axis=1) - e1p * n_nonzero)) / sp
    log_q = np.where(has_q, np.log(np.maximum(density - e1q[:, None], 1e-300)), np.log(eps))
    log_q -= np.log(sq_safe)[:, None]
    chunk_p = (pmass - e1p[:, None] * norm) / sp
    kl -= np.where(norm > 0, chunk_p * log_q, 0.0).sum(axis=1)
    # Zero P bins: both smoothed to eps, so P = eps / sp and Q = eps / sq.
    kl += n_zero * (eps / sp) * np.log(sq_safe / sp)
    kl[~ok] = np.inf
    return kl


def kl_mxnet_threshold(
    signed_hist: np.ndarray, edges: np.ndarray, num_quantized_bins: int = 255
) -> ThresholdResult:
    """Entropy calibration, MXNet / old-TVM flavour, on an odd signed histogram (8001 bins).

    For each half-width ``i`` from ``num_quantized_bins // 2`` to the zero bin index, the slice
    of ``2i+1`` bins centred on zero is P, with the mass left and right of the slice added to its
    first and last bin. Q: the slice merged into ``num_quantized_bins`` chunks of
    ``(2i+1) // num_quantized_bins`` bins (the remainder joins the last chunk), each chunk's mass
    spread over the bins where P is non-zero. P and Q (raw counts) are smoothed (zero bins get
    1e-4, taken evenly from the non-zero ones), normalised, and KL(P||Q) is computed. A
    candidate whose smoothing is impossible (MXNet asserts there) scores inf. The threshold is
    the upper edge of the best slice, ``edges[zero + i + 1]``; ties go to the smallest ``i``.
    If every candidate scores inf, the whole range is kept.
    """
    what = "kl_mxnet_threshold"
    hist, e = _check_hist(signed_hist, edges, what)
    n = hist.size
    if n % 2 == 0:
        raise VccError(f"{what}: signed histogram needs an odd number of bins, got {n}")
    zero = n // 2
    half = num_quantized_bins // 2
    if num_quantized_bins < 1 or zero < half:
        raise VccError(
            f"{what}: {n} bins are too few for {num_quantized_bins} quantized bins "
            f"(need at least {2 * half + 1})"
        )
    total = hist.sum()
    if total == 0 or e[-1] <= 0.0:
        return _tiny("kl-mxnet", "no non-zero data")
    cum = np.concatenate([[0.0], np.cumsum(hist)])
    cands = np.arange(half, zero + 1)
    kl = np.concatenate(
        [
            _kl_mxnet_block(hist, cum, cands[s : s + _BLOCK], num_quantized_bins)
            for s in range(0, cands.size, _BLOCK)
        ]
    )
    if np.isinf(kl).all():
        best, note = kl.size - 1, "every candidate failed smoothing; whole range kept"
    else:
        best, note = int(np.argmin(kl)), ""
    i = int(cands[best])
    stop = zero + i + 1
    clipped = float((cum[zero - i] + total - cum[stop]) / total)
    extra: dict[str, Any] = {
        "half_width": i,
        "num_quantized_bins": num_quantized_bins,
        "num_candidates": int(cands.size),
    }
    if note:
        extra["reason"] = note
    kl_best = float(kl[best])
    return ThresholdResult(
        float(e[stop]),
        "kl-mxnet",
        kl=kl_best if np.isfinite(kl_best) else None,
        clipped_fraction=clipped,
        extra=extra,
    )


# -- percentile, minmax, MSE ------------------------------------------------------------------


def percentile_threshold(
    hist_abs: np.ndarray, edges: np.ndarray, percentile: float = 99.99
) -> ThresholdResult:
    """The ``percentile``-th percentile of |x|, interpolated linearly inside its bin.

    Agrees with ``np.percentile(abs(x), percentile)`` to within one bin width.
    """
    what = "percentile_threshold"
    if not 0.0 < percentile <= 100.0:
        raise VccError(f"{what}: percentile must be in (0, 100], got {percentile}")
    bins, e = _check_hist(hist_abs, edges, what)
    total = bins.sum()
    if total == 0 or e[-1] <= 0.0:
        return _tiny("percentile", "no non-zero data")
    cum = np.cumsum(bins)
    target = total * (percentile / 100.0)
    b = min(int(np.searchsorted(cum, target, side="left")), bins.size - 1)
    before = cum[b - 1] if b > 0 else 0.0
    frac = min(max((target - before) / bins[b], 0.0), 1.0) if bins[b] > 0 else 1.0
    threshold = float(e[b] + frac * (e[b + 1] - e[b]))
    return ThresholdResult(
        threshold,
        "percentile",
        clipped_fraction=float((total - target) / total),
        extra={"percentile": float(percentile), "bin": b},
    )


def minmax_threshold(min_val: float, max_val: float, unsigned: bool = False) -> ThresholdResult:
    """max |x| (signed), or max(x) (unsigned: negatives, if any, clip to zero)."""
    if unsigned:
        threshold = max(float(max_val), 0.0)
    else:
        threshold = max(-float(min_val), float(max_val), 0.0)
    if threshold <= 0.0:
        return _tiny("minmax", "no non-zero data")
    extra: dict[str, Any] = {"min": float(min_val), "max": float(max_val)}
    if unsigned and min_val < 0.0:
        extra["clips_negatives"] = True
    return ThresholdResult(threshold, "minmax", extra=extra)


def mse_threshold(
    hist_abs: np.ndarray, edges: np.ndarray, unsigned: bool = False
) -> ThresholdResult:
    """The bin edge t minimising the expected squared error of quantising |x| with clip t.

    Steps are ``t/127`` (signed) or ``t/255`` (unsigned). Error model per element: rounding
    noise ``step**2 / 12`` inside ``[0, t]``; ``E[(|x| - t)**2]`` outside, with |x| uniform in
    its bin (``(centre - t)**2 + width**2 / 12``). Candidates are the upper edges of bins 1..n
    (edge ``n`` = no clipping); ties go to the largest t. Exact zeros are charged rounding noise
    like any other value (the histogram cannot tell them apart from small values).
    """
    bins, e = _check_hist(hist_abs, edges, "mse_threshold")
    levels = 255 if unsigned else 127
    total = bins.sum()
    if total == 0 or e[-1] <= 0.0:
        return _tiny("mse", "no non-zero data")
    centre = 0.5 * (e[:-1] + e[1:])
    width = e[1:] - e[:-1]
    # Suffix sums: s0[k] = sum_{j>=k} b_j, s1 of b_j c_j, s2 of b_j (c_j^2 + w_j^2 / 12).
    s0 = np.concatenate([np.cumsum(bins[::-1])[::-1], [0.0]])
    s1 = np.concatenate([np.cumsum((bins * centre)[::-1])[::-1], [0.0]])
    s2 = np.concatenate([np.cumsum((bins * (centre**2 + width**2 / 12.0))[::-1])[::-1], [0.0]])
    k = np.arange(1, bins.size + 1)
    t = e[k]
    clip_err = np.maximum(s2[k] - 2.0 * t * s1[k] + t * t * s0[k], 0.0)
    round_err = (total - s0[k]) * (t / levels) ** 2 / 12.0
    err = (clip_err + round_err) / total
    best = err.size - 1 - int(np.argmin(err[::-1]))
    kk = int(k[best])
    return ThresholdResult(
        float(t[best]),
        "mse",
        clipped_fraction=_tail_fraction(bins, kk),
        extra={"bin": kk, "levels": levels, "mse": float(err[best])},
    )


# -- factory ---------------------------------------------------------------------------------


def _run_kl(obs: HistogramObserver, unsigned: bool, **params: Any) -> ThresholdResult:
    return kl_threshold(obs.hist_abs, obs.abs_edges, unsigned, **params)


def _run_kl_mxnet(obs: HistogramObserver, unsigned: bool, **params: Any) -> ThresholdResult:
    # Symmetric by construction: ``unsigned`` only changes the scale the caller derives.
    return kl_mxnet_threshold(obs.hist_signed, obs.signed_edges, **params)


def _run_percentile(obs: HistogramObserver, unsigned: bool, **params: Any) -> ThresholdResult:
    return percentile_threshold(obs.hist_abs, obs.abs_edges, **params)


def _run_minmax(obs: HistogramObserver, unsigned: bool, **params: Any) -> ThresholdResult:
    return minmax_threshold(obs.min, obs.max, unsigned, **params)


def _run_mse(obs: HistogramObserver, unsigned: bool, **params: Any) -> ThresholdResult:
    return mse_threshold(obs.hist_abs, obs.abs_edges, unsigned, **params)


# method name -> (runner over an observer, keyword parameters it accepts)
METHODS: dict[str, tuple[Callable[..., ThresholdResult], frozenset[str]]] = {
    "kl": (_run_kl, frozenset()),
    "kl-mxnet": (_run_kl_mxnet, frozenset({"num_quantized_bins"})),
    "percentile": (_run_percentile, frozenset({"percentile"})),
    "minmax": (_run_minmax, frozenset()),
    "mse": (_run_mse, frozenset()),
}


def compute_threshold(
    method: str, observer: HistogramObserver, unsigned: bool, **params: Any
) -> ThresholdResult:
    """Threshold on |x| for ``observer``'s tensor by the method named ``method``.

    ``params`` go to the method's function (``percentile=`` for "percentile",
    ``num_quantized_bins=`` for "kl-mxnet"). The result never exceeds the observed max |x|
    (histogram edges can overshoot it by a fraction of a bin) and is never below
    :data:`TINY_THRESHOLD`. An observer that saw no data raises :class:`VccError`.
    """
    entry = METHODS.get(method)
    if entry is None:
        raise VccError(
            f"unknown calibration method {method!r} for tensor {observer.name!r}; "
            f"known: {', '.join(sorted(METHODS))}"
        )
    run, allowed = entry
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise VccError(
            f"calibration method {method!r} (tensor {observer.name!r}) takes no parameter(s) "
            f"{unknown}; it accepts {sorted(allowed) or 'none'}"
        )
    if observer.count == 0:
        raise VccError(f"tensor {observer.name!r}: no calibration data was observed")
    result = run(observer, unsigned, **params)
    limit = observer.max if unsigned else observer.amax
    if result.threshold > limit > 0.0:
        result = replace(result, threshold=float(limit))
    if not result.threshold >= TINY_THRESHOLD:
        extra = {**result.extra, "raised_to_tiny": True}
        result = replace(result, threshold=TINY_THRESHOLD, extra=extra)
    return result
