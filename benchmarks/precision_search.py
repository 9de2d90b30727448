"""`vcc build --max-drop` against plain int8 on the trained subjects, side by side.

For each trained subject (tests/trained_subjects.py), calibrated on photos of the training split
(as benchmarks/int8_accuracy.py does):
- plain: `vcc build --dtype int8 --calib C`;
- max-drop: the same with `--max-drop D --eval E`, E a folder of training photos calibration did
  not use (the search measures there), so the 50 held-out photos that score both stay unseen.
Printed per subject: agreement with fp32 and mIoU-vs-fp32 drop (points) on the held-out photos,
person IoU against their labels, the nodes the search moved to fp32 and their share of the MACs,
the search's evaluations and time, and the latency of both artifacts (median of alternating
rounds, same input and threads).

    python benchmarks/precision_search.py [--subjects a,b] [--max-drop 0.5] [--num-calib 50]
                                          [--search-photos 16] [--runs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _build(fp32: Path, out: Path, calib: Path, num_calib: int, extra: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vcc.driver.cli", "build", str(fp32), "--dtype", "int8",
                    "--calib", str(calib), "--num-calib", str(num_calib), "--out", str(out), *extra],
                   check=True)
    return time.perf_counter() - t0


def _latency(predictors: dict, x: np.ndarray, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in predictors}
    for p in predictors.values():
        p(x)  # warm up
    for _ in range(runs):
        for k, p in predictors.items():
            t0 = time.perf_counter()
            p(x)
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def run_subject(name: str, data: Path, work: Path, args) -> dict:
    from int8_accuracy import heldout_set, prepare_subject, score

    from vcc.calib.dataset import choose_evenly
    from vcc.reports.metrics import OutputComparison
    from vcc.runtime import load

    subject, fp32, _, heldout, calib_dir, unused = prepare_subject(name, data, work, args.num_calib)
    search_dir = work / f"{name}-search"
    search_dir.mkdir(exist_ok=True)
    for img, _ in choose_evenly(unused, args.search_photos):
        (search_dir / img.name).symlink_to(img)
    plain, searched = work / f"{name}-int8", work / f"{name}-maxdrop"
    t_plain = _build(fp32, plain, calib_dir, args.num_calib, [])
    t_search = _build(fp32, searched, calib_dir, args.num_calib,
                      ["--max-drop", str(args.max_drop), "--eval", str(search_dir)])
    preds = {"plain": load(plain), "max-drop": load(searched)}
    xs, labels, ref = heldout_set(heldout, preds["plain"].preprocess, fp32, args.threads)
    rows = {}
    for k, p in preds.items():
        outs = [p(x) for x in xs]
        s = score(outs, ref, labels)
        cmp = OutputComparison()
        for o, r in zip(outs, ref, strict=True):
            cmp.add(r, o)
        rows[k] = {"agreement": s["agreement"], "sqnr_db": s["sqnr_db"], "person_iou": s["person_iou"],
                   "drop": 100.0 * (1.0 - cmp.summary()["miou_vs_fp32"])}
    rows["fp32"] = {"person_iou": score(ref, ref, labels)["person_iou"]}
    ps = preds["max-drop"].manifest["precision_search"]
    latency = _latency(preds, xs[0], args.runs)
    return {"subject": name, "size": list(preds["plain"].preprocess.size), "rows": rows,
            "moved": ps["result"]["moved"], "float_mac_share": ps["result"]["float_mac_share"],
            "search_drop": ps["result"]["drop"], "artifact_search_drop": ps["artifact"]["drop"],
            "evaluations": ps["evaluations"], "fallback": ps["fallback_option"],
            "build_seconds": {"plain": t_plain, "max-drop": t_search}, "latency_ms": latency}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", default=None, help="comma-separated subject names (default: the cached CI ones)")
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--num-calib", type=int, default=50)
    ap.add_argument("--search-photos", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from conftest import data_dir
    from trained_subjects import CI_SUBJECTS

    data = data_dir()
    names = args.subjects.split(",") if args.subjects else list(CI_SUBJECTS)
    work = Path(tempfile.mkdtemp(prefix="vcc-maxdrop-"))
    results = [run_subject(n, data, work, args) for n in names]
    print(f"\nint8 vs --max-drop {args.max_drop:g} on the 50 held-out person photos (drop: points of mIoU vs fp32)")
    print(f"{'model':22s} {'variant':9s} {'agree':>8s} {'drop':>6s} {'SQNR':>6s} {'IoU':>7s} {'fp32 IoU':>8s} "
          f"{'moved':>5s} {'MACs fp32':>9s} {'evals':>5s} {'build s':>7s} {'ms':>7s}")
    for r in results:
        for k in ("plain", "max-drop"):
            s = r["rows"][k]
            moved = f"{r['moved']:5d} {100 * r['float_mac_share']:8.1f}% {r['evaluations']:5d}" if k == "max-drop" \
                else f"{'':5s} {'':9s} {'':5s}"
            print(f"{r['subject']:22s} {k:9s} {s['agreement']:8.2%} {s['drop']:6.2f} {s['sqnr_db']:6.1f} "
                  f"{s['person_iou']:7.4f} {r['rows']['fp32']['person_iou']:8.4f} {moved} "
                  f"{r['build_seconds'][k]:7.1f} {r['latency_ms'][k]:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
