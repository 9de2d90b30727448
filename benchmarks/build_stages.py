"""Seconds of each `vcc build` stage, a fresh `vcc build` process per run (as a user sees them),
and where the import and write stages spend them (cProfile, --profile).

    python benchmarks/build_stages.py bisenet.onnx [--runs 3] [--tree /path/to/checkout] [--profile]

`--tree` runs another checkout's vcc (PYTHONPATH), for before / after figures on one machine;
the load average is printed with each run (figures from a busy machine are not comparable).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STAGE = re.compile(r"^\[(\w+)\] done in ([\d.]+) s", re.M)


def timed_runs(model: Path, runs: int, tree: Path | None, dtype: str) -> list[dict[str, float]]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="vcc-stages-") as tmp:
            proc = subprocess.run([sys.executable, "-m", "vcc.driver.cli", "build", str(model), "--dtype", dtype,
                                   "--out", str(Path(tmp) / "art")], env=env, capture_output=True, text=True,
                                  check=True)
        stages = {k: float(v) for k, v in STAGE.findall(proc.stderr)}
        stages["load"] = os.getloadavg()[0]
        out.append(stages)
        print(" ".join(f"{k} {v:.2f}" for k, v in stages.items()), flush=True)
    return out


def profile(model: Path, stages: tuple[str, ...] = ("import", "write"), top: int = 15) -> None:
    """One in-process build with cProfile on `stages`: the top functions by own time."""
    from vcc.driver import build as B

    profiles = {s: cProfile.Profile() for s in stages}
    plain = B.StageTimer.stage

    @contextlib.contextmanager
    def stage(self, name):
        with plain(self, name):
            prof = profiles.get(name)
            if prof is None:
                yield
                return
            prof.enable()
            try:
                yield
            finally:
                prof.disable()

    B.StageTimer.stage = stage
    with tempfile.TemporaryDirectory(prefix="vcc-stages-") as tmp:
        result = B.build(B.BuildConfig(model=model, out=Path(tmp) / "art", dtype="fp32"))
    for name, prof in profiles.items():
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
        body = text.getvalue().split("ncalls", 1)[-1]
        print(f"\n== {name}: {result.stage_seconds[name]:.2f} s (top {top} by own time)\n   ncalls{body}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", type=Path, help="checkout whose vcc to run (default: the importable one)")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--profile", action="store_true", help="also profile the import and write stages in-process")
    args = ap.parse_args()
    runs = timed_runs(args.model, args.runs, args.tree, args.dtype)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print("median " + " ".join(f"{k} {v:.2f}" for k, v in med.items())
          + f" | import + write {med['import'] + med['write']:.2f} s")
    if args.profile:
        profile(args.model)


if __name__ == "__main__":
    main()
