"""The accuracy report's verdict (a severity and one line of text, from the document's figures)
and the CI gates (--min-agreement, --max-miou-drop) that check_gates records in the document.
"""

from __future__ import annotations

import math

from vcc.errors import VccError
from vcc.reports.accuracy_document import AccuracyReport


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


def summary_line(doc: dict) -> str:
    """accuracy.json's artifact-vs-fp32 figures in one line (`vcc summary`)."""
    dtype = doc["artifact"].get("dtype") or "artifact"
    parts = [f"{dtype} vs fp32 on {doc['images']} photos:"]
    if doc.get("agreement") is not None:
        parts.append(f"argmax agreement {100 * doc['agreement']:.2f}%, SQNR {_db_text(doc['sqnr_db'])}")
    if "miou_ref" in doc:
        fg = [c for c in doc["per_class"][1:] if c["iou_ref"] is not None and c["iou_artifact"] is not None]
        classes = "".join(f", {c['name']} IoU {100 * c['iou_ref']:.2f} -> {100 * c['iou_artifact']:.2f}"
                          for c in fg[:3])
        parts.append(f"| {doc['labels']['dataset']} labels ({doc['labels']['images']}): mIoU "
                     f"{100 * doc['miou_ref']:.2f} -> {100 * doc['miou_artifact']:.2f} "
                     f"({-doc['miou_drop_points']:+.2f} points){classes}")
    return " ".join(parts)


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
