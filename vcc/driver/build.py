"""The build driver: model file -> IR -> passes -> Relax -> compiled artifact.

Each stage is timed and reported through `progress`; the configuration is one frozen object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import vcc
from vcc.errors import BudgetNotMet, VccError
from vcc.ir.graph import Graph
from vcc.passes.blocks import block_of, blocks_json

SUPPORTED_DTYPES = ("fp32", "int8")


@dataclass(frozen=True)
class BuildConfig:
    model: Path
    out: Path
    dtype: str = "fp32"
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool | None = None
    mcpu: str | None = None
    num_cores: int | None = None
    dump_ir: Path | None = None
    schedules: bool = True
    # int8
    calib: Path | None = None
    calib_method: str = "kl"
    percentile: float = 99.99
    num_calib: int = 50
    calib_cache: Path | None = None
    fallback: tuple[str, ...] = ()
    attention_fp32: bool = True
    block_rules: bool = True
    output_fp32: bool = True
    emit_qdq: Path | None = None
    # --eval: accuracy report (accuracy.json / .html in the artifact) on photos not used for
    # calibration: a folder of photos, or a labelled dataset as NAME:DIR (voc:photos/)
    eval_images: str | None = None
    # --max-drop: move the nodes that cost most to fp32 until the simulated int8 model is within
    # this many points of mIoU vs fp32 (on the --eval photos, else calibration's held-out ones)
    max_drop: float | None = None
    keep_best: bool = False
    search_images: int = 16


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    stage_seconds: dict[str, float] = field(default_factory=dict)
    graph: Graph | None = None


class StageTimer:
    def __init__(self, progress: Callable[[str], None]):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self.progress(f"[{name}] ...")
        yield
        dt = time.perf_counter() - t0
        self.seconds[name] = round(dt, 3)
        self.progress(f"[{name}] done in {dt:.2f} s")


def _input_shape(cfg: BuildConfig) -> tuple[int, ...] | None:
    if cfg.size is None:
        return None
    return (1, 3, int(cfg.size[0]), int(cfg.size[1]))


def build(cfg: BuildConfig, progress: Callable[[str], None] = lambda s: None) -> BuildResult:
    from vcc.frontends.onnx_import import load_model
    from vcc.ir.preprocess import resolve_preprocess
    from vcc.passes import PassManager, default_fp32_pipeline
    from vcc.runtime.artifact import LIBRARY, sha256_file, write_artifact
    from vcc.runtime.codegen import compile_relax, cpu_target, export_executable, target_description
    from vcc.runtime.lower import lower_to_relax

    if cfg.dtype not in SUPPORTED_DTYPES:
        raise VccError(f"--dtype {cfg.dtype!r} is not supported yet (supported: {', '.join(SUPPORTED_DTYPES)})")
    timer = StageTimer(progress)
    with timer.stage("import"):
        graph = load_model(cfg.model, _input_shape(cfg))
        if len(graph.inputs) != 1:
            raise VccError(f"{cfg.model}: vcc builds single-input models; this one has inputs {graph.inputs}")
        in_shape = graph.shape(graph.inputs[0])
        pre = resolve_preprocess(graph.metadata, in_shape, cfg.size, cfg.mean, cfg.std, cfg.bgr)
        progress(f"  input {graph.inputs[0]} {list(in_shape)}, {len(graph.nodes)} nodes; "
                 f"preprocessing from {pre.source}: size {list(pre.size)}, mean {list(pre.mean)}, "
                 f"std {list(pre.std)}, {pre.color}")
    with timer.stage("passes"):
        pm = PassManager(default_fp32_pipeline(), dump_dir=cfg.dump_ir)
        graph = pm.run(graph)
        progress(f"  {len(graph.nodes)} nodes after {', '.join(r.name for r in pm.records)}")
    calibration = search = None
    precisions = {n.name: "fp32" for n in graph.nodes}
    if cfg.max_drop is not None:
        if cfg.dtype != "int8":
            raise VccError("--max-drop applies to --dtype int8 builds")
        if not (cfg.max_drop >= 0 and cfg.max_drop < float("inf")):
            raise VccError(f"--max-drop {cfg.max_drop}: the budget is a number of mIoU points >= 0")
    if cfg.dtype == "int8":
        graph, calibration, precisions, search = _quantize_int8(cfg, graph, pre, timer, progress)
    with timer.stage("lower"):
        plain = lower_to_relax(graph)
        target = cpu_target(cfg.mcpu, cfg.num_cores)
        mod, schedule_report = plain, None
        if cfg.schedules:
            mod, schedule_report = _apply_schedules(plain, target, progress)
    with timer.stage("compile"):
        try:
            executable = compile_relax(mod, target)
        except Exception as e:
            if mod is plain:
                raise
            _schedule_failure(e, progress)
            schedule_report = {"failed": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            executable = compile_relax(plain, target)

    manifest = {
        "vcc_version": vcc.__version__,
        "dtype": cfg.dtype,
        "source_model": {"file": Path(cfg.model).name, "sha256": sha256_file(cfg.model)},
        "target": target_description(target),
        "inputs": [_io(graph, i) for i in graph.inputs],
        "outputs": [_io(graph, o) for o in graph.outputs],
        "preprocess": pre.to_dict(),
        "classes": _classes(graph),
        "blocks": blocks_json(graph),
        "nodes": _node_records(graph, precisions, block_of(graph)),
        "passes": [{"name": r.name, "seconds": round(r.seconds, 4), "nodes_after": r.nodes_after}
                   for r in pm.records],
        "schedules": schedule_report,
    }
    writers = {LIBRARY: lambda p: export_executable(executable, p)}
    if calibration is not None:
        from vcc.calib.calibrate import write_json

        manifest["quantization"] = {"scheme": "int8 per-channel symmetric weights, per-tensor uint8/int8 "
                                              "activations with zero point 0, int32 bias",
                                    "fallback": list(cfg.fallback) + (search.moved_nodes if search else []),
                                    "attention_fp32": cfg.attention_fp32,
                                    "block_rules": cfg.block_rules,
                                    "output_fp32": cfg.output_fp32,
                                    "fp32_nodes": calibration.document["summary"]["fp32_nodes"],
                                    "int8_nodes": [n["name"] for n in manifest["nodes"] if n["precision"] == "int8"]}
        if search is not None:
            with timer.stage("check"):
                manifest["precision_search"] = _check_search(search, executable, progress)
        manifest["calibration"] = {"method": cfg.calib_method, "file": "calibration.json",
                                   "images": calibration.document["summary"]["images_used"],
                                   "from_cache": calibration.from_cache,
                                   "seconds": round(calibration.seconds, 3),
                                   "key": calibration.document["key"]}
        writers["calibration.json"] = lambda p: write_json(p, calibration.document)
        try:
            from vcc.reports.calibration import write_calibration_html

            writers["calibration.html"] = lambda p: write_calibration_html(p, calibration)
        except ImportError:
            pass
    if cfg.eval_images is not None:
        with timer.stage("evaluate"):
            report = _evaluate(cfg, executable, manifest, calibration, pre, graph.shape(graph.inputs[0]))
            progress(f"  {report.document['verdict']}")
        writers["accuracy.json"] = report.write_json
        writers["accuracy.html"] = report.write_html
    if search is not None and not search.met:
        if not cfg.keep_best:
            raise BudgetNotMet(f"--max-drop {cfg.max_drop:g}: no fallback found within the budget "
                               f"(best: {search.best.drop:.2f} points with {search.best.moved} node(s) in fp32); "
                               "nothing written (--keep-best writes the best artifact found)")
    with timer.stage("write"):
        out = write_artifact(cfg.out, {**manifest, "build_seconds": timer.seconds}, writers)
    if search is not None and not search.met:
        raise BudgetNotMet(f"--max-drop {cfg.max_drop:g}: budget not met; the best artifact found "
                           f"({search.best.drop:.2f} points, {search.best.moved} node(s) in fp32) was "
                           f"written to {out} (--keep-best)")
    return BuildResult(out, manifest, timer.seconds, graph)


def _evaluate(cfg: BuildConfig, executable, manifest: dict, calibration, pre, input_shape):
    """--eval: the accuracy report of the compiled model (before it is written) against the fp32
    model, on the --eval photos that calibration did not use."""
    import tvm
    from tvm import relax

    from vcc.reports.accuracy import AccuracySettings, accuracy_report, eval_set_from_spec
    from vcc.runtime.artifact import Predictor

    used = []
    if calibration is not None and cfg.calib is not None:
        from vcc.calib.dataset import calibration_source

        used = calibration_source(cfg.calib, input_shape, pre, cfg.num_calib).files
    data = eval_set_from_spec(cfg.eval_images, exclude=used)
    device = tvm.cpu()
    predictor = Predictor(None, manifest, relax.VirtualMachine(executable, device), device)
    return accuracy_report(predictor, data, cfg.model, calibration.document if calibration else None,
                           AccuracySettings())


def _quantize_int8(cfg: BuildConfig, graph: Graph, pre, timer: StageTimer, progress):
    from vcc.calib.calibrate import CalibrationSettings, calibrate
    from vcc.calib.dataset import calibration_source
    from vcc.frontends.onnx_export import export_onnx
    from vcc.passes.quantize import insert_qdq, plan_quantization
    from vcc.runtime.artifact import sha256_file

    if cfg.calib is None:
        raise VccError("--dtype int8 needs calibration data: --calib DIR (photos or .npy tensors)")
    with timer.stage("calibrate"):
        plan = plan_quantization(graph, cfg.fallback, cfg.attention_fp32, block_rules=cfg.block_rules,
                                 output_fp32=cfg.output_fp32)
        source = calibration_source(cfg.calib, graph.shape(graph.inputs[0]), pre, cfg.num_calib)
        settings = CalibrationSettings(cfg.calib_method, cfg.percentile, cfg.num_calib)
        calibration = calibrate(graph, plan, source, sha256_file(cfg.model), pre.to_dict(), settings,
                                cfg.calib_cache)
        how = "from cache " + str(cfg.calib_cache) if calibration.from_cache else \
            f"{calibration.document['summary']['images_used']} {source.kind}"
        progress(f"  {len(plan.nodes)} nodes int8, {len(plan.skipped)} compute nodes fp32, "
                 f"{len(plan.tensors)} tensors calibrated ({cfg.calib_method}, {how})")
    search = None
    if cfg.max_drop is not None:
        with timer.stage("search"):
            search, plan, calibration = _precision_search(cfg, graph, pre, plan, source, settings,
                                                          calibration, progress)
    with timer.stage("quantize"):
        qgraph = insert_qdq(graph, plan, calibration.quant)
        if cfg.emit_qdq is not None:
            import onnx

            onnx.save(export_onnx(qgraph), str(cfg.emit_qdq))
            progress(f"  QDQ model written to {cfg.emit_qdq}")
    precisions = {n.name: "fp32" for n in qgraph.nodes}
    for name in plan.nodes:
        precisions[name] = "int8"
    for n in qgraph.nodes:
        if n.op in ("QuantizeLinear", "DequantizeLinear"):
            precisions[n.name] = n.op
    return qgraph, calibration, precisions, search


def _precision_search(cfg: BuildConfig, graph: Graph, pre, plan, source, settings, calibration, progress):
    """--max-drop: search the fallback on held-out photos; the plan and calibration to build."""
    from vcc.calib.calibrate import calibrate
    from vcc.calib.dataset import CalibrationSource, calibration_source, choose_evenly
    from vcc.driver.precision_search import search_fallback
    from vcc.passes.quantize import plan_quantization
    from vcc.runtime.artifact import sha256_file

    shape = graph.shape(graph.inputs[0])
    used = {p.resolve() for p in source.files}
    if cfg.eval_images is not None:
        from vcc.reports.accuracy import eval_set_from_spec

        files = eval_set_from_spec(cfg.eval_images, exclude=source.files).images
        held = CalibrationSource(Path(cfg.eval_images.partition(":")[2] or cfg.eval_images), files, "images",
                                 tuple(shape), pre)
        where = f"--eval {cfg.eval_images}"
    else:
        every = calibration_source(cfg.calib, shape, pre, None)
        held = CalibrationSource(every.folder, [p for p in every.files if p.resolve() not in used],
                                 every.kind, every.input_shape, pre)
        where = f"the photos of --calib {cfg.calib} that calibration did not use"
    held.files = choose_evenly(held.files, cfg.search_images)
    inputs = list(held)
    if not inputs:
        raise VccError(f"--max-drop needs photos calibration did not use, and {where} holds none: "
                       "give --eval DIR (or NAME:DIR), or fewer --num-calib than --calib has photos")
    progress(f"  searching the fp32 fallback for a drop <= {cfg.max_drop:g} points of mIoU vs fp32 "
             f"on {len(inputs)} held-out photos")

    def plan_for(extra):
        return plan_quantization(graph, tuple(cfg.fallback) + tuple(extra), cfg.attention_fp32,
                                 block_rules=cfg.block_rules, output_fp32=cfg.output_fp32)

    search = search_fallback(graph, plan_for, calibration.quant, inputs, [str(p) for p in held.files],
                             cfg.max_drop, progress)
    progress("  " + search.summary())
    if search.moved_nodes:  # calibrate the plan that is built, so calibration.json matches it
        plan = plan_for(search.moved_nodes)
        calibration = calibrate(graph, plan, source, sha256_file(cfg.model), pre.to_dict(), settings, None)
    return search, plan, calibration


def _check_search(search, executable, progress) -> dict:
    """The compiled artifact's own drop on the search photos, beside the simulation's."""
    import numpy as np
    import tvm
    from tvm import relax

    from vcc.reports.metrics import OutputComparison

    doc = search.to_dict()
    vm = relax.VirtualMachine(executable, tvm.cpu())
    cmp = OutputComparison()
    for x, ref in zip(search.inputs, search.references, strict=True):
        out = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x), tvm.cpu()))
        cmp.add(ref, (out if hasattr(out, "numpy") else out[0]).numpy())
    s = cmp.summary()
    drop = 100.0 * (1.0 - s["miou_vs_fp32"])
    doc["artifact"] = {"drop": round(drop, 4), "agreement": round(s["agreement"], 6),
                       "meets_budget": drop <= search.budget}
    progress(f"  the compiled artifact on the search photos: drop {drop:.2f} points, agreement "
             f"{100 * s['agreement']:.2f}%" + ("" if drop <= search.budget else
                                               f"  WARNING: over the {search.budget:g}-point budget "
                                               "(the simulation was within it)"))
    return doc


def _node_records(graph: Graph, precisions: dict[str, str], blocks: dict[str, str]) -> list[dict]:
    """Per node: op, precision, the (smallest) recognised block holding it and, for quantize /
    dequantize and int8 nodes, the scales."""
    producers = graph.producers()
    out = []
    for n in graph.nodes:
        rec = {"name": n.name, "op": n.op, "precision": precisions.get(n.name, "fp32")}
        if n.name in blocks:
            rec["block"] = blocks[n.name]
        if n.op in ("QuantizeLinear", "DequantizeLinear") and not graph.is_const(n.inputs[0]):
            rec["scale"] = float(graph.constants[n.inputs[1]].reshape(()))
            rec["dtype"] = str(graph.constants[n.inputs[2]].dtype)
        if rec["precision"] == "int8":
            dq_in = producers.get(n.inputs[0])
            dq_w = producers.get(n.inputs[1])
            if dq_in is not None and dq_in.op == "DequantizeLinear":
                rec["input_scale"] = float(graph.constants[dq_in.inputs[1]].reshape(()))
            if dq_w is not None and dq_w.op == "DequantizeLinear":
                rec["weight_scales"] = [float(v) for v in graph.constants[dq_w.inputs[1]].reshape(-1)]
        out.append(rec)
    return out


def _apply_schedules(mod, target, progress):
    try:
        from vcc.runtime.schedules import optimize_for_cpu
    except ImportError:
        return mod, None
    try:
        scheduled, report = optimize_for_cpu(mod, target)
    except Exception as e:  # a schedule bug must not cost the user the artifact
        _schedule_failure(e, progress)
        return mod, {"failed": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    progress(f"  schedules: {report.summary()}")
    total = report.macs()
    for f in report.fallbacks:  # ops left to TVM's default (slow) schedules, with their MAC share
        share = f"{100.0 * f.macs * f.calls / total:.1f}% of conv MACs" if total and f.macs else "no conv MACs"
        progress(f"  default schedule: {f.kind} x{f.calls} ({share}){': ' + f.note if f.note else ''}")
    untiled = report.untiled_convs
    big = [f for f in untiled if f.macs * f.calls >= 0.001 * total]
    for f in big:
        progress(f"  generic loop schedule (conv not tiled): {f.kind} x{f.calls} "
                 f"({100.0 * f.macs * f.calls / total:.1f}% of conv MACs)")
    if len(untiled) > len(big):  # convs on 1x1 maps (attention vectors, pooling branches)
        progress(f"  generic loop schedule: {len(untiled) - len(big)} more convs, under 0.1% of conv MACs each")
    return scheduled, {**report.to_dict(), "summary": report.summary()}


def _schedule_failure(e: Exception, progress) -> None:
    msg = str(e).strip().splitlines()
    progress(f"  WARNING: vcc's CPU schedules failed on this model ({type(e).__name__}: "
             f"{msg[-1] if msg else ''}); building with TVM's default schedules (slow). "
             "Please report this model.")


def _io(graph: Graph, name: str) -> dict:
    v = graph.values[name]
    return {"name": name, "shape": list(v.shape), "dtype": v.dtype,
            "layout": "NCHW" if len(v.shape) == 4 else ""}


def _classes(graph: Graph) -> int | None:
    meta = graph.metadata.get("vcc.classes")
    if meta is not None:
        return int(meta)
    shape = graph.shape(graph.outputs[0])
    return int(shape[1]) if len(shape) == 4 else None
