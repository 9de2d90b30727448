"""`vcc build --max-drop D`: the fewest nodes to leave in fp32 so int8 stays within D points.

The metric is the mIoU of the simulated int8 model's argmax scored against the fp32 model's own
argmax ("mIoU vs fp32", as `vcc compare` reports it), on photos calibration did not use; the
drop is 100 x (1 - mIoU vs fp32) points. The simulation is the QDQ model the build would make
(ONNX Runtime, graph optimisation off): the compiled artifact reproduces it within rounding, and
the build checks the artifact itself at the end.

Search: the quantized nodes are ranked worst first by the error each adds on its own (layerwise
SQNR of the per-layer analysis, then graphwise), then the k worst move to fp32 with k found by
doubling (1, 2, 4, ...) until the budget holds and bisection between the last failing and the
first passing k, so a model of N quantized nodes needs about 2 log2(N) evaluations. This lives
in the driver: it composes the calibration's quantization, the passes' QDQ rewrite, the
reference runtime and the reports' metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vcc.errors import VccError
from vcc.ir.analysis import node_macs
from vcc.ir.graph import Graph
from vcc.passes.quantize import QuantPlan, TensorQuant, insert_qdq


@dataclass
class SearchStep:
    moved: int  # how many of the ranked nodes are in fp32 at this step
    drop: float  # points of mIoU vs fp32 lost by the simulated model
    agreement: float
    float_mac_share: float  # share of the model's conv / matmul MACs computed in fp32
    meets: bool

    def to_dict(self) -> dict:
        return {"moved": self.moved, "drop": round(self.drop, 4), "agreement": round(self.agreement, 6),
                "float_mac_share": round(self.float_mac_share, 6), "meets_budget": self.meets}


@dataclass
class SearchResult:
    budget: float
    images: list[str]
    ranked: list[dict]  # the quantized nodes worst first: node, op, layerwise / graphwise SQNR
    steps: list[SearchStep] = field(default_factory=list)
    chosen: int | None = None  # index in `steps` of the result (None: budget not met)
    inputs: list[np.ndarray] = field(default_factory=list, repr=False)  # the photos, preprocessed
    references: list[np.ndarray] = field(default_factory=list, repr=False)  # the fp32 outputs on them

    @property
    def met(self) -> bool:
        return self.chosen is not None

    @property
    def best(self) -> SearchStep:
        """The chosen step, else the one with the smallest drop (fewest moved on a tie)."""
        if self.chosen is not None:
            return self.steps[self.chosen]
        return min(self.steps, key=lambda s: (s.drop, s.moved))

    @property
    def moved_nodes(self) -> list[str]:
        return [r["node"] for r in self.ranked[:self.best.moved]]

    def to_dict(self) -> dict:
        best = self.best
        return {"budget_points": self.budget, "metric": "mIoU vs fp32 (simulated int8 model)",
                "images": self.images, "met": self.met, "evaluations": len(self.steps),
                "steps": [s.to_dict() for s in self.steps],
                "result": {**best.to_dict(), "nodes": self.moved_nodes},
                "fallback_option": "--fallback " + ",".join(self.moved_nodes) if self.moved_nodes else ""}

    def summary(self) -> str:
        b = self.best
        state = "met" if self.met else "NOT met"
        return (f"precision search: budget {self.budget:g} points {state} with {b.moved} node(s) in fp32 "
                f"({100 * b.float_mac_share:.1f}% of MACs), simulated drop {b.drop:.2f} points, "
                f"{len(self.steps)} evaluations on {len(self.images)} photos")


def float_mac_share(graph: Graph, int8_nodes: Sequence[str]) -> float:
    """Share of the conv / matmul MACs not in `int8_nodes`."""
    int8 = set(int8_nodes)
    total = left = 0
    for n in graph.nodes:
        m = node_macs(graph, n)
        total += m
        if n.name not in int8:
            left += m
    return left / total if total else 0.0


def search_fallback(graph: Graph, plan_for: Callable[[Sequence[str]], QuantPlan],
                    quant: dict[str, TensorQuant], inputs: Sequence[np.ndarray], names: Sequence[str],
                    budget: float, progress: Callable[[str], None] = lambda s: None) -> SearchResult:
    """`plan_for(extra_fallback)` gives the quantization plan with those nodes in fp32 (on top of
    the user's --fallback and the block rules); `quant` the activation quantization calibrated for
    the full plan (a smaller plan quantizes a subset of its tensors, with the same scales)."""
    from vcc.frontends.onnx_export import export_onnx
    from vcc.reports.layers import LayerAnalysis, QuantizedModel
    from vcc.reports.metrics import OutputComparison
    from vcc.runtime.reference import OrtSession

    if not inputs:
        raise VccError("--max-drop: no photos to measure the drop on")
    if not (budget >= 0 and math.isfinite(budget)):
        raise VccError(f"--max-drop {budget}: the budget is a number of mIoU points >= 0")
    full = plan_for(())
    reference = OrtSession(export_onnx(graph), optimize=False)
    refs = [reference.run(x)[0] for x in inputs]

    analysis = LayerAnalysis(QuantizedModel.make(graph, full, quant))
    for x in inputs:
        analysis.add(x)
    ranked = [{"node": r["node"], "op": r["op"], "layerwise_sqnr_db": r["layerwise_sqnr_db"],
               "graphwise_sqnr_db": r["graphwise_sqnr_db"]}
              for r in analysis.records() if not r["no_signal"]]
    result = SearchResult(budget, list(names), ranked, inputs=list(inputs), references=refs)
    seen: dict[int, int] = {}

    def evaluate(k: int) -> SearchStep:
        if k in seen:
            return result.steps[seen[k]]
        plan = plan_for([r["node"] for r in ranked[:k]])
        missing = [t for t in plan.tensors if t not in quant]
        if missing:
            raise VccError(f"precision search: tensors {missing[:3]} of a reduced plan were not calibrated")
        session = OrtSession(export_onnx(insert_qdq(graph, plan, quant)), optimize=False)
        cmp = OutputComparison()
        for x, ref in zip(inputs, refs, strict=True):
            cmp.add(ref, session.run(x)[0])
        s = cmp.summary()
        drop = 100.0 * (1.0 - s["miou_vs_fp32"])
        step = SearchStep(k, drop, s["agreement"], float_mac_share(graph, plan.nodes), drop <= budget)
        seen[k] = len(result.steps)
        result.steps.append(step)
        progress(f"  precision search: {k:4d} node(s) in fp32 -> drop {drop:.2f} points, "
                 f"agreement {100 * s['agreement']:.2f}%, {100 * step.float_mac_share:.1f}% MACs in fp32"
                 f"{'  (meets the budget)' if step.meets else ''}")
        return step

    if evaluate(0).meets:
        result.chosen = seen[0]
        return result
    lo, hi = 0, None  # lo fails; hi (when found) meets
    k = 1
    while k < len(ranked):
        if evaluate(k).meets:
            hi = k
            break
        lo, k = k, 2 * k
    if hi is None and ranked:
        if evaluate(len(ranked)).meets:
            hi = len(ranked)
    if hi is None:
        return result
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if evaluate(mid).meets:
            hi = mid
        else:
            lo = mid
    result.chosen = seen[hi]
    return result
