"""The `vcc` command line."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from vcc.errors import VccError

app = typer.Typer(
    name="vcc",
    help="Quantize and compile semantic-segmentation CNNs (ONNX) into TVM artifacts for this CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _parse_floats(text: str | None, what: str, n: int = 3) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError as e:
        raise VccError(f"{what}: expected {n} numbers like '0.485,0.456,0.406', got {text!r}") from e
    if len(vals) != n:
        raise VccError(f"{what}: expected {n} numbers, got {len(vals)} in {text!r}")
    return vals


SizeOpt = Annotated[tuple[int, int] | None, typer.Option("--size", help="Input height and width (H W).")]


@app.command()
def build(
    model: Annotated[Path, typer.Argument(help="The ONNX model to compile.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact directory to write.")],
    dtype: Annotated[str, typer.Option(help="Precision: fp32 or int8.")] = "fp32",
    size: SizeOpt = None,
    mean: Annotated[str | None, typer.Option(help="Per-channel mean in 0..1 pixel units, model channel order: '0.485,0.456,0.406'.")] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std in 0..1 pixel units: '0.229,0.224,0.225'.")] = None,
    bgr: Annotated[bool | None, typer.Option("--bgr/--rgb", help="Channel order the model expects (default: metadata, else RGB).")] = None,
    mcpu: Annotated[str | None, typer.Option(help="LLVM cpu to target (default: this host's, e.g. sapphirerapids).")] = None,
    num_cores: Annotated[int | None, typer.Option(help="Cores the artifact's thread pool plans for.")] = None,
    dump_ir: Annotated[Path | None, typer.Option(help="Write the IR after every pass into this folder.")] = None,
    schedules: Annotated[bool, typer.Option("--schedules/--no-schedules", help="Use vcc's hand-written CPU schedules.")] = True,
    calib: Annotated[Path | None, typer.Option(help="int8: folder of calibration photos (or preprocessed .npy tensors).")] = None,
    calib_method: Annotated[str, typer.Option(help="int8: kl | kl-mxnet | percentile | minmax | mse.")] = "kl",
    percentile: Annotated[float, typer.Option(help="int8: percentile of |x| for --calib-method percentile.")] = 99.99,
    num_calib: Annotated[int, typer.Option(help="int8: calibration inputs used, chosen evenly over the sorted folder.")] = 50,
    calib_cache: Annotated[Path | None, typer.Option(help="int8: calibration cache file: reused when it matches, written when absent, refused when stale.")] = None,
    fallback: Annotated[str | None, typer.Option(help="int8: comma-separated node names kept in fp32.")] = None,
    emit_qdq: Annotated[Path | None, typer.Option(help="int8: also write the quantized model as QDQ ONNX (runs in ONNX Runtime).")] = None,
    attention_fp32: Annotated[bool, typer.Option("--attention-fp32/--quantize-attention", help="int8: keep convs on 1x1 maps (attention / pooling branches) outside recognised blocks in fp32 (default).")] = True,
    block_rules: Annotated[bool, typer.Option("--block-rules/--no-block-rules", help="int8: apply the quantization rules of recognised blocks (ARM / FFM attention vectors and ASPP / PPM pooling branches in fp32; default). --no-block-rules quantizes block members like any node.")] = True,
    output_fp32: Annotated[bool, typer.Option("--output-fp32/--quantize-output", help="int8: keep the convs that write the model output (the logits) in fp32 (default; a fraction of a percent of the MACs, and the last rounding before the argmax). --quantize-output quantizes them too.")] = True,
    eval_images: Annotated[str | None, typer.Option("--eval", help="Write accuracy.json / accuracy.html into the artifact: the build vs fp32 on these photos (DIR, or a labelled dataset NAME:DIR), leaving out those used for calibration.")] = None,
    max_drop: Annotated[float | None, typer.Option(help="int8: the mIoU-vs-fp32 points int8 may lose: the nodes that cost most move to fp32 until the simulated model is within it, measured on the --eval photos, else on the --calib photos calibration did not use. Not met: exit 1.")] = None,
    keep_best: Annotated[bool, typer.Option("--keep-best", help="int8 --max-drop: write the best artifact found even when the budget is not met (still exit 1).")] = False,
) -> None:
    """Compile MODEL into a TVM artifact (a library + manifest.json) for this CPU.

    --dtype int8 calibrates on --calib (KL by default), quantizes (per-channel int8 weights,
    per-tensor uint8/int8 activations) and writes calibration.json / calibration.html too.

    Preprocessing comes from the model's ONNX metadata (written by `vcc export`), else from
    --size/--mean/--std/--bgr, else the input shape with RGB and ImageNet mean/std.
    """
    from vcc.driver.build import BuildConfig
    from vcc.driver.build import build as run_build

    cfg = BuildConfig(model=model, out=out, dtype=dtype, size=tuple(size) if size else None,
                      mean=_parse_floats(mean, "--mean"), std=_parse_floats(std, "--std"), bgr=bgr,
                      mcpu=mcpu, num_cores=num_cores, dump_ir=dump_ir, schedules=schedules,
                      calib=calib, calib_method=calib_method, percentile=percentile, num_calib=num_calib,
                      calib_cache=calib_cache, emit_qdq=emit_qdq, attention_fp32=attention_fp32, block_rules=block_rules,
                      output_fp32=output_fp32, eval_images=eval_images, max_drop=max_drop, keep_best=keep_best,
                      fallback=tuple(f.strip() for f in fallback.split(",") if f.strip()) if fallback else ())
    result = run_build(cfg, progress=_echo)
    total = sum(result.stage_seconds.values())
    _echo(f"artifact written to {result.out} ({total:.1f} s)")


@app.command()
def run(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `vcc build`.")],
    image: Annotated[Path | None, typer.Argument(help="A photo: preprocessed per the manifest; writes a colour mask PNG.")] = None,
    input: Annotated[Path | None, typer.Option("--input", help="A raw input tensor (.npy) of the model's input shape.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write: .npy (raw logits) or .png (mask).")] = Path("out.png"),
    overlay: Annotated[Path | None, typer.Option("--overlay", help="Also write the photo with the mask blended over it (PNG, at the photo's size).")] = None,
) -> None:
    """Run an artifact on a photo (colour mask PNG, --overlay: blended over the photo) or on a
    raw .npy tensor (.npy logits)."""
    from vcc.runtime import load

    if (image is None) == (input is None):
        raise VccError("give either a photo (vcc run ARTIFACT photo.jpg) or --input x.npy, not both")
    if overlay is not None and image is None:
        raise VccError("--overlay needs a photo (vcc run ARTIFACT photo.jpg -o mask.png --overlay overlay.png)")
    pred = load(artifact)
    if input is not None:
        try:
            x = np.load(input)
        except (OSError, ValueError) as e:
            raise VccError(f"{input}: cannot read the .npy tensor ({e})") from e
        x = x.astype(np.float32) if x.dtype == np.float64 else x
    else:
        from vcc.calib.images import preprocess_image, read_rgb

        photo = read_rgb(image)
        x = preprocess_image(photo, pred.preprocess)
    y = pred(x)
    if output.suffix.lower() == ".npy":
        np.save(output, y)
        _echo(f"wrote {output} {y.dtype}{list(y.shape)}")
        return
    from vcc.reports.palette import save_mask

    if y.ndim != 4:
        raise VccError(f"the model's output {list(y.shape)} is not an NCHW map; write it as .npy")
    mask = y[0].argmax(0)
    save_mask(mask, output)
    classes, counts = np.unique(mask, return_counts=True)
    share = ", ".join(f"{c}: {k / mask.size:.1%}" for c, k in zip(classes, counts, strict=True))
    _echo(f"wrote {output} ({mask.shape[1]}x{mask.shape[0]} mask; classes {share})")
    if overlay is not None:
        from vcc.reports.ground_truth import argmax_at
        from vcc.reports.palette import save_overlay

        save_overlay(photo, argmax_at(y, (photo.size[1], photo.size[0])), overlay)
        _echo(f"wrote {overlay} (the mask over the photo, {photo.size[0]}x{photo.size[1]})")


@app.command()
def inspect(
    model: Annotated[Path, typer.Argument(help="An ONNX model.")],
    size: SizeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    show_ir: Annotated[bool, typer.Option("--ir/--no-ir", help="Print the IR after passes.")] = True,
) -> None:
    """Show a model as vcc sees it: op histogram, parameters, MACs, the blocks found (ARM, FFM,
    ASPP, HR fusion, residual, PPM) and the IR after passes."""
    from vcc.frontends.onnx_import import load_model
    from vcc.ir.analysis import count_macs, macs_by_op
    from vcc.ir.graph import format_graph
    from vcc.passes import PassManager, default_fp32_pipeline
    from vcc.passes.blocks import blocks_json, count_blocks

    graph = load_model(model, (1, 3, *size) if size else None)
    graph = PassManager(default_fp32_pipeline()).run(graph)
    info = {
        "model": str(model),
        "inputs": [{"name": i, "shape": list(graph.shape(i))} for i in graph.inputs],
        "outputs": [{"name": o, "shape": list(graph.shape(o))} for o in graph.outputs],
        "nodes": len(graph.nodes),
        "ops": graph.op_histogram(),
        "params": graph.num_parameters(),
        "macs": count_macs(graph),
        "macs_by_op": macs_by_op(graph),
        "metadata": graph.metadata,
        "blocks": blocks_json(graph),
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"model   {model}")
    for k in ("inputs", "outputs"):
        for v in info[k]:
            typer.echo(f"{k[:-1]:7s} {v['name']} {v['shape']}")
    typer.echo(f"params  {info['params']:,}")
    typer.echo(f"MACs    {info['macs']:,} ({info['macs'] / 1e9:.3f} G)")
    typer.echo(f"nodes   {info['nodes']}")
    typer.echo("ops     " + ", ".join(f"{op} {c}" for op, c in info["ops"].items()))
    counts = ", ".join(f"{k} {c}" for k, c in count_blocks(graph).items() if c)
    typer.echo(f"blocks  {len(graph.blocks)}" + (f" ({counts})" if counts else ""))
    for b in graph.blocks:
        first = ", ".join(b.nodes[:3]) + (", ..." if len(b.nodes) > 3 else "")
        typer.echo(f"  {b.kind:9s} {b.name}  {len(b.nodes)} nodes: {first}")
    if show_ir:
        typer.echo("")
        typer.echo(format_graph(graph))


DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", help="Labelled dataset: voc | celebamask | cityscapes | binary, or NAME:DIR (its root).")]
RemapOpt = Annotated[str | None, typer.Option(
    "--remap", help="celebamask only: score in another class order (face-parsing: the face-parsing BiSeNet's).")]


@app.command()
def compare(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `vcc build`.")],
    ref: Annotated[Path, typer.Option("--ref", help="The fp32 reference ONNX model (run with ONNX Runtime).")],
    images: Annotated[Path | None, typer.Option("--images", help="A folder of photos.")] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Root of a labelled dataset (photos + labels); needs --dataset.")] = None,
    dataset: DatasetOpt = None,
    remap: RemapOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write accuracy.json and accuracy.html into this folder.")] = None,
    min_agreement: Annotated[float | None, typer.Option(help="Gate: exit 1 when the argmax agreement with fp32 (0..1) is lower.")] = None,
    max_miou_drop: Annotated[float | None, typer.Option(help="Gate: exit 1 when mIoU drops by more points (0..100) than this: fp32 minus artifact against the labels, else 100 x (1 - mIoU vs the fp32 argmax).")] = None,
    layers: Annotated[bool, typer.Option("--layers/--no-layers", help="Per-layer errors of an int8 artifact (QDQ simulation).")] = True,
    layer_images: Annotated[int, typer.Option(help="Images the per-layer analysis runs on.")] = 8,
    limit: Annotated[int | None, typer.Option(help="At most this many images.")] = None,
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the accuracy.json document.")] = False,
) -> None:
    """The accuracy-diff report: an artifact against ONNX Runtime on the fp32 model.

    Over the photos: max |diff|, relative error, SQNR, cosine, argmax agreement and mIoU vs fp32;
    with labels, mIoU and per-class IoU of both; for int8, each quantized node's graphwise and
    layerwise error. --out writes accuracy.json and accuracy.html; a failed gate is exit 1."""
    from vcc.frontends.onnx_load import load_onnx_file
    from vcc.reports.accuracy import AccuracySettings, accuracy_report, check_gates, eval_set
    from vcc.runtime import load

    pred = load(artifact)
    load_onnx_file(ref)  # clear error for a missing / broken reference
    data = eval_set(images, dataset, labels, remap, limit)
    settings = AccuracySettings(threads=threads, layers=layers, layer_images=layer_images)
    report = accuracy_report(pred, data, ref, settings=settings)
    failures = check_gates(report, min_agreement, max_miou_drop)
    if out is not None:
        report.write(out)
    if as_json:
        typer.echo(report.to_json(), nl=False)
    else:
        _print_report(report.document)
    if out is not None:
        _echo(f"wrote {out / 'accuracy.json'} and {out / 'accuracy.html'}")
    for f in failures:
        _echo(f"FAILED: {f}")
    if failures:
        raise typer.Exit(1)


def _print_report(doc: dict) -> None:
    if "agreement" in doc:
        typer.echo(f"{'image':30s} {'max|diff|':>10s} {'rel err':>10s} {'SQNR dB':>8s} {'agree':>8s}")
        for r in doc["per_image"]:
            typer.echo(f"{r['name'][:30]:30s} {r['max_abs_diff']:10.3g} {r['rel_error']:10.3g} "
                       f"{r['sqnr_db']:8.1f} {r['agreement']:8.4%}")
        typer.echo(f"{'overall (' + str(doc['images']) + ' images)':30s} {doc['max_abs_diff']:10.3g} "
                   f"{doc['rel_error']:10.3g} {doc['sqnr_db']:8.1f} {doc['agreement']:8.4%}")
        if doc.get("disagreements"):
            typer.echo(f"{doc['disagreements']} pixels disagree, {doc['ties_within_error']} of them numerical "
                       "ties (reference top-2 margin <= 2 x max|diff|)")
    if "miou_artifact" in doc:
        ref = "miou_ref" in doc
        typer.echo(f"\n{doc['labels']['dataset']} labels, {doc['labels']['images']} images: mIoU "
                   + (f"fp32 {doc['miou_ref']:.2%}, " if ref else "") + f"artifact {doc['miou_artifact']:.2%}")
        for c in doc["per_class"]:
            if c["iou_artifact"] is None and c["iou_ref"] is None:
                continue
            fmt = lambda v: f"{v:8.2%}" if v is not None else f"{'-':>8s}"  # noqa: E731
            typer.echo(f"  {c['class']:3d} {c['name'][:20]:20s}" + (f" {fmt(c['iou_ref'])}" if ref else "")
                       + f" {fmt(c['iou_artifact'])}")
    if doc.get("layers"):
        typer.echo("\nworst layers (layerwise SQNR, graphwise SQNR, dB):")
        for r in doc["layers"][:5]:
            typer.echo(f"  {r['node'][:50]:50s} {r['op']:10s} {r['layerwise_sqnr_db']:6.1f} {r['graphwise_sqnr_db']:6.1f}")
    typer.echo(doc["verdict"])


@app.command("eval")
def eval_cmd(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `vcc build`.")],
    dataset: Annotated[str, typer.Option("--dataset", help="NAME:DIR: voc | celebamask | cityscapes | binary and its root.")],
    remap: RemapOpt = None,
    ref: Annotated[Path | None, typer.Option("--ref", help="Also score the fp32 model (ONNX Runtime) for the difference.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write accuracy.json and accuracy.html into this folder.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many images.")] = None,
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the accuracy.json document.")] = False,
) -> None:
    """Score an artifact against a labelled dataset: mIoU, pixel accuracy and per-class IoU."""
    from vcc.reports.accuracy import AccuracySettings, accuracy_report, eval_set
    from vcc.runtime import load

    pred = load(artifact)
    data = eval_set(None, dataset, None, remap, limit)
    report = accuracy_report(pred, data, ref, settings=AccuracySettings(threads=threads, layers=False))
    if out is not None:
        report.write(out)
    if as_json:
        typer.echo(report.to_json(), nl=False)
    else:
        _print_report(report.document)


@app.command()
def calibrate(
    model: Annotated[Path, typer.Argument(help="The ONNX model to calibrate.")],
    calib: Annotated[Path, typer.Option(help="Folder of calibration photos (or preprocessed .npy tensors).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="calibration.json to write (calibration.html beside it).")] = Path("calibration.json"),
    size: SizeOpt = None,
    mean: Annotated[str | None, typer.Option(help="Per-channel mean in 0..1 pixel units.")] = None,
    std: Annotated[str | None, typer.Option(help="Per-channel std in 0..1 pixel units.")] = None,
    bgr: Annotated[bool | None, typer.Option("--bgr/--rgb", help="Channel order the model expects.")] = None,
    calib_method: Annotated[str, typer.Option(help="kl | kl-mxnet | percentile | minmax | mse.")] = "kl",
    percentile: Annotated[float, typer.Option(help="Percentile of |x| for --calib-method percentile.")] = 99.99,
    num_calib: Annotated[int, typer.Option(help="Calibration inputs used, chosen evenly over the sorted folder.")] = 50,
    fallback: Annotated[str | None, typer.Option(help="Comma-separated node names kept in fp32.")] = None,
) -> None:
    """Run the calibration stage alone: calibration.json (also a calibration cache that
    `vcc build --calib-cache` reuses with the same options) and calibration.html."""
    from vcc.calib.calibrate import CalibrationSettings, write_json
    from vcc.calib.calibrate import calibrate as run_calibration
    from vcc.calib.dataset import calibration_source
    from vcc.frontends.onnx_import import load_model
    from vcc.ir.preprocess import resolve_preprocess
    from vcc.passes import PassManager, default_fp32_pipeline
    from vcc.passes.quantize import plan_quantization
    from vcc.reports.calibration import write_calibration_html
    from vcc.runtime.artifact import sha256_file

    graph = load_model(model, (1, 3, *size) if size else None)
    graph = PassManager(default_fp32_pipeline()).run(graph)
    shape = graph.shape(graph.inputs[0])
    pre = resolve_preprocess(graph.metadata, shape, size, _parse_floats(mean, "--mean"),
                             _parse_floats(std, "--std"), bgr)
    plan = plan_quantization(graph, tuple(f.strip() for f in fallback.split(",") if f.strip()) if fallback else ())
    source = calibration_source(calib, shape, pre, num_calib)
    result = run_calibration(graph, plan, source, sha256_file(model), pre.to_dict(),
                             CalibrationSettings(calib_method, percentile, num_calib))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, result.document)
    html = write_calibration_html(output.with_suffix(".html"), result)
    _echo(f"{len(plan.tensors)} tensors calibrated ({calib_method}, {result.document['summary']['images_used']} "
          f"{source.kind}, {result.seconds:.1f} s): wrote {output} and {html}")


@app.command("export")
def export_cmd(
    name: Annotated[str, typer.Argument(help="Zoo model name (see `vcc zoo`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write.")],
    weights: Annotated[Path | None, typer.Option(help="Upstream checkpoint (.pth): a state_dict, or one wrapped under model_state / state_dict / model.")] = None,
    size: SizeOpt = None,
    classes: Annotated[int | None, typer.Option(help="Number of classes of the head (default: the seed model's).")] = None,
    train: Annotated[bool, typer.Option("--train", help="Train it (person: on $VCC_DATA's person photos, about a minute on 2 cores; cached under $VCC_CACHE by its recipe) and export the trained weights.")] = False,
    split: Annotated[Path | None, typer.Option(help="--train: also write the training split here as links to the photos: DIR/train/images, DIR/heldout/{images,masks} (a binary dataset).")] = None,
) -> None:
    """Export a zoo model to ONNX (eval mode, main logits at input resolution), with its
    preprocessing and class count in the ONNX metadata for `vcc build`."""
    from vcc.frontends.zoo.export import export_zoo_model

    if train or split is not None:
        _export_trained(name, out, weights, size, classes, train, split)
        return
    if weights is None:
        _echo(f"no --weights given: exporting {name} with a seeded initialisation (not a trained model)")
    path = export_zoo_model(name, out, weights, tuple(size) if size else None, classes)
    _echo(f"wrote {path}")


def _export_trained(name: str, out: Path, weights, size, classes, train: bool, split: Path | None) -> None:
    from vcc.frontends.zoo.export import export_trained_module
    from vcc.frontends.zoo.train import trained_model, write_split

    if not train:
        raise VccError("--split writes the split of --train; give --train too")
    if weights is not None or classes not in (None, 2):
        raise VccError("--train trains the 2-class person model from its seeded initialisation; "
                       "--weights / --classes do not apply")
    trained = trained_model(name, log=_echo)
    side = (trained.recipe.size, trained.recipe.size)
    desc = f"trained by vcc: {trained.weights.name}, held-out person IoU {trained.heldout_iou:.4f}"
    export_trained_module(name, trained.module, out, tuple(size) if size else side, desc)
    _echo(f"held-out person IoU {trained.heldout_iou:.3f} on {len(trained.split.heldout)} photos "
          f"({trained.split.heldout[0][0].name} .. {trained.split.heldout[-1][0].name} of {trained.split.folder})")
    if split is not None:
        write_split(trained.split, split)
        _echo(f"wrote the split to {split}: train/images ({len(trained.split.train)} photos), "
              f"heldout/images + heldout/masks ({len(trained.split.heldout)}), links to {trained.split.folder}")
    _echo(f"wrote {out}")


@app.command()
def summary(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `vcc build`.")],
    files: Annotated[list[Path] | None, typer.Argument(help="More outputs to list: report folders (their .html), PNGs.")] = None,
) -> None:
    """Print the artifact's reports and the given outputs (each path checked), and the
    artifact-vs-fp32 figures of the last accuracy.json among them (else the artifact's) in one line."""
    from vcc.reports.accuracy_gates import summary_line
    from vcc.runtime.artifact import read_manifest

    manifest = read_manifest(artifact, check_files=False)
    reports = [artifact / f for f in manifest["files"] if f.endswith(".html")]
    images, accuracy = [], artifact / "accuracy.json" if "accuracy.json" in manifest["files"] else None
    for f in files or []:
        if f.is_dir():
            reports += sorted(f.glob("*.html"))
            accuracy = f / "accuracy.json" if (f / "accuracy.json").is_file() else accuracy
        elif f.is_file():
            (reports if f.suffix.lower() == ".html" else images).append(f)
        else:
            raise VccError(f"{f}: no such file or folder")
    typer.echo("reports: " + " ".join(map(str, reports)))
    if images:
        typer.echo("images:  " + " ".join(map(str, images)))
    if accuracy is None:
        raise VccError(f"{artifact}: no accuracy.json (build with --eval, or give a `vcc compare --out` folder)")
    typer.echo(summary_line(json.loads(accuracy.read_text())))


@app.command()
def zoo(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    macs: Annotated[bool, typer.Option("--macs/--no-macs", help="Count MACs at the seed shape.")] = True,
) -> None:
    """List the zoo models: parameters, MACs at their seed shape, input size and preprocessing."""
    import torch

    from vcc.frontends.zoo import zoo_models
    from vcc.frontends.zoo.export import count_macs, count_params

    rows = []
    for name, entry in sorted(zoo_models().items()):
        with torch.device("meta"):
            params = count_params(entry.build(entry.classes))
        rows.append({"name": name, "family": entry.family, "params": params,
                     "macs": count_macs(entry) if macs else None, "input_size": list(entry.input_size),
                     "mean": list(entry.mean), "std": list(entry.std), "classes": entry.classes,
                     "seed_params_m": entry.seed_params_m, "seed_flops_g": entry.seed_flops_g,
                     "upstream": entry.upstream})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'name':26s} {'params':>12s} {'seed (M)':>9s} {'GMACs':>9s} {'input':>9s} classes  mean / std")
    for r in rows:
        gmacs = f"{r['macs'] / 1e9:9.3f}" if r["macs"] is not None else f"{'-':>9s}"
        typer.echo(f"{r['name']:26s} {r['params']:12,d} {r['seed_params_m']:>9s} {gmacs} "
                   f"{'x'.join(map(str, r['input_size'])):>9s} {r['classes']:7d}  {r['mean']} / {r['std']}")


