"""int8 with the block rules vs without, on trained subjects, side by side.

For each trained test subject (tests/trained_subjects.py) the int8 artifact is built twice from
the same calibration photos (training split): with the default block rules (ARM / FFM attention
vectors and ASPP / PPM pooling branches in fp32) and with `--no-block-rules` (block members
quantized like any node). On the 50 held-out person photos: argmax agreement with fp32 (ONNX
Runtime on the exported model), output SQNR, person IoU, the number of fp32 compute nodes, and
latency medians of both artifacts timed interleaved in one run on the same input and threads.

    python benchmarks/block_rules.py [--subjects bisenet_shaped,deeplab3plus_resnet18]
        [--num-calib 50] [--threads 2] [--runs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {"block rules": (), "no block rules": ("--no-block-rules",)}


def run_subject(name: str, data: Path, work: Path, num_calib: int, threads: int, runs: int) -> dict:
    from int8_accuracy import heldout_set, prepare_subject, score

    from vcc.runtime import load

    _, fp32, _, heldout, calib_dir, _ = prepare_subject(name, data, work, num_calib)
    preds, fp32_nodes, build_s = {}, {}, {}
    for variant, extra in VARIANTS.items():
        art = work / f"{name}-{variant.replace(' ', '-')}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vcc.driver.cli", "build", str(fp32), "--dtype", "int8",
                        "--calib", str(calib_dir), "--num-calib", str(num_calib), "--out", str(art), *extra],
                       check=True, capture_output=True, text=True)
        build_s[variant] = round(time.perf_counter() - t0, 1)
        preds[variant] = load(art)
        fp32_nodes[variant] = json.loads((art / "manifest.json").read_text())["quantization"]["fp32_nodes"]
    pre = preds["block rules"].preprocess
    xs, labels, ref = heldout_set(heldout, pre, fp32, threads)
    rows = {variant: score([p(x) for x in xs], ref, labels) for variant, p in preds.items()}
    # latency: the two artifacts interleaved, so drift of a shared machine hits both alike
    times: dict[str, list[float]] = {v: [] for v in preds}
    for k in range(runs + 2):
        for variant, p in preds.items():
            t0 = time.perf_counter()
            p.time_once(xs[0])
            if k >= 2:
                times[variant].append((time.perf_counter() - t0) * 1e3)
    for variant in rows:
        rows[variant]["latency_ms"] = float(np.median(times[variant]))
        rows[variant]["fp32_compute_nodes"] = len(fp32_nodes[variant])
        rows[variant]["build_s"] = build_s[variant]
    return {"subject": name, "size": list(pre.size), "rows": rows, "fp32_nodes": fp32_nodes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", default="bisenet_shaped,deeplab3plus_resnet18")
    ap.add_argument("--num-calib", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    from conftest import data_dir

    data = data_dir()
    work = Path(tempfile.mkdtemp(prefix="vcc-block-rules-"))
    results = [run_subject(n, data, work, args.num_calib, args.threads, args.runs)
               for n in args.subjects.split(",")]
    print(f"\nint8 with vs without block rules, {args.num_calib} calibration photos, 50 held-out photos, "
          f"{args.threads} threads, latency median of {args.runs} interleaved runs")
    print(f"{'model':22s} {'variant':16s} {'agree':>8s} {'SQNR dB':>8s} {'person IoU':>10s} "
          f"{'fp32 convs':>10s} {'latency ms':>10s}")
    for r in results:
        for variant, s in r["rows"].items():
            print(f"{r['subject']:22s} {variant:16s} {s['agreement']:8.2%} {s['sqnr_db']:8.2f} "
                  f"{s['person_iou']:10.4f} {s['fp32_compute_nodes']:10d} {s['latency_ms']:10.2f}")
    for r in results:
        for node, why in r["fp32_nodes"]["block rules"].items():
            print(f"{r['subject']}: fp32 {node}: {why}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
