"""One artifact called from several Python threads: a lock around one shared Relax VM vs one VM
per thread (created lazily from the loaded module). Throughput (calls per second over all
threads) and the resident memory each strategy adds; the choice `vcc.runtime.Predictor` makes
rests on this.

    python benchmarks/predictor_threads.py ARTIFACT [--threads 2] [--calls 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import numpy as np
    import tvm
    from tvm import relax

    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=40, help="calls per thread per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    manifest = json.loads((args.artifact / "manifest.json").read_text())
    lib = tvm.runtime.load_module(str(args.artifact / "model.so"))
    dev = tvm.cpu()
    x = np.random.default_rng(0).standard_normal(manifest["inputs"][0]["shape"]).astype(np.float32)

    shared = relax.VirtualMachine(lib, dev)
    lock = threading.Lock()

    def call_locked():
        with lock:
            return shared["main"](tvm.runtime.tensor(x, dev)).numpy()

    local = threading.local()

    def call_per_thread():
        vm = getattr(local, "vm", None)
        if vm is None:
            vm = local.vm = relax.VirtualMachine(lib, dev)
        return vm["main"](tvm.runtime.tensor(x, dev)).numpy()

    def sequential():
        return shared["main"](tvm.runtime.tensor(x, dev)).numpy()

    def throughput(fn, threads):
        def work():
            for _ in range(args.calls):
                fn()
        ts = [threading.Thread(target=work) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return threads * args.calls / (time.perf_counter() - t0)

    throughput(sequential, 1)  # warm up: thread pools, VMs (the shared VM alone from one thread)
    for fn in (call_locked, call_per_thread):
        throughput(fn, args.threads)
    rss0 = _rss_mb()
    results = {"sequential (1 thread)": [], f"lock, {args.threads} threads": [],
               f"VM per thread, {args.threads} threads": []}
    for _ in range(args.rounds):  # alternating rounds: machine drift falls on all alike
        results["sequential (1 thread)"].append(throughput(sequential, 1))
        results[f"lock, {args.threads} threads"].append(throughput(call_locked, args.threads))
        results[f"VM per thread, {args.threads} threads"].append(throughput(call_per_thread, args.threads))
    print(f"{args.artifact}: input {manifest['inputs'][0]['shape']}, dtype {manifest['dtype']}, "
          f"{args.calls} calls/thread, {args.rounds} rounds; RSS after warm-up {rss0:.0f} MB")
    for name, vals in results.items():
        vals = sorted(vals)
        print(f"  {name:28s} median {vals[len(vals) // 2]:8.1f} calls/s  (min {vals[0]:.1f}, max {vals[-1]:.1f})")
    before = _rss_mb()
    extra = [relax.VirtualMachine(lib, dev) for _ in range(4)]
    for vm in extra:
        vm["main"](tvm.runtime.tensor(x, dev))
    print(f"  memory: 4 more VMs (each run once) add {(_rss_mb() - before) / 4:.1f} MB each; "
          f"model.so is {(args.artifact / 'model.so').stat().st_size / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
