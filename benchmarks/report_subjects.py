"""The accuracy report (`vcc compare --labels`) of fp32 and int8 artifacts of trained subjects on
the 50 held-out person photos, the figures quoted in the notes.

For each subject (tests/trained_subjects.py): export, `vcc build --dtype fp32` and
`vcc build --dtype int8 --calib` (50 photos of the training split), then
`vcc compare ART --ref MODEL --labels HELDOUT --dataset binary --out REPORT` for both; prints the
output metrics, the person / background IoU against the labels and the five worst layers, and
leaves the reports (accuracy.html) in the work folder it names.

    python benchmarks/report_subjects.py [--subjects unet_mobilenetv2,deeplab3plus_resnet18]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

NUM_CALIB = 50


def vcc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcc.driver.cli", *args], check=True,
                          capture_output=True, text=True)


def linked(folder: Path, files: list[Path]) -> Path:
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def run_subject(name: str, work: Path) -> dict:
    from trained_subjects import trained_subject

    s = trained_subject(name)
    data = s.data()
    model = s.export_onnx(work / f"{name}.onnx")
    train = [data.paths[i] for i in data.train_index]
    calib = linked(work / f"{name}-calib",
                   [train[i] for i in np.linspace(0, len(train) - 1, NUM_CALIB).round().astype(int)])
    held = work / f"{name}-heldout"
    linked(held / "images", data.heldout_paths)
    linked(held / "masks", [p.parent.parent / "masks" / f"{p.stem}.png" for p in data.heldout_paths])
    docs = {}
    for dtype in ("fp32", "int8"):
        art = work / f"{name}-{dtype}"
        extra = ["--calib", str(calib), "--num-calib", str(NUM_CALIB)] if dtype == "int8" else []
        vcc("build", str(model), "--dtype", dtype, "--out", str(art), *extra)
        rep = work / f"{name}-{dtype}-report"
        docs[dtype] = json.loads(vcc("compare", str(art), "--ref", str(model), "--labels", str(held),
                                     "--dataset", "binary", "--out", str(rep), "--json").stdout)
    return {"subject": name, "trained_iou": s.heldout_iou, "docs": docs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", default="unet_mobilenetv2,deeplab3plus_resnet18")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vcc-reports-"))
    results = [run_subject(n, work) for n in args.subjects.split(",")]
    print(f"\nreports under {work} (<subject>-<dtype>-report/accuracy.html)")
    for r in results:
        print(f"\n{r['subject']} (held-out person IoU in torch {r['trained_iou']:.4f})")
        print(f"  {'artifact':6s} {'agree':>9s} {'mIoU vs fp32':>12s} {'SQNR dB':>8s} {'mIoU fp32':>10s} "
              f"{'mIoU art':>9s} {'person IoU fp32 / art':>22s}")
        for dtype, d in r["docs"].items():
            person = next(c for c in d["per_class"] if c["class"] == 1)
            print(f"  {dtype:6s} {d['agreement']:9.4%} {d['miou_vs_fp32']:12.4f} {d['sqnr_db']:8.2f} "
                  f"{d['miou_ref']:10.4f} {d['miou_artifact']:9.4f} "
                  f"{person['iou_ref']:10.4f} / {person['iou_artifact']:.4f}")
        layers = r["docs"]["int8"].get("layers") or []
        print("  int8 worst layers (graphwise / layerwise SQNR dB):")
        for lay in layers[:5]:
            print(f"    {lay['node'][:48]:48s} {lay['op']:14s} {str(lay.get('block'))[:28]:28s} "
                  f"{lay['graphwise_sqnr_db']:7.2f} {lay['layerwise_sqnr_db']:7.2f}")
    (work / "summary.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
