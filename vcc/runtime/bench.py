"""Latency measurement: the same input, the same threads, warm-up excluded, medians."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    min_ms: float
    runs: int

    def to_dict(self) -> dict:
        return {"median_ms": round(self.median_ms, 3), "p90_ms": round(self.p90_ms, 3),
                "min_ms": round(self.min_ms, 3), "runs": self.runs}


def measure(fn: Callable[[], object], runs: int = 10, warmup: int = 2) -> Latency:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    return Latency(float(np.median(arr)), float(np.percentile(arr, 90)), float(arr.min()), runs)


def measure_alternating(fns: dict[str, Callable[[], object]], runs: int = 10, block: int = 5,
                        warmup: int = 2) -> dict[str, Latency]:
    """Time several engines on a shared machine fairly: rounds in which each engine runs one
    discarded run (its thread pool wakes, its caches refill) and then `block` timed runs, until
    each has `runs`. Drift of the machine (another tenant, clock changes) falls on all engines
    alike instead of on whichever happened to be timed second."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    while any(len(t) < runs for t in times.values()):
        for name, fn in fns.items():
            fn()
            for _ in range(min(block, runs - len(times[name]))):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, t in times.items():
        arr = np.asarray(t)
        out[name] = Latency(float(np.median(arr)), float(np.percentile(arr, 90)), float(arr.min()), runs)
    return out


def set_threads(threads: int) -> None:
    """Pin TVM's thread pool (read when the runtime starts: call before importing tvm)."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
