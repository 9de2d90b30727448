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
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import vcc
from vcc.errors import VccError
from vcc.reports.labels import (
    CELEBAMASK_REMAPS,
    DATASETS,
    LabelledSet,
    LabelRef,
    celebamask_remap_table,
)
from vcc.reports.metrics import (
    OutputComparison,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)

log = logging.getLogger(__name__)

REPORT_FORMAT = 1
JSON_NAME = "accuracy.json"
HTML_NAME = "accuracy.html"
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


# --- the evaluation set -------------------------------------------------------------------------

@dataclass(frozen=True)
class AccuracySettings:
    threads: int | None = None  # ONNX Runtime threads
    layers: bool = True  # per-layer analysis (int8 artifacts with their reference model)
    layer_images: int = 8  # images the per-layer analysis runs on
    worst_images: int = 4  # lowest-agreement images drawn in the report
    progress: bool = True


@dataclass
class EvalSet:
    """The photos to evaluate on and, for a labelled dataset, each photo's label."""

    images: list[Path]
    labels: dict[Path, LabelRef] = field(default_factory=dict)
    dataset: str | None = None
    root: Path | None = None
    remap: str | None = None
    class_names: list[str] = field(default_factory=list)
    excluded: int = 0  # photos left out (used for calibration)
    unpaired: int = 0  # photos of a labelled dataset without a label

    @property
    def labelled(self) -> bool:
        return self.dataset is not None


def parse_dataset(text: str) -> tuple[str, Path | None]:
    """'voc' -> ('voc', None); 'voc:DIR' -> ('voc', DIR)."""
    name, _, root = text.partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        raise VccError(f"unknown dataset {name!r} in {text!r}; known: {', '.join(DATASETS)} "
                       f"(as NAME or NAME:DIR)")
    return name, Path(root) if root else None


def _class_names(name: str, remap: str | None) -> list[str]:
    if remap is not None:
        if name != "celebamask":
            raise VccError(f"--remap {remap!r} applies to celebamask labels only, not {name}")
        celebamask_remap_table(remap)
        return list(CELEBAMASK_REMAPS[remap])
    return list(DATASETS[name].classes)


_LABEL_NAMES = (("_image", "_target"), ("_leftImg8bit", "_gtFine_labelTrainIds"))


def _pair_by_name(name: str, photos: list[Path], labels_dir: Path, remap: str | None) -> dict[Path, LabelRef]:
    """Photos in one folder, labels in another: `<stem>.png`, or the dataset's label name."""
    out = {}
    for p in photos:
        stems = [p.stem] + [p.stem.replace(a, b) for a, b in _LABEL_NAMES if a in p.stem]
        for s in stems[::-1]:
            cand = labels_dir / f"{s}.png"
            if cand.is_file() and cand.resolve() != p.resolve():
                out[p] = LabelRef(cand, p, name, remap)
                break
    return out


def _is_under(path: Path, folder: Path) -> bool:
    """Whether `path` is in `folder` as named (symbolic links are not followed)."""
    return Path(os.path.abspath(folder)) in Path(os.path.abspath(path)).parents


def eval_set(images: str | os.PathLike | None = None, dataset: str | None = None,
             labels: str | os.PathLike | None = None, remap: str | None = None, limit: int | None = None,
             exclude: Iterable[str | os.PathLike] = ()) -> EvalSet:
    """The evaluation photos: a folder of photos (`images`), or a labelled dataset given as
    `dataset='voc:DIR'`, or `dataset='voc'` with `labels=DIR` (the dataset root holding photos and
    labels; with `images` too, only the photos under `images` count, and when `images` is a folder
    of its own its photos are paired by name with the labels in DIR). `exclude` leaves photos out
    (those used for calibration); `limit` keeps the first N."""
    from vcc.calib.images import list_images

    name, root = parse_dataset(dataset) if dataset else (None, None)
    if labels is not None:
        if name is None:
            raise VccError("--labels needs --dataset voc|celebamask|cityscapes|binary")
        if root is not None and Path(root).resolve() != Path(labels).resolve():
            raise VccError(f"two label folders given ({root} and {labels}); give one")
        root = Path(labels)
    if remap is not None and name is None:
        raise VccError("--remap needs a labelled dataset (--dataset celebamask:DIR)")
    skip = {Path(p).resolve() for p in exclude}
    if name is None:
        if images is None:
            raise VccError("no evaluation images: give a folder of photos or a labelled dataset")
        found = list_images(images)
        photos = [p for p in found if p.resolve() not in skip]
        return _limited(EvalSet(photos, excluded=len(found) - len(photos)), limit)
    if root is None:
        if images is None:
            raise VccError(f"dataset {name} needs its folder: {name}:DIR")
        root = Path(images)
    class_names = _class_names(name, remap)
    pairs: dict[Path, LabelRef] = {}
    unpaired = 0
    try:
        ls = LabelledSet(name, root, remap)
        pairs = dict(iter(ls))
        unpaired = len(ls.unpaired)
    except VccError:
        if images is None or Path(images).resolve() == Path(root).resolve():
            raise
    if images is not None and Path(images).resolve() != Path(root).resolve():
        inside = {p: r for p, r in pairs.items() if _is_under(p, Path(images))}
        if inside:
            pairs = inside
        else:
            photos = list_images(images)
            pairs = _pair_by_name(name, photos, Path(root), remap)
            unpaired = len(photos) - len(pairs)
            if not pairs:
                raise VccError(f"{images}: none of its {len(photos)} photos has a {name} label in {root}")
    kept = {p: r for p, r in sorted(pairs.items()) if p.resolve() not in skip}
    ev = EvalSet(list(kept), kept, name, Path(root), remap, class_names,
                 excluded=len(pairs) - len(kept), unpaired=unpaired)
    return _limited(ev, limit)


