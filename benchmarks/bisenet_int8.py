"""The int8 figures of the BiSeNet-shaped model at 1x3x512x512, side by side in one run.

The subject is the trained BiSeNet-shaped test model (tests/trained_subjects.py, person
segmentation, 2 classes; fully convolutional, exported here at the benchmark size). Steps:
1. `vcc build --dtype fp32` and `vcc build --dtype int8 --calib` (50 photos of the subject's
   training split): wall time of each build, and the calibration stage's own time;
2. ONNX Runtime's quantize_static on the same 50 photos (QDQ, per-channel, Entropy);
3. latency, same input and threads, timed in alternating blocks: vcc int8, ORT int8 QDQ,
   vcc fp32, ORT fp32 (medians, p90, minima);
4. on the 50 held-out photos: argmax agreement with ORT fp32 of each int8 variant.

    python benchmarks/bisenet_int8.py [--size 512] [--threads 2] [--runs 20] [--json out.json]
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

NUM_CALIB = 50


def vcc_build(model: Path, out: Path, *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vcc.driver.cli", "build", str(model), "--out", str(out),
                    *extra], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before tvm is imported

    from benchmarks_common import ort_quantize_static
    from int8_schedule import interleaved_ms
    from trained_subjects import trained_subject

    from vcc.calib.images import load_image
    from vcc.reports.metrics import OutputComparison
    from vcc.runtime import load
    from vcc.runtime.reference import OrtSession

    subject = trained_subject("bisenet_shaped")
    data = subject.data()
    work = Path(tempfile.mkdtemp(prefix="vcc-bisenet-int8-"))
    model = subject.export_onnx(work / "bisenet_shaped.onnx", size=args.size)
    pre = subject.preprocess(args.size)

    train = [data.paths[i] for i in data.train_index]
    calib_paths = [train[i] for i in np.linspace(0, len(train) - 1, NUM_CALIB).round().astype(int)]
    calib_dir = work / "calib"
    calib_dir.mkdir()
    for p in calib_paths:
        (calib_dir / p.name).symlink_to(p)

    fp32_s = vcc_build(model, work / "fp32", "--dtype", "fp32")
    int8_s = vcc_build(model, work / "int8", "--dtype", "int8", "--calib", str(calib_dir),
                       "--num-calib", str(NUM_CALIB))
    stages = json.loads((work / "int8" / "manifest.json").read_text())["build_seconds"]
    t0 = time.perf_counter()
    ort_q = ort_quantize_static(model, work / "ort-int8.onnx", [load_image(p, pre) for p in calib_paths],
                                "entropy")
    ort_quant_s = time.perf_counter() - t0

    vcc_int8, vcc_fp32 = load(work / "int8"), load(work / "fp32")
    ort_int8, ort_fp32 = OrtSession(ort_q, threads=args.threads), OrtSession(model, threads=args.threads)
    x = load_image(data.heldout_paths[0], pre)
    labels = ["vcc int8", "ORT int8 QDQ", "vcc fp32", "ORT fp32"]
    fns = [lambda: vcc_int8.time_once(x), lambda: ort_int8.run(x), lambda: vcc_fp32.time_once(x),
           lambda: ort_fp32.run(x)]
    timings = dict(zip(labels, interleaved_ms(fns, args.runs), strict=True))

    agree = {"vcc int8": OutputComparison(), "ORT int8 QDQ": OutputComparison()}
    for p in data.heldout_paths:
        xi = load_image(p, pre)
        ref = ort_fp32.run(xi)[0]
        agree["vcc int8"].add(ref, vcc_int8(xi))
        agree["ORT int8 QDQ"].add(ref, ort_int8.run(xi)[0])
    accuracy = {k: v.summary() for k, v in agree.items()}

    print(f"\nBiSeNet-shaped (trained, 2 classes) at 1x3x{args.size}x{args.size}, {args.threads} threads")
    print(f"vcc build fp32 {fp32_s:.1f} s; vcc build int8 {int8_s:.1f} s (calibrate {stages['calibrate']:.1f} s "
          f"on {NUM_CALIB} photos, stages {stages}); ORT quantize_static (Entropy) {ort_quant_s:.1f} s")
    print(f"{'variant':14s} {'median ms':>10s} {'p90 ms':>9s} {'min ms':>9s}")
    for k, (med, p90, best) in timings.items():
        print(f"{k:14s} {med:10.1f} {p90:9.1f} {best:9.1f}")
    print(f"vcc int8 / ORT int8 = {timings['vcc int8'][0] / timings['ORT int8 QDQ'][0]:.2f}x (medians); "
          f"vcc int8 / vcc fp32 = {timings['vcc int8'][0] / timings['vcc fp32'][0]:.2f}x")
    for k, s in accuracy.items():
        print(f"{k:14s} agreement with fp32 {s['agreement']:.4%}  SQNR {s['sqnr_db']:.2f} dB "
              f"({len(data.heldout_paths)} held-out photos)")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "threads": args.threads, "runs": args.runs,
                                         "build_s": {"fp32": fp32_s, "int8": int8_s, "int8_stages": stages,
                                                     "ort_quantize_static": ort_quant_s},
                                         "latency_ms": timings, "accuracy": accuracy}, indent=2))


if __name__ == "__main__":
    main()
