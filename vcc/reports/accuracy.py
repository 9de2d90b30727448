"""The accuracy-diff report: how far an artifact is from the fp32 model, where, and why.

One pass over the evaluation photos gives, per image and overall:
- the output level: the artifact's logits against ONNX Runtime on the fp32 reference model
  (max abs and relative error, SQNR, cosine, argmax agreement, mIoU of the artifact's argmax
  against the fp32 argmax);
- the ground truth (with a labelled dataset): mIoU and per-class IoU of fp32 and of the
  artifact against the labels, and their difference; the logits are resized (bilinear) to the
  label's size, the photo's own, before the argmax;
- the layer level (int8 artifacts): per quantized node, graphwise and layerwise SQNR / cosine /
  relative error from the QDQ simulation (:mod:`vcc.reports.layers`), on the first few images,
  with the simulation's own agreement with the artifact on those images.

The document is written as accuracy.json (figures that are undefined or infinite, such as the
IoU of a class absent from both maps or the SQNR of identical tensors, are null) and rendered as
a self-contained accuracy.html with the lowest-agreement images drawn inline.

This module holds the report's entry points (accuracy_report, AccuracySettings) and the pass over
the photos; the pieces live apart: the evaluation set in :mod:`vcc.reports.evalset`, the scoring
against the labels in :mod:`vcc.reports.ground_truth`, the document and its JSON / HTML in
:mod:`vcc.reports.accuracy_document`, the verdict and the CI gates in
:mod:`vcc.reports.accuracy_gates` (their public names are importable from here too).
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import vcc
from vcc.errors import VccError
from vcc.reports.accuracy_document import (
    HTML_NAME,
    JSON_NAME,
    TOP_LAYERS,
    AccuracyReport,
    _pictures,
    clean,
    render_accuracy_html,
)
from vcc.reports.accuracy_gates import _verdict, check_gates
from vcc.reports.evalset import EvalSet, eval_set, eval_set_from_spec, parse_dataset
from vcc.reports.ground_truth import _ground_truth, argmax_at
from vcc.reports.metrics import (
    OutputComparison,
    confusion_matrix,
    mean_iou,
    pixel_accuracy,
)

log = logging.getLogger(__name__)

__all__ = [
    "HTML_NAME", "JSON_NAME", "REPORT_FORMAT", "TOP_LAYERS", "AccuracyReport", "AccuracySettings",
    "EvalSet", "accuracy_report", "argmax_at", "check_gates", "clean", "eval_set",
    "eval_set_from_spec", "parse_dataset", "render_accuracy_html",
]

REPORT_FORMAT = 1
LAYERS_METHOD = (
    "Per-layer tensors come from the QDQ simulation: the fp32 model, the artifact's quantization "
    "plan (manifest: fallback, int8 nodes) and its calibration.json rebuild the QDQ model exactly "
    "as the build made it, and ONNX Runtime runs it with graph optimisation off (a float "
    "simulation of the int8 arithmetic). Graphwise: each quantized node's output (after its fused "
    "activation) in the QDQ model against the fp32 model's, the error accumulated from the input. "
    "Layerwise: a quantized copy of the node alone (its input quantized, int8 weights), fed with "
    "the fp32 tensors, against the fp32 output (one augmented model holds all copies); a tensor's "
    "rounding counts at the int8 nodes that read it. The simulation's "
    "output is checked against the artifact's on the same images (below).")


@dataclass(frozen=True)
class AccuracySettings:
    threads: int | None = None  # ONNX Runtime threads
    layers: bool = True  # per-layer analysis (int8 artifacts with their reference model)
    layer_images: int = 8  # images the per-layer analysis runs on
    worst_images: int = 4  # lowest-agreement images drawn in the report
    progress: bool = True


# --- helpers --------------------------------------------------------------------------------------

@dataclass
class _Worst:
    """The k lowest-agreement images (ties: the earlier image), with what is drawn of them."""

    k: int
    heap: list = field(default_factory=list)  # (-agreement, -index, payload): the best kept on top

    def offer(self, agreement: float, index: int, payload: Callable[[], dict]) -> None:
        if self.k <= 0:
            return
        key = (-agreement, -index)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, (*key, payload()))
        elif key > self.heap[0][:2]:
            heapq.heapreplace(self.heap, (*key, payload()))

    def items(self) -> list[dict]:
        return [p for _, _, p in sorted(self.heap, key=lambda t: (-t[0], -t[1]))]


def _display_names(paths: list[Path]) -> dict[Path, str]:
    """Each photo's path relative to the photos' common folder."""
    if not paths:
        return {}
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    out = {}
    for p in paths:
        try:
            out[p] = str(p.resolve().relative_to(common))
        except ValueError:
            out[p] = p.name
    return out


# --- the per-layer part ---------------------------------------------------------------------------

def _layer_analysis(predictor: Any, ref: Path | None, calibration: dict | None,
                    settings: AccuracySettings) -> tuple[Any, dict]:
    """The LayerAnalysis of an int8 artifact, or None and why not."""
    from vcc.reports.layers import LayerAnalysis, rebuild_quantized_model
    from vcc.runtime.artifact import sha256_file

    manifest = predictor.manifest
    if not manifest.get("quantization"):
        return None, {"skipped": f"a {manifest.get('dtype', 'fp32')} artifact has no quantized nodes"}
    if not settings.layers:
        return None, {"skipped": "not asked for"}
    if ref is None:
        return None, {"skipped": "no fp32 reference model (--ref)"}
    source = (manifest.get("source_model") or {}).get("sha256")
    if source and sha256_file(ref) != source:
        return None, {"skipped": f"{ref} is not the model the artifact was built from (sha256 differs "
                                 f"from the manifest's source_model)"}
    if calibration is None:
        name = (manifest.get("calibration") or {}).get("file", "calibration.json")
        path = Path(predictor.path or ".") / name
        try:
            calibration = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            return None, {"skipped": f"{path}: cannot read the artifact's calibration ({e})"}
    try:
        qm = rebuild_quantized_model(ref, manifest, calibration)
        analysis = LayerAnalysis(qm, settings.threads)
    except (VccError, RuntimeError) as e:
        log.warning("per-layer analysis skipped: %s", e)
        return None, {"skipped": str(e)}
    return analysis, {"source": "qdq-simulation", "text": LAYERS_METHOD}


# --- the report -------------------------------------------------------------------------------------

def accuracy_report(predictor: Any, data: EvalSet, ref: str | os.PathLike | None = None,
                    calibration: dict | None = None,
                    settings: AccuracySettings = AccuracySettings()) -> AccuracyReport:
    """Evaluate `predictor` (a loaded artifact: `predictor(x)` -> logits, `.manifest`,
    `.preprocess`, `.path`) on `data`, against ONNX Runtime on `ref` (the fp32 model) when given,
    and against the labels when `data` has them. `calibration` is the artifact's calibration
    document (read from the artifact folder when None)."""
    from tqdm import tqdm

    from vcc.calib.images import load_image
    from vcc.reports.layers import ErrorStats
    from vcc.runtime.reference import OrtSession

    t0 = time.perf_counter()
    manifest = predictor.manifest
    pre = predictor.preprocess
    out_shape = manifest["outputs"][0]["shape"]
    if len(out_shape) != 4:
        raise VccError(f"the artifact's output {out_shape} is not an NCHW class map")
    classes = int(out_shape[1])
    if data.labelled and classes != len(data.class_names):
        raise VccError(f"the artifact outputs {classes} classes, the {data.dataset} labels have "
                       f"{len(data.class_names)} ({', '.join(data.class_names[:6])}, ...)")
    ref = Path(ref) if ref is not None else None
    ort = OrtSession(ref, threads=settings.threads) if ref is not None else None
    analysis, layers_method = _layer_analysis(predictor, ref, calibration, settings)
    cmp = OutputComparison() if ort is not None else None
    conf_ref = np.zeros((classes, classes), np.int64)
    conf_art = np.zeros((classes, classes), np.int64)
    sim = ErrorStats()
    sim_agree = sim_pixels = 0
    worst = _Worst(settings.worst_images)
    names = _display_names(data.images)
    rows = []
    for i, path in enumerate(tqdm(data.images, desc="evaluating", unit="img", file=sys.stderr,
                                  disable=not settings.progress, leave=False)):
        x = load_image(path, pre)
        art = predictor(x)
        ref_y = ort.run(x)[0] if ort is not None else None
        row = cmp.add(ref_y, art, name=names[path]) if cmp is not None else {"name": names[path]}
        if analysis is not None and i < settings.layer_images:
            q = analysis.add(x)
            sim.add(q, art)
            sim_agree += int(np.count_nonzero(q.argmax(1) == art.argmax(1)))
            sim_pixels += q[:, 0].size
        label = data.labels[path]() if path in data.labels else None
        if label is not None:
            c_art = confusion_matrix(argmax_at(art, label.shape), label, classes)
            conf_art += c_art
            row["miou_artifact"] = mean_iou(c_art)
            row["pixel_accuracy_artifact"] = pixel_accuracy(c_art)
            if ref_y is not None:
                c_ref = confusion_matrix(argmax_at(ref_y, label.shape), label, classes)
                conf_ref += c_ref
                row["miou_ref"] = mean_iou(c_ref)
        rank = row.get("agreement", row.get("pixel_accuracy_artifact", 0.0))
        worst.offer(rank if math.isfinite(rank) else 0.0, i,
                    lambda path=path, art=art, ref_y=ref_y, label=label, row=row: _picture_data(
                        path, row, art, ref_y, label))
        rows.append(row)
    doc: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "vcc_version": vcc.__version__,
        "artifact": {"path": str(predictor.path) if getattr(predictor, "path", None) else None,
                     "dtype": manifest.get("dtype"),
                     "source_model": manifest.get("source_model"),
                     "input_shape": manifest["inputs"][0]["shape"]},
        "reference": _reference_info(ref, manifest),
        "images": len(rows),
        "excluded_images": data.excluded,
    }
    if cmp is not None:
        summary = cmp.summary()
        summary.pop("per_image")
        summary.pop("images")
        doc.update(summary)
    if data.labelled:
        doc.update(_ground_truth(data, conf_ref if ort is not None else None, conf_art))
    doc["layers"] = analysis.records(_blocks(manifest)) if analysis is not None else []
    if analysis is not None:
        layers_method["images"] = analysis.images
        layers_method["simulation_vs_artifact"] = {
            "agreement": sim_agree / sim_pixels if sim_pixels else math.nan,
            "sqnr_db": sim.sqnr_db, "rel_error": sim.rel_error, "cosine": sim.cosine}
    doc["layers_method"] = layers_method
    doc["per_image"] = rows
    picked = worst.items()
    doc["worst_images"] = [p["name"] for p in picked]
    doc["gates"] = []
    doc["seconds"] = round(time.perf_counter() - t0, 3)
    doc["severity"], doc["verdict"] = _verdict(doc)
    return AccuracyReport(doc, [_pictures(p, pre.size) for p in picked])


def _reference_info(ref: Path | None, manifest: dict) -> dict | None:
    from vcc.runtime.artifact import sha256_file

    if ref is None:
        return None
    sha = sha256_file(ref)
    source = (manifest.get("source_model") or {}).get("sha256")
    return {"file": str(ref), "sha256": sha, "is_artifact_source": sha == source if source else None}


def _blocks(manifest: dict) -> dict[str, str | None]:
    """The block names the manifest states (nodes without a "block" key are left to the IR's
    recognised blocks, see LayerAnalysis.records)."""
    return {n["name"]: n["block"] for n in manifest.get("nodes", []) if "name" in n and "block" in n}


def _picture_data(path: Path, row: dict, art: np.ndarray, ref_y: np.ndarray | None,
                  label: np.ndarray | None) -> dict:
    """What the report draws of one image, at the model's size (kept only for the worst few)."""
    h, w = art.shape[2:]
    lab = None
    if label is not None:
        lab = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return {"name": row["name"], "path": path, "row": dict(row), "art": art[0].argmax(0).astype(np.uint8),
            "ref": ref_y[0].argmax(0).astype(np.uint8) if ref_y is not None else None, "label": lab}
