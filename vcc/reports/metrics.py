"""Segmentation metrics and reference-vs-test tensor comparison (numpy only, pure functions).

Conventions: a confusion matrix has target classes on rows and predicted classes on columns,
int64, and adds up across images (``conf += confusion_matrix(...)``). Logits are compared on a
class axis (``axis=1`` for NCHW); every other axis is a pixel.
"""

from __future__ import annotations

import math

import numpy as np

from vcc.errors import VccError


def _same_shape(ref: np.ndarray, test: np.ndarray, what: str) -> None:
    if ref.shape != test.shape:
        raise VccError(f"{what}: reference shape {ref.shape} != test shape {test.shape}")


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int | None = 255) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: [t, p] = pixels of target class t predicted p.
    Target pixels equal to `ignore_index` are left out; any other id outside 0..num_classes-1
    (in either map) is an error."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    _same_shape(target, pred, "confusion_matrix")
    if num_classes < 1:
        raise VccError(f"confusion_matrix: num_classes must be >= 1, got {num_classes}")
    t = target.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    for name, ids in (("target", t), ("prediction", p)):
        bad = (ids < 0) | (ids >= num_classes)
        if bad.any():
            raise VccError(f"confusion_matrix: {name} holds ids {np.unique(ids[bad])[:8].tolist()} "
                           f"outside 0..{num_classes - 1} (ignore_index={ignore_index})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class, float64; NaN for a class absent from both target and prediction."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    out = np.full(tp.shape, np.nan)
    np.divide(tp, union, out=out, where=union > 0)
    return out


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in target or prediction (NaN when none is)."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan


def pixel_accuracy(conf: np.ndarray) -> float:
    """Correct pixels / scored pixels (NaN when no pixel was scored)."""
    conf = np.asarray(conf)
    total = conf.sum()
    return float(np.trace(conf) / total) if total > 0 else math.nan


def _diff(ref: np.ndarray, test: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    _same_shape(ref, test, what)
    return ref, test - ref


def max_abs_diff(ref: np.ndarray, test: np.ndarray) -> float:
    """max |test - ref| (0 for empty arrays)."""
    _, d = _diff(ref, test, "max_abs_diff")
    return float(np.abs(d).max()) if d.size else 0.0


def _ratio(num: float, den: float) -> float:
    """num / den with 0/0 = 0 and x/0 = inf: an error relative to a zero reference."""
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.inf


def rel_error(ref: np.ndarray, test: np.ndarray) -> float:
    """max |test - ref| / max |ref|."""
    r, d = _diff(ref, test, "rel_error")
    if not d.size:
        return 0.0
    return _ratio(float(np.abs(d).max()), float(np.abs(r).max()))


def _sqnr_from_energies(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (test - ref)^2); +inf when identical."""
    r, d = _diff(ref, test, "sqnr_db")
    return _sqnr_from_energies(float(np.sum(r * r)), float(np.sum(d * d)))


def cosine_similarity(ref: np.ndarray, test: np.ndarray) -> float:
    """Cosine of the flattened arrays (1 when both are zero, 0 when only one is)."""
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    t = np.asarray(test, dtype=np.float64).reshape(-1)
    _same_shape(r, t, "cosine_similarity")
    nr, nt = float(np.linalg.norm(r)), float(np.linalg.norm(t))
    if nr == 0 or nt == 0:
        return 1.0 if nr == nt else 0.0
    return float(np.dot(r, t) / (nr * nt))


def _argmaxes(ref_logits: np.ndarray, test_logits: np.ndarray, axis: int,
              what: str) -> tuple[np.ndarray, np.ndarray, int]:
    ref_logits = np.asarray(ref_logits)
    test_logits = np.asarray(test_logits)
    _same_shape(ref_logits, test_logits, what)
    if ref_logits.ndim == 0 or not -ref_logits.ndim <= axis < ref_logits.ndim:
        raise VccError(f"{what}: class axis {axis} is out of range for shape {ref_logits.shape}")
    return ref_logits.argmax(axis=axis), test_logits.argmax(axis=axis), ref_logits.shape[axis]


def ties_within_error(ref_logits: np.ndarray, ref_argmax: np.ndarray, test_argmax: np.ndarray,
                      max_abs_diff: float, axis: int = 1) -> int:
    """Disagreeing pixels that are numerical ties: the reference's logit of its own class beats
    its logit of the class the test picked by no more than 2 x max_abs_diff, so an error of
    that size in each logit can swap them. (An fp32 build within 1e-4 of the reference may
    disagree there, and only there.)"""
    where = ref_argmax != test_argmax
    if not where.any():
        return 0
    r = np.moveaxis(np.asarray(ref_logits, dtype=np.float64), axis, -1)[where]
    own = np.take_along_axis(r, ref_argmax[where][:, None], axis=-1)[:, 0]
    picked = np.take_along_axis(r, test_argmax[where][:, None], axis=-1)[:, 0]
    return int(np.count_nonzero(own - picked <= 2.0 * max_abs_diff))


def argmax_agreement(ref_logits: np.ndarray, test_logits: np.ndarray, axis: int = 1) -> float:
    """Fraction of pixels whose argmax over `axis` is the same in both."""
    a, b, _ = _argmaxes(ref_logits, test_logits, axis, "argmax_agreement")
    return float(np.mean(a == b)) if a.size else math.nan


def miou_between(ref_logits: np.ndarray, test_logits: np.ndarray, axis: int = 1) -> float:
    """mIoU of the test argmax scored against the reference argmax as the label; the classes
    are the logit channels (those absent from both maps do not count)."""
    a, b, n = _argmaxes(ref_logits, test_logits, axis, "miou_between")
    return mean_iou(confusion_matrix(b, a, n, ignore_index=None))


class OutputComparison:
    """Streams (reference, test) output pairs image by image; `summary()` gives per-image and
    overall figures. The reference is the fp32 model's output, the test one the compiled or
    quantized model's, both logits with classes on `axis`."""

    def __init__(self, axis: int = 1) -> None:
        self.axis = axis
        self.per_image: list[dict] = []
        self._max_abs = 0.0
        self._max_ref = 0.0
        self._signal = 0.0
        self._noise = 0.0
        self._agree = 0
        self._ties = 0
        self._pixels = 0
        self._conf: np.ndarray | None = None

    def add(self, ref: np.ndarray, test: np.ndarray, name: str | None = None) -> dict:
        """Score one image's outputs; returns (and keeps) its figures."""
        what = f"output comparison of {name or f'image {len(self.per_image)}'}"
        r, d = _diff(ref, test, what)
        a, b, n = _argmaxes(ref, test, self.axis, what)
        conf = confusion_matrix(b, a, n, ignore_index=None)
        if self._conf is None:
            self._conf = conf
        elif self._conf.shape != conf.shape:
            raise VccError(f"{what}: {n} classes, earlier images had {self._conf.shape[0]}")
        else:
            self._conf += conf
        abs_d = float(np.abs(d).max()) if d.size else 0.0
        max_ref = float(np.abs(r).max()) if r.size else 0.0
        signal, noise = float(np.sum(r * r)), float(np.sum(d * d))
        agree = int(np.count_nonzero(a == b))
        ties = ties_within_error(r, a, b, abs_d, self.axis)
        # np.maximum keeps a NaN (a broken output) visible in the overall figure; max() drops it
        self._max_abs = float(np.maximum(self._max_abs, abs_d))
        self._max_ref = float(np.maximum(self._max_ref, max_ref))
        self._signal += signal
        self._noise += noise
        self._agree += agree
        self._ties += ties
        self._pixels += a.size
        fig = {
            "name": name if name is not None else str(len(self.per_image)),
            "max_abs_diff": abs_d,
            "rel_error": _ratio(abs_d, max_ref),
            "sqnr_db": _sqnr_from_energies(signal, noise),
            "cosine": cosine_similarity(ref, test),
            "agreement": agree / a.size if a.size else math.nan,
            "disagreements": int(a.size - agree),
            "ties_within_error": ties,
            "miou_vs_fp32": mean_iou(conf),
        }
        self.per_image.append(fig)
        return fig

    def __len__(self) -> int:
        return len(self.per_image)

    def summary(self) -> dict:
        """Overall figures: max of max_abs_diff, rel_error over all images, SQNR from summed
        energies, mean cosine, pixel-weighted agreement, mIoU from the summed confusion."""
        if not self.per_image or self._conf is None:
            raise VccError("output comparison: no images were compared")
        return {
            "images": len(self.per_image),
            "max_abs_diff": self._max_abs,
            "rel_error": _ratio(self._max_abs, self._max_ref),
            "sqnr_db": _sqnr_from_energies(self._signal, self._noise),
            "cosine": float(np.mean([f["cosine"] for f in self.per_image])),
            "agreement": self._agree / self._pixels if self._pixels else math.nan,
            "disagreements": int(self._pixels - self._agree),
            "ties_within_error": self._ties,
            "miou_vs_fp32": mean_iou(self._conf),
            "per_image": [dict(f) for f in self.per_image],
        }
