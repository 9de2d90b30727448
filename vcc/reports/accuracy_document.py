"""accuracy.json's document and how it is written out: AccuracyReport (the document and the
pictures of the lowest-agreement images), the JSON (clean: undefined or infinite figures are null)
and the self-contained accuracy.html with those images drawn inline.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vcc.errors import VccError

JSON_NAME = "accuracy.json"
HTML_NAME = "accuracy.html"


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
