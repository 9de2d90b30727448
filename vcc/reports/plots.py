"""Plots for self-contained HTML reports: hand-written inline SVG and base64 PNG data URIs.

Nothing here touches the network or needs a plotting library: an SVG is a string the report
template inlines, a picture is a `data:image/png;base64,...` URI.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np
from PIL import Image

from vcc.reports.palette import voc_palette

SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
THRESHOLD_COLOR = "#d62728"
OWN_THRESHOLD_COLOR = "#ff7f0e"


def _num(v: float) -> str:
    """A coordinate with two decimals (keeps the SVG small and deterministic)."""
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _short(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.3g}"


def histogram_svg(bins: Sequence[int], amax: float, threshold: float | None = None,
                  own_threshold: float | None = None, width: int = 320, height: int = 80,
                  log: bool = True, title: str = "") -> str:
    """Bars of a |x| histogram over [0, amax] (log counts by default), the clipped range beyond
    `threshold` shaded and the threshold drawn as a red line; `own_threshold` (the tensor's own
    when a shared-scale group took a larger one) as a dashed orange line."""
    counts = np.asarray(bins, dtype=np.float64)
    pad_b = 14
    ph = height - pad_b
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="hist" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">']
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    parts.append(f'<rect x="0" y="0" width="{width}" height="{ph}" fill="#f7f7f7"/>')
    if counts.size and amax > 0 and counts.max() > 0:
        scaled = np.log10(1 + counts) / np.log10(1 + counts.max()) if log else counts / counts.max()
        bw = width / counts.size
        if threshold is not None and threshold < amax:
            x = width * threshold / amax
            parts.append(f'<rect x="{_num(x)}" y="0" width="{_num(width - x)}" height="{ph}" '
                         f'fill="{THRESHOLD_COLOR}" fill-opacity="0.08"/>')
        path = []
        for k, s in enumerate(scaled):
            if s <= 0:
                continue
            h = max(0.5, s * (ph - 2))
            path.append(f"M{_num(k * bw)} {ph}v{_num(-h)}h{_num(bw)}v{_num(h)}z")
        parts.append(f'<path d="{"".join(path)}" fill="#4c72b0"/>')
        for t, color, dash in ((own_threshold, OWN_THRESHOLD_COLOR, ' stroke-dasharray="3 2"'),
                               (threshold, THRESHOLD_COLOR, "")):
            if t is None or (t == threshold and color == OWN_THRESHOLD_COLOR):
                continue
            x = min(width - 1.0, width * t / amax)
            parts.append(f'<line class="threshold" x1="{_num(x)}" y1="0" x2="{_num(x)}" y2="{ph}" '
                         f'stroke="{color}" stroke-width="1.5"{dash}/>')
    else:
        parts.append(f'<text x="{width / 2}" y="{ph / 2}" font-size="10" text-anchor="middle">no data</text>')
    parts.append(f'<text x="1" y="{height - 3}" font-size="9">0</text>')
    parts.append(f'<text x="{width - 1}" y="{height - 3}" font-size="9" text-anchor="end">'
                 f'|x| max {_short(amax)}</text>')
    if threshold is not None and amax > 0:
        x = width * min(threshold, amax) / amax
        left_of = x > width / 2
        parts.append(f'<text x="{_num(x - 3 if left_of else x + 3)}" y="10" font-size="9" '
                     f'fill="{THRESHOLD_COLOR}" text-anchor="{"end" if left_of else "start"}">'
                     f'T {_short(threshold)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_plot_svg(series: Mapping[str, Sequence[float | None]], labels: Sequence[str] | None = None,
                  width: int = 900, height: int = 260, y_label: str = "", x_label: str = "") -> str:
    """Lines over a shared index axis (one point per item, e.g. per layer along depth), each point
    with a tooltip naming its label; None / NaN points break a line, +inf is drawn at the top."""
    left, right, top, bottom = 48, 12, 22, 34
    pw, ph = width - left - right, height - top - bottom
    finite = [v for vals in series.values() for v in vals
              if v is not None and math.isfinite(v)]
    n = max((len(v) for v in series.values()), default=0)
    lo = min(finite) if finite else 0.0
    hi = max(finite) if finite else 1.0
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    lo, hi = lo - 0.05 * span, hi + 0.05 * span

    def px(i: int) -> float:
        return left + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v: float) -> float:
        v = hi if v == math.inf else lo if v == -math.inf else v
        return top + ph * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lineplot" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fbfbfb" stroke="#ccc"/>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = py(v)
        parts.append(f'<line x1="{left}" y1="{_num(y)}" x2="{left + pw}" y2="{_num(y)}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{left - 4}" y="{_num(y + 3)}" font-size="10" text-anchor="end">{v:.1f}</text>')
    if y_label:
        parts.append(f'<text x="12" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
                     f'transform="rotate(-90 12 {top + ph / 2})">{escape(y_label)}</text>')
    if x_label:
        parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" font-size="11" text-anchor="middle">'
                     f'{escape(x_label)}</text>')
    if n:
        for i in sorted({0, n - 1, *range(0, n, max(1, n // 10))}):
            parts.append(f'<text x="{_num(px(i))}" y="{top + ph + 13}" font-size="10" '
                         f'text-anchor="middle">{i}</text>')
    for (name, vals), color in zip(series.items(), SERIES_COLORS * 4, strict=False):
        segments, cur = [], []
        for i, v in enumerate(vals):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                if cur:
                    segments.append(cur)
                cur = []
                continue
            cur.append((px(i), py(v)))
        if cur:
            segments.append(cur)
        for seg in segments:
            pts = " ".join(f"{_num(x)},{_num(y)}" for x, y in seg)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for i, v in enumerate(vals):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            tip = f"{labels[i] if labels is not None else i}: {name} {v:.2f}"
            parts.append(f'<circle cx="{_num(px(i))}" cy="{_num(py(v))}" r="2.5" fill="{color}">'
                         f"<title>{escape(tip)}</title></circle>")
    for k, name in enumerate(series):
        x = left + 10 + 170 * k
        color = SERIES_COLORS[k % len(SERIES_COLORS)]
        parts.append(f'<rect x="{x}" y="{top - 12}" width="12" height="3" fill="{color}"/>')
        parts.append(f'<text x="{x + 16}" y="{top - 7}" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- pictures -----------------------------------------------------------------------------

def png_data_uri(rgb: np.ndarray) -> str:
    """(H, W, 3) or (H, W) uint8 -> a data:image/png;base64 URI."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8))).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def color_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 in the VOC palette (255, ignore, in its cream)."""
    return voc_palette(256)[np.asarray(mask, dtype=np.int64) % 256]


def diff_map(ref: np.ndarray, test: np.ndarray, photo: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: pixels whose class differs in red, the rest a faded grey photo (or
    light grey without one)."""
    same = np.asarray(ref) == np.asarray(test)
    if photo is not None:
        grey = np.asarray(photo, dtype=np.float32).mean(axis=2, keepdims=True)
        base = (160 + grey * 0.35).clip(0, 255).repeat(3, axis=2)
    else:
        base = np.full((*same.shape, 3), 220.0, dtype=np.float32)
    out = base.astype(np.uint8)
    out[~same] = (220, 20, 20)
    return out


def thumbnail(rgb: np.ndarray, max_side: int = 256, nearest: bool = False) -> np.ndarray:
    """Shrink (H, W, 3) uint8 so its longer side is at most `max_side` (masks: nearest)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    k = max_side / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    im = Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8)))
    return np.asarray(im.resize(size, Image.NEAREST if nearest else Image.BILINEAR))
