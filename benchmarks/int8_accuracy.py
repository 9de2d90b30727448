"""vcc int8 against ONNX Runtime's own quantize_static on trained subjects, side by side.

For each trained test subject (tests/trained_subjects.py: models trained briefly on the person
photos of ../shared/data), on the 50 held-out photos:
- fp32: ONNX Runtime on the exported model (the reference);
- vcc int8: `vcc build --dtype int8 --calib` on photos of the training split (the artifact), and
  its own QDQ simulation (--emit-qdq, run by ORT without graph optimisations);
- ORT int8: onnxruntime.quantization.quantize_static, QDQ, per-channel int8 weights, uint8
  activations, Entropy and Percentile calibrators, the same calibration photos.
Printed per model: argmax agreement with fp32, output SQNR vs fp32 (dB), person IoU against the
labels, and the artifact's agreement with its QDQ simulation.

    python benchmarks/int8_accuracy.py [--subjects a,b] [--num-calib 50] [--json out.json]
                                       [--quantize-attention]
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
sys.path.insert(0, str(ROOT / "benchmarks"))

HELDOUT = 50


def score(outputs: list[np.ndarray], ref: list[np.ndarray], labels: list[np.ndarray]) -> dict:
    from vcc.reports.metrics import OutputComparison, confusion_matrix, iou_per_class

    cmp = OutputComparison()
    conf = np.zeros((2, 2), np.int64)
    for o, r, lab in zip(outputs, ref, labels, strict=True):
        cmp.add(r, o)
        conf += confusion_matrix(o[0].argmax(0), lab, 2)
    s = cmp.summary()
    return {"agreement": s["agreement"], "sqnr_db": s["sqnr_db"], "person_iou": float(iou_per_class(conf)[1])}


def prepare_subject(name: str, data: Path, work: Path) -> tuple[object, Path, list, list, Path]:
    """Export the trained subject `name` and split the person photos: (the subject, fp32 ONNX,
    training pairs, the last HELDOUT pairs, a folder linking the training photos for calibration)."""
    from trained_subjects import person_pairs, trained_subject

    subject = trained_subject(name)
    fp32 = subject.export_onnx(work / f"{name}.onnx")
    pairs = person_pairs(data)
    train, heldout = pairs[:-HELDOUT], pairs[-HELDOUT:]
    calib_dir = work / f"{name}-calib"
    calib_dir.mkdir(exist_ok=True)
    for img, _ in train:
        (calib_dir / img.name).symlink_to(img)
    return subject, fp32, train, heldout, calib_dir


def heldout_set(heldout: list, pre, fp32: Path, threads: int) -> tuple[list, list, list]:
    """The held-out photos preprocessed for the model, their person masks at its input size, and
    the fp32 reference outputs (ONNX Runtime)."""
    from PIL import Image

    from vcc.calib.preprocess import load_image
    from vcc.reports.labels import load_binary_mask
    from vcc.runtime.reference import OrtSession

    xs = [load_image(img, pre) for img, _ in heldout]
    h, w = pre.size
    labels = [np.asarray(Image.fromarray(np.asarray(load_binary_mask(m, None).astype(np.uint8)))
                         .resize((w, h), Image.NEAREST)) for _, m in heldout]
    sess = OrtSession(fp32, threads=threads)
    return xs, labels, [sess.run(x)[0] for x in xs]


def run_subject(name: str, data: Path, work: Path, num_calib: int, threads: int,
                extra_build_args: tuple[str, ...] = ()) -> dict:
    from benchmarks_common import ort_quantize_static

    from vcc.calib.preprocess import Preprocess, load_image
    from vcc.runtime import load
    from vcc.runtime.reference import OrtSession

    subject, fp32, train, heldout, calib_dir = prepare_subject(name, data, work)
    art = work / f"{name}-int8"
    qdq = work / f"{name}-vcc-qdq.onnx"
    subprocess.run([sys.executable, "-m", "vcc.compiler.cli", "build", str(fp32), "--dtype", "int8",
                    "--calib", str(calib_dir), "--num-calib", str(num_calib), "--out", str(art),
                    "--emit-qdq", str(qdq), *extra_build_args], check=True)
    pred = load(art)
    pre: Preprocess = pred.preprocess
    xs, labels, ref = heldout_set(heldout, pre, fp32, threads)
    rows = {"fp32": score(ref, ref, labels)}
    vcc_out = [pred(x) for x in xs]
    rows["vcc int8 (artifact)"] = score(vcc_out, ref, labels)
    sim = OrtSession(qdq, threads=threads, optimize=False)
    sim_out = [sim.run(x)[0] for x in xs]
    rows["vcc int8 (QDQ simulation)"] = score(sim_out, ref, labels)
    calib_inputs = [load_image(img, pre) for img, _ in
                    [train[i] for i in np.linspace(0, len(train) - 1, num_calib).round().astype(int)]]
    for method in ("entropy", "percentile"):
        q = ort_quantize_static(fp32, work / f"{name}-ort-{method}.onnx", calib_inputs, method)
        sess = OrtSession(q, threads=threads)
        rows[f"ORT int8 ({method})"] = score([sess.run(x)[0] for x in xs], ref, labels)
    sim_cmp = score(vcc_out, sim_out, labels)
    rel = max(float(np.abs(a - b).max() / max(1e-12, np.abs(b).max())) for a, b in zip(vcc_out, sim_out, strict=True))
    return {"subject": name, "size": list(pre.size), "heldout_iou_trained": subject.heldout_iou, "rows": rows,
            "artifact_vs_qdq": {"agreement": sim_cmp["agreement"], "sqnr_db": sim_cmp["sqnr_db"],
                                "max_rel_error": rel}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", default=None, help="comma-separated subject names (default: all)")
    ap.add_argument("--num-calib", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quantize-attention", action="store_true",
                    help="build vcc int8 with --quantize-attention (attention convs on 1x1 maps in int8 too)")
    args = ap.parse_args()
    from conftest import data_dir
    from trained_subjects import SUBJECTS

    data = data_dir()
    names = args.subjects.split(",") if args.subjects else list(SUBJECTS)
    work = Path(tempfile.mkdtemp(prefix="vcc-int8-"))
    extra = ("--quantize-attention",) if args.quantize_attention else ()
    results = [run_subject(n, data, work, args.num_calib, args.threads, extra) for n in names]
    print(f"\nint8 vs fp32 on the {HELDOUT} held-out person photos ({args.num_calib} calibration photos "
          "from the training split)")
    print(f"{'model':22s} {'variant':28s} {'agree':>8s} {'SQNR dB':>8s} {'person IoU':>10s}")
    for r in results:
        for variant, s in r["rows"].items():
            print(f"{r['subject']:22s} {variant:28s} {s['agreement']:8.2%} {s['sqnr_db']:8.2f} {s['person_iou']:10.4f}")
        a = r["artifact_vs_qdq"]
        print(f"{r['subject']:22s} {'artifact vs its QDQ sim':28s} {a['agreement']:8.3%} {a['sqnr_db']:8.2f}"
              f"   max rel err {a['max_rel_error']:.2e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
