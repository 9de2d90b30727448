"""Peak memory of calibration against the number of images: `vcc calibrate` on 20 and on 200
person photos, each in its own process, peak resident set size from the kernel (wait4).

The subject is the trained BiSeNet-shaped test model exported at --size (default 512), so
that each image's activations are large next to the histograms.

    python benchmarks/calib_memory.py [--size 512] [--counts 20,200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def peak_rss_mib(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of the command, run to completion."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - t0  # ru_maxrss is KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--counts", default="20,200")
    args = ap.parse_args()

    from trained_subjects import trained_subject


    subject = trained_subject("bisenet_shaped")
    data = subject.data()
    work = Path(tempfile.mkdtemp(prefix="vcc-calib-mem-"))
    model = subject.export_onnx(work / "bisenet_shaped.onnx", size=args.size)
    photos = data.paths[0].parent
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        out = work / f"calibration-{n}.json"
        mib, secs = peak_rss_mib([sys.executable, "-m", "vcc.driver.cli", "calibrate", str(model),
                                  "--calib", str(photos), "--num-calib", str(n), "-o", str(out)])
        rows.append((n, mib, secs))
    print(f"\nvcc calibrate, BiSeNet-shaped at 1x3x{args.size}x{args.size}, KL, photos of {photos}")
    print(f"{'images':>7s} {'peak RSS MiB':>13s} {'seconds':>8s}")
    for n, mib, secs in rows:
        print(f"{n:7d} {mib:13.0f} {secs:8.1f}")


if __name__ == "__main__":
    main()
