"""The jinja2 templates of vcc's HTML reports (package data beside this file) and their filters.

Reports are self-contained: the templates link nothing, load no script or font; plots arrive
as inline SVG or data URIs.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import jinja2
from markupsafe import Markup

TEMPLATE_DIR = Path(__file__).resolve().parent


def fmt_num(v: object, digits: int = 4) -> str:
    """A number for a table cell: `digits` significant digits, '-' for None / NaN."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    return str(v)


def fmt_pct(v: object, digits: int = 2) -> str:
    """A fraction as a percentage: 0.9912 -> '99.12%'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * float(v):.{digits}f}%"


def fmt_db(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.1f}"


def fmt_points(v: object) -> str:
    """A 0..1 figure as points (x100), signed: -0.0123 -> '-1.23'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * float(v):+.2f}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(num=fmt_num, pct=fmt_pct, db=fmt_db, points=fmt_points, svg=Markup)
    return env


def render(name: str, **context: object) -> str:
    """Render `name` (a file in this folder) with `context`."""
    return environment().get_template(name).render(**context)
