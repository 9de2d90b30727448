"""A/B of two or more vcc artifacts of one model: same input, same threads, alternating runs.

    python benchmarks/ab_artifacts.py OLD_ARTIFACT NEW_ARTIFACT [MORE ...] [--threads 2] [--runs 30]

Timing on a shared VM drifts by 20-40% between runs; timing the artifacts in turn (one discarded
and one timed run each per round, `vcc.runtime.bench.measure_alternating`) puts that drift on
all of them alike, so the medians compare within one invocation. This is how the per-change
figures of a schedule or lowering change are taken (build the artifact with the old and the new
code, then run this).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", type=Path, nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    from vcc.runtime.bench import measure_alternating, set_threads

    set_threads(args.threads)
    import tvm
    from tvm import relax

    shapes = set()
    fns = {}
    x = None
    for art in args.artifacts:
        manifest = json.loads((art / "manifest.json").read_text())
        shape = tuple(manifest["inputs"][0]["shape"])
        shapes.add(shape)
        if len(shapes) > 1:
            raise SystemExit(f"{art}: input shape {list(shape)} differs from the other artifacts'")
        if x is None:
            x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(art / "model.so")), tvm.cpu())
        fns[str(art)] = lambda vm=vm, x=x: vm["main"](x)
    results = measure_alternating(fns, runs=args.runs, block=1)
    print(f"{args.threads} threads, {args.runs} alternating runs each, input {list(shapes.pop())}")
    for name, lat in results.items():
        print(f"{name}: median {lat.median_ms:.2f} ms  min {lat.min_ms:.2f}  p90 {lat.p90_ms:.2f}")


if __name__ == "__main__":
    main()
