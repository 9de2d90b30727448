"""Baseline figures of the fp32 spine: the BiSeNet-shaped test model at 1x3x512x512.

Exports the model, times `vcc build` (with and without vcc's schedules when they exist), then
times the artifact and ONNX Runtime on the same input with the same threads (medians).

    python benchmarks/spine_baseline.py [--threads 2] [--runs 10] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--schedules", choices=["off", "on", "both"], default="off")
    args = ap.parse_args()

    from subjects import BiSeNetShaped, seeded

    from vcc.frontends.torch_export import export_torch

    work = Path(tempfile.mkdtemp(prefix="vcc-bench-"))
    model = work / "bisenet_shaped.onnx"
    export_torch(seeded(BiSeNetShaped(num_classes=19)), (1, 3, args.size, args.size), model)
    modes = {"off": ["--no-schedules"], "on": ["--schedules"]}
    chosen = ["off", "on"] if args.schedules == "both" else [args.schedules]
    rows = []
    for mode in chosen:
        out = work / f"art-{mode}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vcc.driver.cli", "build", str(model), "--out", str(out),
                        *modes[mode]], check=True)
        build_s = time.perf_counter() - t0
        res = subprocess.run([sys.executable, "-m", "vcc.driver.cli", "bench", str(out), "--ref", str(model),
                              "--threads", str(args.threads), "--runs", str(args.runs), "--json"],
                             check=True, capture_output=True, text=True)
        b = json.loads(res.stdout)
        rows.append((mode, build_s, b))
    print(f"\nBiSeNet-shaped test model, 1x3x{args.size}x{args.size}, {args.threads} threads, "
          f"median of {args.runs} runs")
    print(f"{'schedules':10s} {'build s':>8s} {'vcc ms':>10s} {'ORT fp32 ms':>12s} {'vcc/ORT':>8s}")
    for mode, build_s, b in rows:
        print(f"{mode:10s} {build_s:8.1f} {b['artifact_ms']:10.1f} {b['ort_fp32_ms']:12.1f} "
              f"{b['ratio_vs_ort_fp32']:8.2f}")


if __name__ == "__main__":
    main()
