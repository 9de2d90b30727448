"""BiSeNet-like net at 1x3x512x512: TVM default compile vs optimize_for_cpu vs ONNX Runtime.

    TVM_NUM_THREADS=2 python benchmarks/schedule_proto.py [--size 512] [--runs 10]
        [--default-runs 10] [--report]

The same random weights build a Relax module (the high-level ops `lower_to_relax` emits) and
an ONNX model (onnx.helper); ONNX Runtime runs with intra_op_num_threads = TVM_NUM_THREADS
(2 unless set). Times are the median (and min) of --runs calls after one warm-up call, ONNX
Runtime and the optimized TVM build taking turns so both see the same background load. The
machine is shared: figures are noisy, compare them within one run of this script. With
TVM_NUM_THREADS=1 the "cpu ms" column (process CPU time per call) is a measure of the work
done that other processes' load barely moves; with 2 threads it includes TVM's spin-waiting.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

THREADS = int(os.environ.setdefault("TVM_NUM_THREADS", "2"))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tvm  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from tvm import relax  # noqa: E402

from vcc.runtime.codegen import host_mcpu  # noqa: E402
from vcc.runtime.schedules import optimize_for_cpu  # noqa: E402

R = relax.op
# this host's cpu by its flags (an AVX-512 / VNNI target on an AVX2-only host dies of SIGILL)
TARGET = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": host_mcpu(), "num-cores": 2}
N_CLASSES = 19


class RelaxNet:
    """Emits high-level Relax ops, as vcc.runtime.lower does (bias as a (1, C, 1, 1) add)."""

    def __init__(self, bb: relax.BlockBuilder):
        self.bb = bb

    def conv(self, x, w, b, stride=1, pad=0, dilation=1, groups=1):
        y = self.bb.emit(R.nn.conv2d(x, relax.const(w), strides=stride, padding=(pad,) * 4,
                                     dilation=dilation, groups=groups))
        return self.bb.emit(R.add(y, relax.const(b.reshape(1, -1, 1, 1))))

    def relu(self, x):
        return self.bb.emit(R.nn.relu(x))

    def sigmoid(self, x):
        return self.bb.emit(R.sigmoid(x))

    def add(self, a, b):
        return self.bb.emit(R.add(a, b))

    def mul(self, a, b):
        return self.bb.emit(R.multiply(a, b))

    def gap(self, x):
        return self.bb.emit(R.mean(x, axis=[2, 3], keepdims=True))

    def maxpool(self, x):
        return self.bb.emit(R.nn.max_pool2d(x, (3, 3), (2, 2), padding=(1, 1, 1, 1)))

    def concat(self, xs):
        return self.bb.emit(R.concat(xs, axis=1))

    def resize(self, x, size, mode):
        if mode == "nearest":
            return self.bb.emit(R.image.resize2d(x, size, method="nearest_neighbor",
                                                 coordinate_transformation_mode="asymmetric",
                                                 rounding_method="floor"))
        return self.bb.emit(R.image.resize2d(x, size, method="linear",
                                             coordinate_transformation_mode=mode))


class OnnxNet:
    """The same ops as ONNX nodes."""

    def __init__(self):
        self.nodes, self.inits = [], []
        self.count = 0

    def _name(self, op):
        self.count += 1
        return f"{op}_{self.count}"

    def _const(self, a):
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def _node(self, op, inputs, **attrs):
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x, w, b, stride=1, pad=0, dilation=1, groups=1):
        k = w.shape[2]
        return self._node("Conv", [x, self._const(w), self._const(b)], kernel_shape=[k, k],
                          strides=[stride] * 2, pads=[pad] * 4, dilations=[dilation] * 2,
                          group=groups)

    def relu(self, x):
        return self._node("Relu", [x])

    def sigmoid(self, x):
        return self._node("Sigmoid", [x])

    def add(self, a, b):
        return self._node("Add", [a, b])

    def mul(self, a, b):
        return self._node("Mul", [a, b])

    def gap(self, x):
        return self._node("GlobalAveragePool", [x])

    def maxpool(self, x):
        return self._node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    def concat(self, xs):
        return self._node("Concat", list(xs), axis=1)

    def resize(self, x, size, mode, channels=None):
        sizes = self._const(np.array([1, channels, *size], np.int64))
        if mode == "nearest":
            return self._node("Resize", [x, "", "", sizes], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return self._node("Resize", [x, "", "", sizes], mode="linear",
                          coordinate_transformation_mode=mode)


class Weights:
    """He-initialised random conv weights (BN folded: every conv has a bias)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def conv(self, cin, cout, k, groups=1):
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)
        b = self.rng.standard_normal(cout) * 0.1
        return w.astype(np.float32), b.astype(np.float32)


