"""Where an artifact's time goes: per compiled function, time per inference (summed over its
calls), share of the total, and the schedule vcc applied to it (from the manifest).

The Relax VM calls an instrument before and after every packed call; the wall time between them
is charged to the function. Python's callback costs a few microseconds a call, so the total
reads a little above the plain latency; the ranking is what this is for.

    python benchmarks/profile_artifact.py ARTIFACT [--threads 2] [--runs 10] [--top 25] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path


def profile(art: Path, runs: int) -> tuple[dict[str, float], dict[str, int]]:
    import numpy as np
    import tvm
    from tvm import relax

    manifest = json.loads((art / "manifest.json").read_text())
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(art / "model.so")), tvm.cpu())
    shape = manifest["inputs"][0]["shape"]
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32), tvm.cpu())
    for _ in range(2):
        vm["main"](x)
    spent: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}

    def instrument(func, name, before, ret, *args):
        if before:
            started[name] = time.perf_counter()
        else:
            spent[name].append(time.perf_counter() - started[name])
        return 0  # relax.VMInstrumentReturnKind.NO_OP

    vm.set_instrument(instrument)
    for _ in range(runs):
        vm["main"](x)
    ms = {k: 1e3 * sum(v) / runs for k, v in spent.items()}
    calls = {k: len(v) // runs for k, v in spent.items()}
    return ms, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    ms, calls = profile(args.artifact, args.runs)
    manifest = json.loads((args.artifact / "manifest.json").read_text())
    sched = {f["name"]: f for f in (manifest.get("schedules") or {}).get("functions", [])}
    total = sum(ms.values())
    rows = sorted(ms.items(), key=lambda kv: -kv[1])
    print(f"{args.artifact}: {total:.2f} ms per inference over {len(ms)} functions, {args.threads} threads, "
          f"{args.runs} runs")
    print(f"{'ms':>8s} {'share':>6s} {'calls':>5s} {'schedule':>12s} {'GMAC/s':>7s}  function")
    out = []
    for name, t in rows:
        f = sched.get(name, {})
        macs = f.get("macs") or 0  # per call; `t` is the time of all its calls
        rate = f"{macs * calls[name] / (t * 1e6):7.1f}" if macs and t > 0 else f"{'':7s}"
        out.append({"function": name, "ms": t, "calls": calls[name], "schedule": f.get("schedule"), "macs": macs})
        if len(out) <= args.top:
            print(f"{t:8.3f} {100 * t / total:5.1f}% {calls[name]:5d} {f.get('schedule', '-'):>12s} {rate}  {name[:100]}")
    if args.json:
        args.json.write_text(json.dumps({"total_ms": total, "functions": out}, indent=2))


if __name__ == "__main__":
    main()