def eval_set_from_spec(spec: str, exclude: Iterable[str | os.PathLike] = (),
                       limit: int | None = None) -> EvalSet:
    """`vcc build --eval SPEC`: a folder of photos (DIR), or a labelled dataset (NAME:DIR)."""
    name, sep, _ = spec.partition(":")
    if sep and name.strip().lower() in DATASETS:
        return eval_set(None, spec, exclude=exclude, limit=limit)
    return eval_set(spec, exclude=exclude, limit=limit)


def _limited(ev: EvalSet, limit: int | None) -> EvalSet:
    if limit:
        ev.images = ev.images[:limit]
        ev.labels = {p: ev.labels[p] for p in ev.images if p in ev.labels}
    if not ev.images:
        raise VccError("no evaluation images left" + (f" ({ev.excluded} were used for calibration)"
                                                      if ev.excluded else ""))
    return ev


# --- helpers --------------------------------------------------------------------------------------

def argmax_at(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(1, C, h, w) logits -> (H, W) class map at `size`, resizing each class map bilinearly
    (half-pixel centres, as align_corners=False) when the sizes differ."""
    y = np.asarray(logits, dtype=np.float32)[0]
    if y.shape[1:] == tuple(size):
        return y.argmax(0)
    h, w = size
    up = np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BILINEAR)) for c in y])
    return up.argmax(0)


def clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities -> None, numpy scalars -> Python, recursively."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _nan_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


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

@dataclass
class AccuracyReport:
    """accuracy.json's document, and the pictures of the lowest-agreement images for the HTML."""

    document: dict
    pictures: list[dict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(clean(self.document), indent=1, allow_nan=False) + "\n"

    def write_json(self, path: str | os.PathLike) -> Path:
        Path(path).write_text(self.to_json(), encoding="utf-8")
        return Path(path)

    def html(self) -> str:
        return render_accuracy_html(self)

    def write_html(self, path: str | os.PathLike) -> Path:
        Path(path).write_text(self.html(), encoding="utf-8")
        return Path(path)

    def write(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """accuracy.json and accuracy.html in `out_dir` (created)."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise VccError(f"{out}: exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        return self.write_json(out / JSON_NAME), self.write_html(out / HTML_NAME)


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


def _picture_data(path: Path, row: dict, art: np.ndarray, ref_y: np.ndarray | None,
                  label: np.ndarray | None) -> dict:
    """What the report draws of one image, at the model's size (kept only for the worst few)."""
    h, w = art.shape[2:]
    lab = None
    if label is not None:
        lab = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return {"name": row["name"], "path": path, "row": dict(row), "art": art[0].argmax(0).astype(np.uint8),
            "ref": ref_y[0].argmax(0).astype(np.uint8) if ref_y is not None else None, "label": lab}


def _pictures(p: dict, size: tuple[int, int]) -> dict:
    from vcc.calib.images import read_rgb
    from vcc.reports.plots import color_mask, diff_map, png_data_uri, thumbnail

    h, w = size
    photo = np.asarray(read_rgb(p["path"]).resize((w, h), Image.BILINEAR))
    panels = [("input", thumbnail(photo))]
    if p["label"] is not None:
        panels.append(("label", thumbnail(color_mask(p["label"]), nearest=True)))
    if p["ref"] is not None:
        panels.append(("fp32", thumbnail(color_mask(p["ref"]), nearest=True)))
    panels.append(("artifact", thumbnail(color_mask(p["art"]), nearest=True)))
    if p["ref"] is not None:
        panels.append(("difference (red: class differs)",
                       thumbnail(diff_map(p["ref"], p["art"], photo), nearest=True)))
    elif p["label"] is not None:
        lab = np.where(p["label"] == 255, p["art"], p["label"])
        panels.append(("errors vs label (red)", thumbnail(diff_map(lab, p["art"], photo), nearest=True)))
    return {"name": p["name"], "row": clean(p["row"]),
            "panels": [{"caption": c, "uri": png_data_uri(a)} for c, a in panels]}


# --- verdict and gates ------------------------------------------------------------------------------

def _verdict(doc: dict) -> tuple[str, str]:
    dtype = doc["artifact"].get("dtype") or "the"
    parts = []
    severity = "ok"
    agreement = doc.get("agreement")
    if agreement is not None:
        parts.append(f"{dtype} artifact vs fp32 on {doc['images']} images: {100 * agreement:.2f}% of "
                     f"pixels agree, mIoU vs fp32 {100 * doc['miou_vs_fp32']:.2f}, output SQNR "
                     f"{_db_text(doc['sqnr_db'])}")
        if agreement < 0.98:
            severity = "bad"
        elif agreement < 0.995:
            severity = "warn"
    if "miou_artifact" in doc:
        n = doc["labels"]["images"]
        if "miou_ref" in doc:
            drop = doc["miou_drop_points"]
            parts.append(f"mIoU against the {doc['labels']['dataset']} labels {100 * doc['miou_ref']:.2f} "
                         f"(fp32) -> {100 * doc['miou_artifact']:.2f} ({-drop:+.2f} points) on {n} images")
            if drop > 1.0:
                severity = "bad"
            elif drop > 0.3 and severity == "ok":
                severity = "warn"
        else:
            parts.append(f"mIoU against the {doc['labels']['dataset']} labels "
                         f"{100 * doc['miou_artifact']:.2f} on {n} images")
    if doc["layers"]:
        w = doc["layers"][0]
        parts.append(f"worst layer {w['node']} ({w['op']}, layerwise SQNR {_db_text(w['layerwise_sqnr_db'])})")
    failed = [g for g in doc.get("gates", []) if not g["passed"]]
    if failed:
        severity = "bad"
        parts.append("FAILED " + ", ".join(g["message"] for g in failed))
    return severity, "; ".join(parts) if parts else "no figures"


def _db_text(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "inf dB" if math.isinf(v) else f"{v:.1f} dB"


def check_gates(report: AccuracyReport, min_agreement: float | None = None,
                max_miou_drop: float | None = None) -> list[str]:
    """Apply the CI gates; returns the failure messages (and records every gate in the document).

    --min-agreement: the argmax agreement with fp32 (0..1). --max-miou-drop: in mIoU points
    (0..100): fp32 mIoU minus the artifact's against the labels when there are labels, else
    100 x (1 - mIoU of the artifact against the fp32 argmax)."""
    doc = report.document
    gates = []
    if min_agreement is not None:
        if "agreement" not in doc:
            raise VccError("--min-agreement needs the fp32 reference (--ref)")
        v = doc["agreement"]
        ok = v >= min_agreement
        gates.append({"gate": "min_agreement", "threshold": min_agreement, "value": v, "passed": ok,
                      "message": f"argmax agreement {100 * v:.3f}% {'>=' if ok else '<'} "
                                 f"--min-agreement {100 * min_agreement:.3f}%"})
    if max_miou_drop is not None:
        if "miou_drop_points" in doc:
            v, what = doc["miou_drop_points"], "mIoU drop against the labels"
        elif "miou_vs_fp32" in doc:
            v, what = 100.0 * (1.0 - doc["miou_vs_fp32"]), "mIoU drop against the fp32 argmax"
        else:
            raise VccError("--max-miou-drop needs the fp32 reference (--ref)")
        ok = v <= max_miou_drop
        gates.append({"gate": "max_miou_drop", "threshold": max_miou_drop, "value": v, "passed": ok,
                      "message": f"{what} {v:.3f} points {'<=' if ok else '>'} --max-miou-drop {max_miou_drop:g}"})
    doc["gates"] = gates
    doc["severity"], doc["verdict"] = _verdict(doc)
    return [g["message"] for g in gates if not g["passed"]]


# --- HTML ---------------------------------------------------------------------------------------------

TOP_LAYERS = 20


def render_accuracy_html(report: AccuracyReport) -> str:
    from vcc.reports.plots import line_plot_svg
    from vcc.reports.templates import render

    doc = clean(report.document)
    layers = doc["layers"]
    by_depth = sorted(layers, key=lambda r: r["depth"])
    plot = None
    if by_depth:
        plot = line_plot_svg({"graphwise SQNR (dB)": [r["graphwise_sqnr_db"] for r in by_depth],
                              "layerwise SQNR (dB)": [r["layerwise_sqnr_db"] for r in by_depth]},
                             labels=[f"{r['depth']} {r['node']}" for r in by_depth],
                             y_label="SQNR (dB)", x_label="quantized node, in graph order (depth)")
    per_image = sorted(doc["per_image"], key=lambda r: (r.get("agreement") if r.get("agreement") is not None
                                                        else r.get("pixel_accuracy_artifact") or 0.0))
    return render("accuracy.html.j2", doc=doc, worst_layers=layers[:TOP_LAYERS], layers_by_depth=by_depth,
                  plot=plot, pictures=report.pictures, per_image=per_image)