@app.command()
def bench(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `vcc build`.")],
    ref: Annotated[Path | None, typer.Option("--ref", help="fp32 ONNX model to time with ONNX Runtime beside it "
                                             "(and, for an int8 artifact, ONNX Runtime's own int8 QDQ model of it).")] = None,
    threads: Annotated[int, typer.Option(help="Threads for both the artifact and ONNX Runtime.")] = 2,
    runs: Annotated[int, typer.Option(help="Timed runs (after 2 warm-up runs).")] = 10,
    calib: Annotated[Path | None, typer.Option(help="Photos (or .npy tensors) for ONNX Runtime's int8 calibration; "
                                               "default: 8 random inputs (scales do not change its speed).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Latency of an artifact (median, p90) and, on the same input and threads, of ONNX Runtime
    on the reference model and, for an int8 artifact, on ONNX Runtime's int8 QDQ model of it.
    The engines are timed in alternating rounds of 5 runs, so machine drift hits all alike."""
    from vcc.runtime.bench import measure_alternating, set_threads

    set_threads(threads)
    from vcc.runtime import load
    from vcc.runtime.reference import OrtSession

    pred = load(artifact)
    shape = pred.input["shape"]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    result = {"threads": threads, "input_shape": shape, "dtype": pred.manifest.get("dtype")}
    engines = {"artifact": lambda: pred.time_once(x)}
    if ref is not None:
        sess = OrtSession(ref, threads=threads)
        engines["ort_fp32"] = lambda: sess.run(x)
        if result["dtype"] == "int8":
            with tempfile.TemporaryDirectory(prefix="vcc-bench-") as tmp:
                q = _ort_int8_model(ref, Path(tmp) / "ort-int8.onnx", calib, shape, pred.preprocess)
                qsess = OrtSession(q, threads=threads)  # holds the model in memory
            engines["ort_int8"] = lambda: qsess.run(x)
    lat = measure_alternating(engines, runs)
    art = lat["artifact"]
    result["artifact_ms"] = round(art.median_ms, 3)
    result["artifact"] = art.to_dict() | {"path": str(artifact)}
    lines = [f"vcc artifact          median {art.median_ms:9.2f} ms   p90 {art.p90_ms:9.2f} ms"]
    if "ort_fp32" in lat:
        ort = lat["ort_fp32"]
        result["ort_fp32_ms"] = round(ort.median_ms, 3)
        result["ort_fp32"] = ort.to_dict()
        result["ratio_vs_ort_fp32"] = round(art.median_ms / ort.median_ms, 3)
        lines.append(f"ONNX Runtime fp32     median {ort.median_ms:9.2f} ms   p90 {ort.p90_ms:9.2f} ms")
    if "ort_int8" in lat:
        qort = lat["ort_int8"]
        result["ort_int8_ms"] = round(qort.median_ms, 3)
        result["ort_int8"] = qort.to_dict() | {"calibration": str(calib) if calib else "8 random inputs"}
        result["ratio_vs_ort_int8"] = round(art.median_ms / qort.median_ms, 3)
        lines.append(f"ONNX Runtime int8 QDQ median {qort.median_ms:9.2f} ms   p90 {qort.p90_ms:9.2f} ms")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"threads {threads}, input {shape}, {runs} runs after 2 warm-up, engines alternating in rounds of 5")
    for line in lines:
        typer.echo(line)
    if "ratio_vs_ort_fp32" in result:
        typer.echo(f"ratio vcc / ORT fp32: {result['ratio_vs_ort_fp32']:.2f}x")
    if "ratio_vs_ort_int8" in result:
        typer.echo(f"ratio vcc / ORT int8: {result['ratio_vs_ort_int8']:.2f}x")


@app.command()
def deploy(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory from `vcc build`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write (bin/ lib/ include/ model/ README).")],
    build_dir: Annotated[Path | None, typer.Option(help="An existing CMake build of the C++ runtime (default: built once under ~/.cache/vcc/cpp-build).")] = None,
) -> None:
    """A self-contained bundle that runs ARTIFACT without Python: bin/vcc_run, lib/ (libvcc_runtime
    and the TVM runtime, rpath $ORIGIN/../lib), include/, the artifact in model/, a README."""
    from vcc.driver.deploy import bundle_bytes
    from vcc.driver.deploy import deploy as make_bundle

    path = make_bundle(artifact, out, build_dir)
    sizes = bundle_bytes(path)
    parts = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items())
    _echo(f"wrote {path} ({sum(sizes.values()) / 1e6:.1f} MB: {parts}); run: {path}/bin/vcc_run {path}/model photo.jpg -o mask.png")


def _ort_int8_model(ref: Path, out: Path, calib: Path | None, shape, preprocess) -> Path:
    """ONNX Runtime's quantize_static of `ref` (QDQ, per-channel, Entropy), written to `out`."""
    from vcc.runtime.reference import ort_quantize_static

    if calib is not None:
        from vcc.calib.dataset import calibration_source

        inputs = list(calibration_source(calib, shape, preprocess, 8))
    else:
        rng = np.random.default_rng(1)
        inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)]
    typer.echo(f"quantizing {ref} with ONNX Runtime (QDQ, per-channel, Entropy) for the int8 comparison",
               err=True)
    return ort_quantize_static(ref, out, inputs, "entropy")


MAX_ERROR_CHARS = 400


def error_line(e: BaseException) -> str:
    """One line for an error: newlines folded, long messages (IR dumps) cut to MAX_ERROR_CHARS.
    A VccError is bad input; anything else that reaches the CLI is a vcc bug, said so."""
    text = str(e) if isinstance(e, VccError) else f"internal error ({type(e).__name__}: {e}); this is a vcc bug"
    text = " ".join(text.split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS - 5] + " ...]" if "[" in text[:MAX_ERROR_CHARS] else text[:MAX_ERROR_CHARS - 4] + " ..."
    return f"error: {text}"


def _close_progress_bars() -> None:
    """Close every live tqdm bar (an exception can leave one open mid-line) before an error prints."""
    tqdm_mod = sys.modules.get("tqdm")
    if tqdm_mod is None:
        return
    for bar in list(getattr(tqdm_mod.tqdm, "_instances", ())):
        try:
            bar.leave = False
            bar.close()
        except Exception:  # a bar in a broken state: the error line matters more
            pass
    sys.stderr.flush()


def run_cli(argv: list[str]) -> int:
    """Run the command line on `argv` in this process and return its exit code: 0, 1 (a failed
    gate, or a vcc bug: one line, the traceback only with VCC_DEBUG=1), 2 (bad input: a
    VccError, one line)."""
    import os
    import traceback

    try:
        app(argv)  # typer's standalone mode: usage errors, --help, typer.Exit become SystemExit
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:
        _close_progress_bars()
        sys.stdout.flush()
        if os.environ.get("VCC_DEBUG") and not isinstance(e, VccError):
            traceback.print_exc()
        # a progress line left open ("[compile] ..." without its newline) is closed first
        sys.stderr.write(error_line(e) + "\n")
        sys.stderr.flush()
        return getattr(e, "exit_code", 2) if isinstance(e, VccError) else 1


def main() -> None:
    import os

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    code = run_cli(sys.argv[1:])
    if code in (1, 2):
        # leave without running the interpreter's teardown: TVM objects collected then print
        # warnings ("BlockBuilder destroyed with remaining blocks!") after the error line
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
