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
                                       [--quantize-attention] [--heldout-only]

Also on the 'wide' set (every photo not used for calibration: the held-out photos and the unused
training photos) and per-image paired differences with their standard error: on the weakly
trained subjects many pixels sit near the decision boundary, and differences of a few tenths of a
point on 50 photos are within what another choice of photos undoes.
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


def score(outputs: list[np.ndarray], ref: list[np.ndarray], labels: list[np.ndarray] | None) -> dict:
    """Argmax agreement and SQNR against `ref`, person IoU against `labels` (when given), and the
    per-image agreement (for paired comparisons between variants)."""
    from vcc.reports.metrics import OutputComparison, confusion_matrix, iou_per_class

    cmp = OutputComparison()
    conf = np.zeros((2, 2), np.int64)
    per_image = []
    for k, (o, r) in enumerate(zip(outputs, ref, strict=True)):
        cmp.add(r, o)
        per_image.append(float((o[0].argmax(0) == r[0].argmax(0)).mean()))
        if labels is not None:
            conf += confusion_matrix(o[0].argmax(0), labels[k], 2)
    s = cmp.summary()
    out = {"agreement": s["agreement"], "sqnr_db": s["sqnr_db"], "per_image": per_image}
    if labels is not None:
        out["person_iou"] = float(iou_per_class(conf)[1])
    return out


def paired(a: dict, b: dict) -> tuple[float, float]:
    """Mean per-image agreement of `a` minus `b` (points) and its standard error: a difference
    within about two standard errors is what swapping the evaluation photos can undo."""
    d = (np.asarray(a["per_image"]) - np.asarray(b["per_image"])) * 100
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def prepare_subject(name: str, data: Path, work: Path,
                    num_calib: int) -> tuple[object, Path, list[Path], list, Path, list]:
    """Export the trained subject `name` and split the person photos: (the subject, fp32 ONNX,
    the `num_calib` calibration photos, the last HELDOUT pairs, a folder linking exactly those
    photos, the training pairs not used for calibration). The photos are chosen from the
    training split by vcc's own rule (evenly over the sorted names) and the folder holds
    nothing else, so vcc and ONNX Runtime calibrate on the same images: on deeplabv3_mobilenet, two different 50-photo subsets (11 in common) moved the
    head's observed maximum from 8.4 to 10.7 and the agreement by more than vcc and ORT differ."""
    from trained_subjects import person_pairs, trained_subject

    from vcc.calib.dataset import choose_evenly

    subject = trained_subject(name)
    fp32 = subject.export_onnx(work / f"{name}.onnx")
    pairs = person_pairs(data)
    train, heldout = pairs[:-HELDOUT], pairs[-HELDOUT:]
    photos = choose_evenly(sorted(img for img, _ in train), num_calib)
    calib_dir = work / f"{name}-calib"
    calib_dir.mkdir(exist_ok=True)
    for img in photos:
        (calib_dir / img.name).symlink_to(img)
    chosen = set(photos)
    unused = [(img, m) for img, m in train if img not in chosen]
    return subject, fp32, photos, heldout, calib_dir, unused


def heldout_set(heldout: list, pre, fp32: Path, threads: int) -> tuple[list, list, list]:
    """The held-out photos preprocessed for the model, their person masks at its input size, and
    the fp32 reference outputs (ONNX Runtime)."""
    from PIL import Image

    from vcc.calib.images import load_image
    from vcc.reports.labels import load_binary_mask
    from vcc.runtime.reference import OrtSession

    xs = [load_image(img, pre) for img, _ in heldout]
    h, w = pre.size
    labels = [np.asarray(Image.fromarray(np.asarray(load_binary_mask(m, None).astype(np.uint8)))
                         .resize((w, h), Image.NEAREST)) for _, m in heldout]
    sess = OrtSession(fp32, threads=threads)
    return xs, labels, [sess.run(x)[0] for x in xs]


