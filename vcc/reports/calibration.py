"""The calibration report: calibration.json rendered as a self-contained calibration.html.

Per tensor: the method, the observed range, the threshold (its own and the one its shared-scale
group uses), scale, zero point, the fraction of calibration values clipped, the KL divergence
where the method has one, and the |x| histogram with the threshold drawn. The summary gives the
inputs used, the time spent and the cache key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vcc.errors import VccError
from vcc.reports.plots import histogram_svg
from vcc.reports.templates import render

HIGH_CLIPPING = 0.01  # rows above this fraction of clipped values are highlighted


def _tensor_row(rec: dict[str, Any]) -> dict[str, Any]:
    try:
        hist = rec["histogram"]
        row = {
            "name": rec["name"], "group": rec.get("group", rec["name"]), "dtype": rec["dtype"],
            "method": rec.get("method", ""), "min": rec.get("min"), "max": rec.get("max"),
            "threshold": float(rec["threshold"]), "own_threshold": rec.get("own_threshold"),
            "scale": float(rec["scale"]), "zero_point": rec.get("zero_point", 0),
            "clipped_fraction": float(rec.get("clipped_fraction") or 0.0), "kl": rec.get("kl"),
            "block": rec.get("block"),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise VccError(f"calibration document: tensor record {rec.get('name', '?')!r} lacks {e}") from e
    own = row["own_threshold"]
    row["svg"] = histogram_svg(hist.get("bins", []), float(hist.get("amax", 0.0)), row["threshold"],
                               float(own) if own is not None and own != row["threshold"] else None,
                               title=f"{rec['name']}: |x| histogram, threshold {row['threshold']:.4g}")
    return row


def _time_text(seconds: float, from_cache: bool) -> str:
    if from_cache:
        return "reused from the calibration cache (no images run in this build)"
    return f"{seconds:.2f} s (observing, threshold search)"


def render_calibration_html(document: dict[str, Any], seconds: float = 0.0,
                            from_cache: bool = False) -> str:
    """The HTML of a calibration.json document."""
    try:
        records = document["tensors"]
        summary_in = document["summary"]
        key = document["key"]
    except (KeyError, TypeError) as e:
        raise VccError(f"not a calibration document: it lacks {e}") from e
    tensors = [_tensor_row(r) for r in records]
    worst = max(tensors, key=lambda t: t["clipped_fraction"], default=None)
    summary = {
        "method": summary_in.get("method", key.get("method")),
        "method_params": summary_in.get("method_params", {}),
        "images_used": summary_in.get("images_used", 0),
        "source_kind": summary_in.get("source_kind", "inputs"),
        "skipped": summary_in.get("skipped", []),
        "tensors": len(tensors),
        "groups": len({t["group"] for t in tensors}),
        "unsigned": sum(t["dtype"] == "uint8" for t in tensors),
        "signed": sum(t["dtype"] != "uint8" for t in tensors),
        "quantized_nodes": summary_in.get("quantized_nodes", "-"),
        "fp32_nodes": summary_in.get("fp32_nodes", {}),
        "time": _time_text(seconds, from_cache),
        "worst_clipped_fraction": worst["clipped_fraction"] if worst else 0.0,
    }
    verdict = (f"{len(tensors)} tensors calibrated with {summary['method']} on "
               f"{summary['images_used']} {summary['source_kind']}")
    if worst is not None:
        verdict += (f"; most clipped: {worst['name']} ({100 * worst['clipped_fraction']:.3f}% of "
                    f"values beyond its threshold)")
    return render("calibration.html.j2", summary=summary, key=key, tensors=tensors, verdict=verdict)


def write_calibration_html(path: str | os.PathLike, calibration: Any) -> Path:
    """Write calibration.html for a :class:`vcc.calib.calibrate.Calibration`."""
    path = Path(path)
    html = render_calibration_html(calibration.document, float(getattr(calibration, "seconds", 0.0)),
                                   bool(getattr(calibration, "from_cache", False)))
    path.write_text(html, encoding="utf-8")
    return path
