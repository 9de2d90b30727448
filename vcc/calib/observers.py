"""Streaming per-tensor activation statistics for int8 calibration.

:class:`HistogramObserver` is fed one batch at a time (numpy arrays of any shape) and keeps,
in fixed-size arrays only:

- ``count``, ``min``, ``max`` (exact, float32 values widened to Python floats);
- ``hist_abs``: 2048 int64 bins of |x| on ``[0, amax]`` (TensorRT-flavour KL, percentile, MSE);
- ``hist_signed``: 8001 int64 bins of x on ``[-amax, amax]`` (MXNet / old-TVM-flavour KL), an odd
  count so that one bin is centred on zero;

where ``amax`` is always the largest |x| seen so far, so the last occupied bin is the last bin.

Growth rule (both histograms): when a batch holds a value beyond ``amax``, the range grows to
exactly the new max |x|, and the existing counts are re-binned into the new edges by linear
interpolation of the cumulative count (each old bin assumed uniformly filled), rounded to whole
counts with ``np.rint``. The counts stay integers, the total stays exactly equal to the number of
elements, a spike at zero stays in bin 0 (and in the centre bin of the signed histogram), and
no resolution is wasted on an over-wide range (growing by doubling would leave up to half the
bins empty). The price is a smear of at most about one bin per growth; the maximum of a stream
is renewed only O(log n) times over n batches, so few re-binnings happen.

Determinism: every step is an elementwise IEEE operation, an integer bincount or a cumulative
sum in a fixed order, so the same batches in the same order give byte-identical histograms.
Large batches are binned in fixed-size chunks so that the transient memory stays bounded too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vcc.errors import VccError

NUM_BINS = 2048
NUM_SIGNED_BINS = 8001
_CHUNK = 1 << 16  # elements binned at a time: keeps temporaries in cache
_FORMAT = "vcc.calib.HistogramObserver"
_VERSION = 1


def abs_edges(amax: float, num_bins: int) -> np.ndarray:
    """Bin edges (``num_bins + 1``, float64) of a histogram of |x| on ``[0, amax]``."""
    return np.linspace(0.0, amax, num_bins + 1)


def signed_edges(amax: float, num_bins: int) -> np.ndarray:
    """Bin edges (``num_bins + 1``, float64) of a histogram of x on ``[-amax, amax]``."""
    return np.linspace(-amax, amax, num_bins + 1)


def _rebin(hist: np.ndarray, old_amax: float, new_amax: float, signed: bool) -> np.ndarray:
    """Counts of ``hist`` (range ``old_amax``) moved onto the same number of bins over ``new_amax``.

    Requires ``new_amax >= old_amax``. The cumulative count is interpolated linearly at the new
    edges and rounded to integers, so the total is preserved exactly.
    """
    n = hist.size
    if new_amax == old_amax:
        return hist.copy()
    if old_amax == 0.0:
        # Everything seen so far is exactly zero: it stays in the bin that holds zero.
        return hist.copy()
    ratio = new_amax / old_amax
    k = np.arange(n + 1, dtype=np.float64)
    # New edges expressed in units of old bins, counted from the old left edge.
    pos = k * ratio
    if signed:
        pos = pos + (n / 2.0) * (1.0 - ratio)
    cum = np.zeros(n + 1, dtype=np.float64)
    np.cumsum(hist, out=cum[1:])
    total = cum[-1]
    left = np.clip(np.floor(pos), 0, n - 1).astype(np.int64)
    frac = np.clip(pos - left, 0.0, 1.0)
    step = cum[left + 1] - cum[left]
    new_cum = cum[left] + frac * step
    new_cum = np.rint(new_cum)
    new_cum[0] = 0.0
    new_cum[-1] = total
    return np.diff(new_cum).astype(np.int64)


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class HistogramObserver:
    """Streaming min / max / count and |x| and signed histograms of one tensor.

    Memory is fixed at construction (``num_bins + num_signed_bins`` int64 counts and a few
    scalars) whatever the number of batches.
    """

    def __init__(
        self, name: str = "", num_bins: int = NUM_BINS, num_signed_bins: int = NUM_SIGNED_BINS
    ) -> None:
        if num_bins < 1:
            raise VccError(f"observer {name!r}: num_bins must be >= 1, got {num_bins}")
        if num_signed_bins < 1 or num_signed_bins % 2 == 0:
            raise VccError(
                f"observer {name!r}: num_signed_bins must be odd and >= 1 (one bin centred on "
                f"zero), got {num_signed_bins}"
            )
        self.name = name
        self.num_bins = int(num_bins)
        self.num_signed_bins = int(num_signed_bins)
        self._count = 0
        self._min = 0.0
        self._max = 0.0
        self._amax = 0.0
        self._hist_abs = np.zeros(self.num_bins, dtype=np.int64)
        self._hist_signed = np.zeros(self.num_signed_bins, dtype=np.int64)

    # -- statistics -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of elements observed."""
        return self._count

    @property
    def min(self) -> float:
        """Smallest value observed (0.0 before any data)."""
        return self._min

    @property
    def max(self) -> float:
        """Largest value observed (0.0 before any data)."""
        return self._max

    @property
    def amax(self) -> float:
        """Largest |x| observed: the upper end of both histogram ranges."""
        return self._amax

    @property
    def nonneg(self) -> bool:
        """True when data was seen and every value is >= 0 (candidate for unsigned int8)."""
        return self._count > 0 and self._min >= 0.0

    @property
    def hist_abs(self) -> np.ndarray:
        """Read-only int64 counts of |x| over :attr:`abs_edges`."""
        return _readonly(self._hist_abs)

    @property
    def hist_signed(self) -> np.ndarray:
        """Read-only int64 counts of x over :attr:`signed_edges`."""
        return _readonly(self._hist_signed)

    @property
    def abs_edges(self) -> np.ndarray:
        """Edges of :attr:`hist_abs`: ``num_bins + 1`` values on ``[0, amax]``."""
        return abs_edges(self._amax, self.num_bins)

    @property
    def signed_edges(self) -> np.ndarray:
        """Edges of :attr:`hist_signed`: ``num_signed_bins + 1`` values on ``[-amax, amax]``."""
        return signed_edges(self._amax, self.num_signed_bins)

    # -- feeding ----------------------------------------------------------------------------

    def observe(self, x: Any) -> None:
        """Add one batch (any shape; converted to float32). NaN or Inf raise :class:`VccError`."""
        try:
            arr = np.asarray(x)
            if arr.dtype.kind not in "fiub":
                raise TypeError(arr.dtype)
            arr = arr.astype(np.float32, copy=False).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise VccError(
                f"observer {self.name!r}: expected a numeric array, got {type(x).__name__} ({exc})"
            ) from None
        if arr.size == 0:
            return
        bmin = float(arr.min())
        bmax = float(arr.max())
        if not (np.isfinite(bmin) and np.isfinite(bmax)):
            raise VccError(f"observer {self.name!r}: batch holds NaN or Inf values")
        bamax = max(-bmin, bmax)
        if bamax > self._amax:
            self._grow(bamax)
        for start in range(0, arr.size, _CHUNK):
            self._bin(arr[start : start + _CHUNK])
        if self._count == 0:
            self._min, self._max = bmin, bmax
        else:
            self._min = min(self._min, bmin)
            self._max = max(self._max, bmax)
        self._count += int(arr.size)

    def _grow(self, new_amax: float) -> None:
        self._hist_abs = _rebin(self._hist_abs, self._amax, new_amax, signed=False)
        self._hist_signed = _rebin(self._hist_signed, self._amax, new_amax, signed=True)
        self._amax = new_amax

    def _bin(self, arr: np.ndarray) -> None:
        n, ns = self.num_bins, self.num_signed_bins
        if self._amax == 0.0:
            # Only zeros can reach here: they belong to bin 0 and to the centre bin.
            self._hist_abs[0] += arr.size
            self._hist_signed[ns // 2] += arr.size
            return
        # float32 arithmetic unless the scale overflows it (amax below ~1e-30). The shifted
        # values are >= 0 (up to rounding), so truncating to int is the floor.
        dt = np.float32 if n / self._amax < 1e30 else np.float64
        vals = arr.astype(dt, copy=False)
        pos = np.abs(vals)
        pos *= dt(n / self._amax)
        idx = pos.astype(np.intp)
        np.minimum(idx, n - 1, out=idx)
        self._hist_abs += np.bincount(idx, minlength=n)
        shifted = vals * dt(ns / (2.0 * self._amax))
        shifted += dt(ns / 2.0)
        sidx = shifted.astype(np.intp)
        np.clip(sidx, 0, ns - 1, out=sidx)
        self._hist_signed += np.bincount(sidx, minlength=ns)

    def merge(self, other: HistogramObserver) -> None:
        """Fold ``other``'s statistics into this observer (in place).

        Both histograms are re-binned onto the larger of the two ranges with the growth rule,
        then added. Exact when the ranges are equal; otherwise within the growth rule's smear.
        Merging is commutative, but not byte-identical to feeding the batches one stream.
        """
        if (other.num_bins, other.num_signed_bins) != (self.num_bins, self.num_signed_bins):
            raise VccError(
                f"observer {self.name!r}: cannot merge {other.name!r}: bin counts "
                f"({other.num_bins}, {other.num_signed_bins}) differ from "
                f"({self.num_bins}, {self.num_signed_bins})"
            )
        if other._count == 0:
            return
        amax = max(self._amax, other._amax)
        self._grow(amax)
        self._hist_abs += _rebin(other._hist_abs, other._amax, amax, signed=False)
        self._hist_signed += _rebin(other._hist_signed, other._amax, amax, signed=True)
        if self._count == 0:
            self._min, self._max = other._min, other._max
        else:
            self._min = min(self._min, other._min)
            self._max = max(self._max, other._max)
        self._count += other._count

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (ints, floats, lists); ``from_dict`` restores it exactly."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "name": self.name,
            "count": self._count,
            "min": self._min,
            "max": self._max,
            "amax": self._amax,
            "num_bins": self.num_bins,
            "num_signed_bins": self.num_signed_bins,
            "hist_abs": [int(v) for v in self._hist_abs],
            "hist_signed": [int(v) for v in self._hist_signed],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistogramObserver:
        """Rebuild an observer from :meth:`to_dict` output; bad content raises :class:`VccError`."""
        if not isinstance(data, dict):
            raise VccError(f"observer state: expected a dict, got {type(data).__name__}")
        name = str(data.get("name", ""))
        where = f"observer state {name!r}"
        if data.get("format") != _FORMAT or data.get("version") != _VERSION:
            raise VccError(
                f"{where}: key 'format'/'version' is {data.get('format')!r}/"
                f"{data.get('version')!r}, expected {_FORMAT!r}/{_VERSION}"
            )
        for key in ("count", "min", "max", "amax", "num_bins", "num_signed_bins"):
            if key not in data:
                raise VccError(f"{where}: missing key {key!r}")
        obs = cls(name, int(data["num_bins"]), int(data["num_signed_bins"]))
        obs._count = int(data["count"])
        obs._min = float(data["min"])
        obs._max = float(data["max"])
        obs._amax = float(data["amax"])
        obs._hist_abs = _load_hist(data, "hist_abs", obs.num_bins, obs._count, where)
        obs._hist_signed = _load_hist(data, "hist_signed", obs.num_signed_bins, obs._count, where)
        if obs._count < 0 or obs._amax < 0.0 or obs._amax != max(-obs._min, obs._max, 0.0):
            raise VccError(f"{where}: inconsistent count/min/max/amax")
        return obs

    def __repr__(self) -> str:
        return (
            f"HistogramObserver(name={self.name!r}, count={self._count}, min={self._min:g}, "
            f"max={self._max:g})"
        )


def _load_hist(data: dict[str, Any], key: str, size: int, count: int, where: str) -> np.ndarray:
    values = data.get(key)
    if not isinstance(values, list) or len(values) != size:
        raise VccError(f"{where}: key {key!r} must be a list of {size} ints")
    try:
        hist = np.array(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise VccError(f"{where}: key {key!r} holds non-integer values") from None
    if (hist < 0).any() or int(hist.sum()) != count:
        raise VccError(f"{where}: key {key!r} must hold non-negative counts summing to {count}")
    return hist