def run_subject(name: str, data: Path, work: Path, num_calib: int, threads: int,
                extra_build_args: tuple[str, ...] = (), wide: bool = False) -> dict:
    """Every variant scored on the HELDOUT labelled photos; with `wide`, also agreement and SQNR
    on every photo not used for calibration (the held-out ones and the unused training photos:
    ~5x the pixels, for differences smaller than the held-out set resolves)."""
    from benchmarks_common import ort_quantize_static

    from vcc.calib.images import load_image
    from vcc.ir.preprocess import Preprocess
    from vcc.runtime import load
    from vcc.runtime.reference import OrtSession

    subject, fp32, photos, heldout, calib_dir, unused = prepare_subject(name, data, work, num_calib)
    art = work / f"{name}-int8"
    qdq = work / f"{name}-vcc-qdq.onnx"
    subprocess.run([sys.executable, "-m", "vcc.driver.cli", "build", str(fp32), "--dtype", "int8",
                    "--calib", str(calib_dir), "--num-calib", str(num_calib), "--out", str(art),
                    "--emit-qdq", str(qdq), *extra_build_args], check=True)
    pred = load(art)
    pre: Preprocess = pred.preprocess
    xs, labels, ref = heldout_set(heldout, pre, fp32, threads)
    if wide:
        unused_xs, _, unused_ref = heldout_set(unused, pre, fp32, threads)
        wide_xs, wide_ref = xs + unused_xs, ref + unused_ref
    runners = {"vcc int8 (artifact)": pred,
               "vcc int8 (QDQ simulation)": lambda x, s=OrtSession(qdq, threads=threads, optimize=False): s.run(x)[0]}
    calib_inputs = [load_image(img, pre) for img in photos]
    for method in ("entropy", "percentile"):
        q = ort_quantize_static(fp32, work / f"{name}-ort-{method}.onnx", calib_inputs, method)
        runners[f"ORT int8 ({method})"] = lambda x, s=OrtSession(q, threads=threads): s.run(x)[0]
    rows = {"fp32": score(ref, ref, labels)}
    outs = {}
    for variant, run in runners.items():
        outs[variant] = [run(x) for x in xs]
        rows[variant] = score(outs[variant], ref, labels)
        if wide:
            rows[variant]["wide"] = score(outs[variant] + [run(x) for x in wide_xs[len(xs):]], wide_ref, None)
    base = rows["vcc int8 (artifact)"]
    for variant in runners:
        rows[variant]["vs_vcc"] = paired(rows[variant], base)
        if wide:
            rows[variant]["wide"]["vs_vcc"] = paired(rows[variant]["wide"], base["wide"])
    vcc_out, sim_out = outs["vcc int8 (artifact)"], outs["vcc int8 (QDQ simulation)"]
    sim_cmp = score(vcc_out, sim_out, labels)
    rel = max(float(np.abs(a - b).max() / max(1e-12, np.abs(b).max())) for a, b in zip(vcc_out, sim_out, strict=True))
    return {"subject": name, "size": list(pre.size), "heldout_iou_trained": subject.heldout_iou, "rows": rows,
            "wide_photos": len(wide_xs) if wide else 0,
            "artifact_vs_qdq": {"agreement": sim_cmp["agreement"], "sqnr_db": sim_cmp["sqnr_db"],
                                "max_rel_error": rel}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", default=None, help="comma-separated subject names (default: all)")
    ap.add_argument("--num-calib", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--heldout-only", action="store_true",
                    help="score on the held-out photos only (skip the wide set of every non-calibration photo)")
    ap.add_argument("--quantize-attention", action="store_true",
                    help="build vcc int8 with --quantize-attention (attention convs on 1x1 maps in int8 too)")
    args = ap.parse_args()
    from conftest import data_dir
    from trained_subjects import SUBJECTS

    data = data_dir()
    names = args.subjects.split(",") if args.subjects else list(SUBJECTS)
    work = Path(tempfile.mkdtemp(prefix="vcc-int8-"))
    extra = ("--quantize-attention",) if args.quantize_attention else ()
    results = [run_subject(n, data, work, args.num_calib, args.threads, extra, wide=not args.heldout_only)
               for n in names]
    print(f"\nint8 vs fp32 on the {HELDOUT} held-out person photos ({args.num_calib} calibration photos "
          "from the training split, the same for vcc and ORT); 'wide': every photo not used for calibration; "
          "'vs vcc': mean per-image agreement minus vcc's, +- its standard error (points)")
    print(f"{'model':22s} {'variant':28s} {'agree':>8s} {'SQNR dB':>8s} {'person IoU':>10s} {'vs vcc':>14s}"
          f" {'wide agree':>10s} {'wide SQNR':>9s} {'wide vs vcc':>14s}")
    for r in results:
        for variant, s in r["rows"].items():
            line = f"{r['subject']:22s} {variant:28s} {s['agreement']:8.2%} {s['sqnr_db']:8.2f} {s['person_iou']:10.4f}"
            if "vs_vcc" in s:
                line += f" {s['vs_vcc'][0]:+7.2f}+-{s['vs_vcc'][1]:.2f}"
            if "wide" in s:
                w = s["wide"]
                line += f" {w['agreement']:10.2%} {w['sqnr_db']:9.2f} {w['vs_vcc'][0]:+7.2f}+-{w['vs_vcc'][1]:.2f}"
            print(line)
        a = r["artifact_vs_qdq"]
        print(f"{r['subject']:22s} {'artifact vs its QDQ sim':28s} {a['agreement']:8.3%} {a['sqnr_db']:8.2f}"
              f"   max rel err {a['max_rel_error']:.2e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
