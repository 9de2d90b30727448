"""Every zoo model at its seed shape: params, MACs, export and build times, and latency of vcc
fp32 (and int8 with --int8), ONNX Runtime fp32 (and its own int8 QDQ per-channel model), and
torch fp32, all measured in one run with the same threads and input.

    python benchmarks/zoo_bench.py [--models a,b] [--threads 2] [--runs 10] [--int8] [--size H W]
        [--no-schedules] [--json out.json]

int8 builds calibrate on 20 person / face / VOC / Cityscapes photos matching the family (ORT's
own int8 model, timed by `vcc bench`, on 8 of them); the weights are the zoo's seeded
initialisation (latency does not depend on them). Ops left to TVM's default schedules are listed.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
PHOTOS = {"face": "celebamask_hq_maskgan", "human_seg": "human_seg_vikram/images",
          "hrnet": "cityscapes_espnet_fullres", "deeplab": "voc2012_vainf_samples"}


def vcc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcc.driver.cli", *map(str, args)], check=True,
                          capture_output=True, text=True)


def bench_artifact(art: Path, ref: Path, threads: int, runs: int) -> dict:
    return json.loads(vcc("bench", art, "--ref", ref, "--threads", threads, "--runs", runs, "--json").stdout)


def fallbacks(art: Path) -> list[str]:
    """The fused functions of an artifact left to TVM's default schedules, and its convolutions
    on a generic loop schedule (kind x calls)."""
    sched = json.loads((art / "manifest.json").read_text()).get("schedules") or {}
    if "failed" in sched:
        return [f"ALL (schedules failed: {sched['failed']})"]
    functions = sched.get("functions", [])
    total = sum(f.get("macs", 0) * f["calls"] for f in functions) or 1
    out = []
    for f in functions:
        if f["schedule"] in ("dlight", "default"):
            out.append(f"{f['kind']} x{f['calls']}")
        elif f.get("macs") and f["schedule"] in ("injective", "reduction") and f["macs"] * f["calls"] >= 0.001 * total:
            # (as `vcc build` prints them: the 1x1-map gate convs under 0.1% of the MACs are left out)
            out.append(f"{f['kind']} x{f['calls']} (conv on a generic loop schedule, "
                       f"{100 * f['macs'] * f['calls'] / total:.1f}% of conv MACs)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--size", type=int, nargs=2, default=None)
    ap.add_argument("--no-schedules", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch
    from conftest import data_dir

    from vcc.frontends.zoo import zoo_models
    from vcc.frontends.zoo.export import MainLogits, build_zoo_module, count_macs, count_params
    from vcc.runtime.bench import measure

    torch.set_num_threads(args.threads)
    data = data_dir()
    names = args.models.split(",") if args.models else sorted(zoo_models())
    work = Path(tempfile.mkdtemp(prefix="vcc-zoo-bench-"))
    rows = []
    for name in names:
        entry = zoo_models()[name]
        size = tuple(args.size) if args.size else entry.input_size
        row = {"model": name, "size": list(size)}
        onnx_path = work / f"{name}.onnx"
        t0 = time.perf_counter()
        vcc("export", name, "--size", *size, "-o", onnx_path)
        row["export_s"] = round(time.perf_counter() - t0, 1)
        _, module = build_zoo_module(name)
        row["params"] = count_params(module)
        row["seed_params_m"] = entry.seed_params_m
        row["macs_g"] = round(count_macs(entry, size) / 1e9, 3)
        row["seed_flops_g"] = entry.seed_flops_g
        sched = ["--no-schedules"] if args.no_schedules else []
        art = work / f"{name}-fp32"
        t0 = time.perf_counter()
        vcc("build", onnx_path, "--out", art, *sched)
        row["build_fp32_s"] = round(time.perf_counter() - t0, 1)
        b = bench_artifact(art, onnx_path, args.threads, args.runs)
        row["vcc_fp32_ms"] = b["artifact_ms"]
        row["ort_fp32_ms"] = b["ort_fp32_ms"]
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32))
        wrapped = MainLogits(entry, module).eval()
        with torch.no_grad():
            row["torch_fp32_ms"] = round(measure(lambda w=wrapped, t=x: w(t), args.runs).median_ms, 3)
        if args.int8:
            photos = data / "images" / PHOTOS[entry.family]
            art8 = work / f"{name}-int8"
            t0 = time.perf_counter()
            vcc("build", onnx_path, "--dtype", "int8", "--calib", photos, "--num-calib", 20, "--out", art8, *sched)
            row["build_int8_s"] = round(time.perf_counter() - t0, 1)
            # vcc bench times ORT's own int8 QDQ model (quantize_static, per-channel, Entropy on 8
            # of the same photos) beside the artifact, same input and threads
            b8 = json.loads(vcc("bench", art8, "--ref", onnx_path, "--threads", args.threads, "--runs", args.runs,
                                "--calib", photos, "--json").stdout)
            row["vcc_int8_ms"], row["ort_int8_ms"] = b8["artifact_ms"], b8["ort_int8_ms"]
            row["fallback_int8"] = fallbacks(art8)
        row["fallback_fp32"] = fallbacks(art)
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\nzoo at seed shapes, {args.threads} threads, median of {args.runs} runs"
          f"{' (no vcc schedules)' if args.no_schedules else ''}")
    head = f"{'model':24s} {'params':>11s} {'seed M':>7s} {'GMACs':>8s} {'seed GFLOPs':>18s} {'export s':>8s} " \
           f"{'build s':>7s} {'vcc fp32':>9s} {'ORT fp32':>9s} {'torch':>8s} {'vcc/ORT':>7s}"
    if args.int8:
        head += f" {'vcc int8':>9s} {'ORT int8':>9s} {'i8 ratio':>8s}"
    print(head)
    for r in rows:
        line = (f"{r['model']:24s} {r['params']:11,d} {r['seed_params_m']:>7s} {r['macs_g']:8.3f} "
                f"{r['seed_flops_g']:>18s} {r['export_s']:8.1f} {r['build_fp32_s']:7.1f} {r['vcc_fp32_ms']:9.1f} "
                f"{r['ort_fp32_ms']:9.1f} {r['torch_fp32_ms']:8.1f} {r['vcc_fp32_ms'] / r['ort_fp32_ms']:7.2f}")
        if args.int8:
            line += f" {r['vcc_int8_ms']:9.1f} {r['ort_int8_ms']:9.1f} {r['vcc_int8_ms'] / r['ort_int8_ms']:8.2f}"
        print(line)
    for r in rows:
        for key in ("fallback_fp32", "fallback_int8"):
            if r.get(key):
                print(f"{r['model']}: {key.split('_')[1]} ops on TVM's default schedules: {', '.join(r[key])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
