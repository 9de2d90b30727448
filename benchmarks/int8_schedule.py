"""int8 convolutions under vcc's VNNI schedule vs ONNX Runtime's int8 QDQ model, 2 threads.

    python benchmarks/int8_schedule.py [--runs 20] [--threads 2]

Two fp32 ONNX models are quantized by ONNX Runtime (QDQ, per-channel int8 weights, uint8
activations, MinMax on random data); the same QDQ model is then imported by vcc, lowered
(int8 convs on the integers) and compiled with `optimize_for_cpu`; ONNX Runtime runs the QDQ
model. Models: one 3x3 128 -> 128 conv + ReLU at 64x64, and a small seven-conv net at 192x192
(RGB stem, 3x3 and 1x1 convs, one depthwise).
The scheduled output is also checked bit for bit against vcc's unscheduled int8 build.
The machine is shared (2 vCPUs): the figures are noisy, medians of `--runs` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vcc.runtime.codegen import host_mcpu  # noqa: E402

# this host's cpu by its flags (an AVX-512 / VNNI target on an AVX2-only host dies of SIGILL)
TARGET = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": host_mcpu(), "num-cores": 2}


def conv_model(shape: tuple[int, ...], convs: list[tuple[int, ...]], seed: int = 0
               ) -> onnx.ModelProto:
    """fp32 ONNX: a chain of (cin, cout, k, stride[, groups]) Conv + Relu."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    out = list(shape)
    for k, (cin, cout, ks, stride, *rest) in enumerate(convs):
        groups = rest[0] if rest else 1
        out = [out[0], cout, *((v + 2 * (ks // 2) - ks) // stride + 1 for v in out[2:])]
        fan_in = cin // groups * ks * ks
        w = (rng.standard_normal((cout, cin // groups, ks, ks)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}")]
        nodes.append(helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [f"c{k}"], kernel_shape=[ks, ks],
                                      pads=[ks // 2] * 4, strides=[stride, stride], group=groups))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"]))
        x = f"r{k}"
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, out)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def vcc_int8_graph(graph, fp32: onnx.ModelProto, calib: list[np.ndarray]):
    """vcc's own QDQ graph: its quantization plan, MinMax thresholds from ORT's fp32 run."""
    import onnxruntime as ort

    from vcc.passes.quantize import TensorQuant, insert_qdq, plan_quantization

    plan = plan_quantization(graph)
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    names = [t for t in plan.tensors if t not in graph.inputs]
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                              for t in names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    lo = {t: np.inf for t in plan.tensors}
    hi = {t: -np.inf for t in plan.tensors}
    for x in calib:
        got = sess.run(names, {"x": x}) if names else []
        values = dict(zip(["x", *names], [x, *got], strict=True))
        for t in plan.tensors:
            lo[t] = min(lo[t], float(values[t].min()))
            hi[t] = max(hi[t], float(values[t].max()))
    quant = {t: TensorQuant.from_threshold(max(abs(lo[t]), hi[t]), lo[t] >= 0) for t in plan.tensors}
    return insert_qdq(graph, plan, quant)


def interleaved_ms(fns: list[Callable[[], object]], runs: int, block: int = 5
                   ) -> list[tuple[float, float, float]]:
    """(median, p90, min) ms of each function, in alternating blocks of `block` runs so that load
    spikes hit all alike; each block starts with an untimed call and follows a short pause
    (the runtimes' spinning worker threads would otherwise steal the next one's cores)."""
    times: list[list[float]] = [[] for _ in fns]
    while len(times[0]) < runs:
        for fn, ts in zip(fns, times, strict=True):
            time.sleep(0.05)
            fn()
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                ts.append(1e3 * (time.perf_counter() - t0))
    return [(float(np.median(ts)), float(np.percentile(ts, 90)), float(np.min(ts))) for ts in times]


def tvm_runner(mod, x: np.ndarray):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.compile(mod, target=tvm.target.Target(TARGET)), tvm.cpu())
    arg = tvm.runtime.tensor(x)
    return lambda: vm["main"](arg).numpy()


def bench(name: str, fp32: onnx.ModelProto, shape: tuple[int, ...], runs: int, threads: int,
          check_default: bool) -> None:
    import onnxruntime as ort
    from benchmarks_common import ort_quantize_static

    from vcc.frontends.onnx_import import load_model
    from vcc.runtime.lower import lower_to_relax
    from vcc.runtime.schedules import optimize_for_cpu

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, shape).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(fp32, src)
        calib = [rng.uniform(0, 1, shape).astype(np.float32) for _ in range(4)]
        qdq_path = ort_quantize_static(src, Path(tmp) / "qdq.onnx", calib, "minmax")
        qdq = onnx.load(str(qdq_path))
        graph = vcc_int8_graph(load_model(src), fp32, calib)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(qdq.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}

    mod = lower_to_relax(graph)
    t0 = time.perf_counter()
    opt, report = optimize_for_cpu(mod, TARGET)
    run_opt = tvm_runner(opt, x)
    build_s = time.perf_counter() - t0
    print(f"== {name}: input {shape}, built in {build_s:.1f} s")
    print(report.table())
    out = run_opt()
    if check_default:
        ref = tvm_runner(mod, x)()
        same = ref.shape == out.shape and np.array_equal(ref, out)
        print(f"scheduled == unscheduled int8 build, bit for bit: {same}")
    ort_out = sess.run(None, feed)[0]
    print(f"max |vcc int8 - ORT int8| = {np.abs(out - ort_out).max():.4g} "
          f"(ORT output range {ort_out.min():.3g}..{ort_out.max():.3g}; different calibrations)")
    labels = ["vcc int8 (VNNI schedule)", "ORT int8 QDQ"]
    results = dict(zip(labels, interleaved_ms([run_opt, lambda: sess.run(None, feed)], runs),
                       strict=True))
    for label, (med, p90, best) in results.items():
        print(f"  {label:28s} median {med:7.2f} ms   p90 {p90:7.2f} ms   min {best:7.2f} ms")
    vcc, ref = results["vcc int8 (VNNI schedule)"], results["ORT int8 QDQ"]
    print(f"  vcc / ORT = {vcc[0] / ref[0]:.2f} x medians, {vcc[2] / ref[2]:.2f} x minima "
          f"({threads} threads, {runs} runs, shared noisy machine)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    layer = conv_model((1, 128, 64, 64), [(128, 128, 3, 1)])
    bench("conv3x3_128_64x64", layer, (1, 128, 64, 64), args.runs, args.threads, True)
    net = [(3, 32, 3, 2), (32, 64, 3, 1), (64, 64, 3, 1), (64, 128, 3, 2), (128, 128, 3, 1),
           (128, 128, 3, 1, 128), (128, 32, 1, 1)]
    bench("small_net_192", conv_model((1, 3, 192, 192), net), (1, 3, 192, 192), args.runs,
          args.threads, True)


if __name__ == "__main__":
    main()