def bisenet(net, wts: Weights, x, size: int):
    """ResNet18 context path + ARM/FFM attention, concat and resize heads (face-parsing BiSeNet)."""

    def cbr(t, cin, cout, k, stride=1, relu=True):
        w, b = wts.conv(cin, cout, k)
        y = net.conv(t, w, b, stride=stride, pad=k // 2)
        return net.relu(y) if relu else y

    def basic(t, cin, cout, stride):
        y = cbr(t, cin, cout, 3, stride)
        y = cbr(y, cout, cout, 3, relu=False)
        short = cbr(t, cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else t
        return net.relu(net.add(y, short))

    def arm(t, cin, cout):
        feat = cbr(t, cin, cout, 3)
        att = net.sigmoid(cbr(net.gap(feat), cout, cout, 1, relu=False))
        return net.mul(feat, att)

    def resize(t, ch, hw, mode):
        if isinstance(net, OnnxNet):
            return net.resize(t, (hw, hw), mode, channels=ch)
        return net.resize(t, (hw, hw), mode)

    s8, s16, s32 = (size // f for f in (8, 16, 32))
    y = cbr(x, 3, 64, 7, stride=2)
    y = net.maxpool(y)
    for cin, cout, stride in ((64, 64, 1), (64, 64, 1)):
        y = basic(y, cin, cout, stride)
    feat8 = basic(basic(y, 64, 128, 2), 128, 128, 1)
    feat16 = basic(basic(feat8, 128, 256, 2), 256, 256, 1)
    feat32 = basic(basic(feat16, 256, 512, 2), 512, 512, 1)

    avg = cbr(net.gap(feat32), 512, 128, 1)
    avg_up = resize(avg, 128, s32, "nearest")
    f32 = net.add(arm(feat32, 512, 128), avg_up)
    f32_up = cbr(resize(f32, 128, s16, "nearest"), 128, 128, 3)
    f16 = net.add(arm(feat16, 256, 128), f32_up)
    f16_up = cbr(resize(f16, 128, s8, "nearest"), 128, 128, 3)

    fcat = net.concat([feat8, f16_up])  # FFM
    feat = cbr(fcat, 256, 256, 1)
    att = cbr(net.gap(feat), 256, 64, 1)
    att = net.sigmoid(cbr(att, 64, 256, 1, relu=False))
    fuse = net.add(net.mul(feat, att), feat)

    head = cbr(fuse, 256, 256, 3)
    w, b = wts.conv(256, N_CLASSES, 1)
    logits = net.conv(head, w, b)
    return resize(logits, N_CLASSES, size, "align_corners")


def build_relax(size: int, seed: int = 0) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, size, size), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bisenet(RelaxNet(bb), Weights(seed), x, size)
            out = bb.emit_output(out)
        bb.emit_func_output(out)
    return bb.get()


def build_onnx(size: int, seed: int = 0) -> onnx.ModelProto:
    net = OnnxNet()
    out = bisenet(net, Weights(seed), "x", size)
    graph = helper.make_graph(
        net.nodes, "bisenet_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, N_CLASSES, size, size])],
        initializer=net.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def time_calls(fns: list[Callable[[], object]], runs: int) -> list[tuple[float, float, float]]:
    """Per function (median wall s, min wall s, median CPU s) of `runs` calls, taking turns,
    after one warm-up call each."""
    for fn in fns:
        fn()
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for k, fn in enumerate(fns):
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return [(float(np.median(w)), float(np.min(w)), float(np.median(c))) for w, c in zip(wall, cpu, strict=True)]


def tvm_runner(mod: tvm.IRModule, x: np.ndarray) -> tuple[Callable[[], np.ndarray], float]:
    target = tvm.target.Target(TARGET)
    t = time.perf_counter()
    ex = tvm.compile(mod, target=target)
    compile_s = time.perf_counter() - t
    vm = relax.VirtualMachine(ex, tvm.cpu())
    xt = tvm.runtime.tensor(x)
    return (lambda: vm["main"](xt).numpy()), compile_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--default-runs", type=int, default=10,
                    help="runs of the unscheduled TVM build (about 9 s each at 512; 0 skips it)")
    ap.add_argument("--report", action="store_true", help="print the per-function schedule report")
    args = ap.parse_args()

    x = np.random.default_rng(1).standard_normal((1, 3, args.size, args.size)).astype(np.float32)

    sess_opts = ort.SessionOptions()
    sess_opts.intra_op_num_threads = THREADS
    sess_opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(build_onnx(args.size).SerializeToString(), sess_opts,
                                providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x})[0]

    mod = build_relax(args.size)
    t = time.perf_counter()
    opt, report = optimize_for_cpu(mod, tvm.target.Target(TARGET))
    opt_s = time.perf_counter() - t
    run_opt, compile_s = tvm_runner(opt, x)
    err = float(np.abs(run_opt() - ref).max() / np.abs(ref).max())
    (ort_t, opt_t) = time_calls([lambda: sess.run(None, {"x": x}), run_opt], args.runs)
    rows = [(f"onnxruntime {THREADS} thread(s)", *ort_t, "", 0.0),
            ("tvm optimize_for_cpu", *opt_t, f"{opt_s:.1f} + {compile_s:.1f}", err)]

    if args.default_runs:
        run_def, compile_s = tvm_runner(mod, x)
        err = float(np.abs(run_def() - ref).max() / np.abs(ref).max())
        (def_t,) = time_calls([run_def], args.default_runs)
        rows.append(("tvm default compile", *def_t, f"{compile_s:.1f}", err))

    print(f"BiSeNet-like, 1x3x{args.size}x{args.size} fp32, TVM_NUM_THREADS={THREADS}, "
          f"ORT intra_op_num_threads={THREADS}, {args.runs} runs ({args.default_runs} for the "
          "default build) after 1 warm-up")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"shared 2-vCPU machine, load average {load} at the end: other engineers' jobs run at "
          "the same time, figures are noisy")
    print(f"{'runtime':24s} {'median ms':>10s} {'min ms':>9s} {'cpu ms':>9s} {'build s':>12s} "
          f"{'max rel err':>12s}")
    for name, med, best, cpu, build, err in rows:
        print(f"{name:24s} {med * 1e3:10.1f} {best * 1e3:9.1f} {cpu * 1e3:9.1f} {build:>12s} "
              f"{err:12.2e}")
    print(report.table() if args.report else report.summary())


if __name__ == "__main__":
    main()
