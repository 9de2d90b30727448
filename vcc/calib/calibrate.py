"""Calibration: observe the planned tensors over the calibration set, pick thresholds, and keep
the result (and its cache key) as a deterministic JSON document.

The observed tensors come out of ONNX Runtime running the fp32 IR exported with those tensors as
extra graph outputs; each feeds a streaming :class:`HistogramObserver`, so memory does not grow
with the number of images.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import vcc
from vcc.calib.dataset import CalibrationSource
from vcc.calib.observers import HistogramObserver
from vcc.calib.thresholds import compute_threshold
from vcc.errors import VccError
from vcc.ir.graph import Graph
from vcc.passes.blocks import block_of
from vcc.passes.quantize import QuantPlan, TensorQuant, resolve_group_quant

METHODS = ("kl", "kl-mxnet", "percentile", "minmax", "mse")
REPORT_BINS = 128
CACHE_FORMAT = 1
# the revision of the quantization scheme's calibration rules (which tensors take which method,
# how group thresholds combine): bump it when a rule changes so older caches read as stale
SCHEME_REVISION = 2


@dataclass(frozen=True)
class CalibrationSettings:
    method: str = "kl"
    percentile: float = 99.99
    num_calib: int = 50
    threads: int | None = None

    def method_params(self) -> dict:
        return {"percentile": self.percentile} if self.method == "percentile" else {}


@dataclass
class Calibration:
    """The result: the document written as calibration.json, and the per-tensor quantization."""

    document: dict
    quant: dict[str, TensorQuant]
    seconds: float = 0.0
    from_cache: bool = False
    observers: dict[str, HistogramObserver] = field(default_factory=dict)


def plan_digest(plan: QuantPlan) -> str:
    """sha256 of what the plan quantizes: its nodes, tensors and shared-scale groups (a build with
    another --fallback or other block rules must not reuse the scales)."""
    doc = {"nodes": sorted(plan.nodes), "groups": sorted(plan.groups.items())}
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def cache_key(model_sha256: str, source: CalibrationSource, preprocess: dict | None,
              settings: CalibrationSettings, plan: QuantPlan) -> dict:
    return {
        "plan_sha256": plan_digest(plan),
        "scheme_revision": SCHEME_REVISION,
        "model_sha256": model_sha256,
        "calibration_set_sha256": source.fingerprint(),
        "calibration_files": len(source),
        "preprocess": ({k: v for k, v in preprocess.items() if k != "source"} if preprocess else None),
        "method": settings.method,
        "method_params": settings.method_params(),
        "num_calib": settings.num_calib,
        "vcc_version": vcc.__version__,
    }


def collect_statistics(graph: Graph, tensors: list[str], source: CalibrationSource,
                       threads: int | None = None, progress: bool = True) -> tuple[dict[str, HistogramObserver], int]:
    from tqdm import tqdm

    from vcc.frontends.onnx_export import export_onnx
    from vcc.runtime.reference import OrtSession

    sess = OrtSession(export_onnx(graph, extra_outputs=tensors), threads=threads)
    observers = {t: HistogramObserver(t) for t in tensors}
    images = 0
    with tqdm(total=len(source), desc="calibrating", unit="img", disable=not progress, file=sys.stderr,
              leave=False) as bar:  # closed (its line cleared) before an error propagates
        for x in source:
            outs = sess.run(x, outputs=tensors) if tensors else []  # a plan with nothing int8
            for t, arr in zip(tensors, outs, strict=True):
                observers[t].observe(arr)
            images += 1
            bar.update(1)
    if images == 0:
        raise VccError(f"{source.folder}: no calibration input could be read")
    return observers, images


def _tensor_record(name: str, group: str, obs: HistogramObserver, own, q: TensorQuant,
                   block: str | None) -> dict:
    hist = np.asarray(obs.hist_abs)
    factor = max(1, hist.size // REPORT_BINS)
    coarse = hist[: hist.size // factor * factor].reshape(-1, factor).sum(axis=1)
    clipped = float(hist[np.searchsorted(obs.abs_edges[1:], q.threshold, side="right") + 1:].sum()) / max(1, int(hist.sum()))
    return {
        "name": name,
        "block": block,
        "group": group,
        "dtype": q.dtype,
        "scale": q.scale,
        "zero_point": 0,
        "threshold": q.threshold,
        "own_threshold": own.threshold,
        "method": own.method,
        "kl": own.kl,
        "min": obs.min,
        "max": obs.max,
        "amax": obs.amax,
        "clipped_fraction": clipped,
        "count": obs.count,
        "histogram": {"amax": obs.amax, "bins": [int(v) for v in coarse]},
    }


def _tensor_blocks(graph: Graph) -> dict[str, str]:
    """tensor -> the recognised block whose node produces it (graph inputs and tensors made
    outside blocks are absent)."""
    blocks = block_of(graph)
    return {out: blocks[n.name] for n in graph.nodes if n.name in blocks for out in n.outputs}


def bounded_tensors(graph: Graph) -> set[str]:
    """Outputs of a Clip with a finite upper bound (ReLU6 and kin). They take their observed
    range (minmax, at most the bound) whatever the method: the values piled up at the bound are
    signal, and a KL / percentile threshold below it would clip that whole spike (measured on the
    trained MobileNetV2 U-Net: KL clipped early ReLU6 outputs at 3.7 and 4.3 of 6, costing ~1.3
    points of argmax agreement with fp32 against minmax there)."""
    out = set()
    for n in graph.nodes:
        if n.op != "Clip":
            continue
        if np.isfinite(float(n.attrs.get("max", np.inf))):
            out.add(n.outputs[0])
    return out


def calibrate(graph: Graph, plan: QuantPlan, source: CalibrationSource, model_sha256: str,
              preprocess: dict | None, settings: CalibrationSettings,
              cache_file: str | os.PathLike | None = None, progress: bool = True) -> Calibration:
    """Observe, threshold and assemble; with `cache_file`, reuse a matching cache (and refuse a
    stale one) or write a new one."""
    if settings.method not in METHODS:
        raise VccError(f"unknown --calib-method {settings.method!r}; known: {', '.join(METHODS)}")
    key = cache_key(model_sha256, source, preprocess, settings, plan)
    if cache_file is not None and Path(cache_file).exists():
        return _from_cache(Path(cache_file), key, plan)
    t0 = time.perf_counter()
    observers, images = collect_statistics(graph, plan.tensors, source, settings.threads, progress)
    bounded = bounded_tensors(graph)
    blocks = _tensor_blocks(graph)
    own = {t: compute_threshold("minmax", observers[t], observers[t].nonneg) if t in bounded else
           compute_threshold(settings.method, observers[t], observers[t].nonneg, **settings.method_params())
           for t in plan.tensors}
    quant = resolve_group_quant(plan, {t: r.threshold for t, r in own.items()},
                                {t: observers[t].nonneg for t in plan.tensors})
    document = {
        "format": CACHE_FORMAT,
        "key": key,
        "summary": {
            "images_used": images,
            "skipped": [str(Path(s).name) for s in source.skipped],
            "source_kind": source.kind,
            "tensors": len(plan.tensors),
            "quantized_nodes": len(plan.nodes),
            "fp32_nodes": dict(sorted(plan.skipped.items())),
            "method": settings.method,
            "method_params": settings.method_params(),
        },
        "tensors": [_tensor_record(t, plan.groups[t], observers[t], own[t], quant[t], blocks.get(t))
                    for t in plan.tensors],
    }
    seconds = time.perf_counter() - t0
    if cache_file is not None:
        write_json(Path(cache_file), document)
    return Calibration(document, quant, seconds, False, observers)


def _from_cache(path: Path, key: dict, plan: QuantPlan) -> Calibration:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VccError(f"{path}: unreadable calibration cache ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or "key" not in doc:
        raise VccError(f"{path}: not a vcc calibration cache")
    if doc["key"] != key:
        diffs = [k for k in sorted(set(key) | set(doc["key"])) if key.get(k) != doc["key"].get(k)]
        raise VccError(f"{path}: stale calibration cache: it was made for other inputs "
                       f"(differs in {', '.join(diffs)}); delete it or point --calib-cache elsewhere")
    records = {r["name"]: r for r in doc["tensors"]}
    missing = [t for t in plan.tensors if t not in records]
    if missing:
        raise VccError(f"{path}: calibration cache lacks tensors {missing[:5]}; delete it to recalibrate")
    quant = {t: TensorQuant(float(records[t]["scale"]), records[t]["dtype"], float(records[t]["threshold"]))
             for t in plan.tensors}
    return Calibration(doc, quant, 0.0, True)


def write_json(path: Path, document: dict) -> None:
    """Deterministic JSON (sorted keys, fixed float repr), written atomically."""
    text = json.dumps(document, indent=1, sort_keys=True, allow_nan=True) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def document_digest(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
