"""Scoring against the labels: class maps at the label's size (argmax_at) and accuracy.json's
ground-truth part (mIoU, pixel accuracy and per-class IoU of fp32 and of the artifact, and their
difference).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from vcc.reports.evalset import EvalSet
from vcc.reports.metrics import iou_per_class, mean_iou, pixel_accuracy


def argmax_at(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(1, C, h, w) logits -> (H, W) class map at `size`, resizing each class map bilinearly
    (half-pixel centres, as align_corners=False) when the sizes differ."""
    y = np.asarray(logits, dtype=np.float32)[0]
    if y.shape[1:] == tuple(size):
        return y.argmax(0)
    h, w = size
    up = np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BILINEAR)) for c in y])
    return up.argmax(0)


def _nan_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _ground_truth(data: EvalSet, conf_ref: np.ndarray | None, conf_art: np.ndarray) -> dict:
    iou_art = iou_per_class(conf_art)
    iou_ref = iou_per_class(conf_ref) if conf_ref is not None else np.full(iou_art.shape, np.nan)
    pixels = conf_art.sum(axis=1)
    per_class = [{"class": k, "name": name, "iou_ref": _nan_none(iou_ref[k]),
                  "iou_artifact": _nan_none(iou_art[k]),
                  "diff": _nan_none(iou_art[k] - iou_ref[k]), "label_pixels": int(pixels[k])}
                 for k, name in enumerate(data.class_names)]
    out = {
        "labels": {"dataset": data.dataset, "root": str(data.root), "remap": data.remap,
                   "images": len(data.labels), "unpaired_photos": data.unpaired,
                   "classes": len(data.class_names)},
        "miou_artifact": mean_iou(conf_art),
        "pixel_accuracy_artifact": pixel_accuracy(conf_art),
        "per_class": per_class,
    }
    if conf_ref is not None:
        out["miou_ref"] = mean_iou(conf_ref)
        out["pixel_accuracy_ref"] = pixel_accuracy(conf_ref)
        out["miou_drop_points"] = 100.0 * (out["miou_ref"] - out["miou_artifact"])
    return out
