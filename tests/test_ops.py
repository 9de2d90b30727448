"""Every op the importer takes: ONNX -> IR -> (ONNX via ORT, and TVM) against ORT on the original."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vcc.frontends.onnx_export import export_onnx
from vcc.frontends.onnx_import import import_onnx_model
from vcc.frontends.onnx_load import simplify
from vcc.passes import PassManager, default_fp32_pipeline
from vcc.runtime.codegen import compile_relax, cpu_target
from vcc.runtime.lower import lower_to_relax
from vcc.runtime.reference import OrtSession

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def make(nodes, x_shape, inits=(), opset=17, out="y", out_type=F):
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", F, x_shape)],
                              [helper.make_tensor_value_info(out, out_type, None)],
                              initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


CASES = {
    "conv_grouped_dilated_padded": make(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 2, 2, 1], dilations=[2, 1],
                          group=2, strides=[2, 1])], [1, 4, 11, 9], [_init("w", w(6, 2, 3, 3)), _init("b", w(6))]),
    "conv_depthwise_same": make(
        [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", group=8, strides=[2, 2])],
        [1, 8, 10, 10], [_init("w", w(8, 1, 3, 3))]),
    "conv_transpose": make(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                          output_padding=[1, 1])], [1, 4, 6, 6], [_init("w", w(4, 3, 3, 3)), _init("b", w(3))]),
    "conv_transpose_grouped": make(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], group=2)],
        [1, 4, 5, 5], [_init("w", w(4, 3, 2, 2))]),
    "batchnorm_lone": make(
        [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=1e-3)], [1, 3, 4, 4],
        [_init("g", w(3) + 1), _init("b", w(3)), _init("m", w(3)), _init("v", np.abs(w(3)) + 0.5)]),
    "relu_sigmoid_tanh": make(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"]),
         helper.make_node("Tanh", ["x"], ["c"]), helper.make_node("Add", ["a", "b"], ["d"]),
         helper.make_node("Mul", ["d", "c"], ["y"])], [1, 3, 4, 4]),
    "clip_relu6": make([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [1, 3, 4, 4],
                       [_init("lo", np.float32(0)), _init("hi", np.float32(6))]),
    "clip_min_only": make([helper.make_node("Clip", ["x", "lo"], ["y"])], [1, 3, 4, 4],
                          [_init("lo", np.float32(-0.5))]),
    "clip_opset6": make([helper.make_node("Clip", ["x"], ["y"], min=-1.0, max=0.5)], [1, 3, 4, 4], opset=6),
    "prelu_channel": make([helper.make_node("PRelu", ["x", "s"], ["y"])], [1, 3, 4, 4],
                          [_init("s", w(3, 1, 1))]),
    "prelu_scalar": make([helper.make_node("PRelu", ["x", "s"], ["y"])], [1, 3, 4, 4],
                         [_init("s", np.asarray([0.25], np.float32))]),
    "leaky_hardsigmoid_hardswish": make(
        [helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
         helper.make_node("HardSigmoid", ["a"], ["b"], alpha=0.3, beta=0.4),
         helper.make_node("HardSwish", ["b"], ["y"])], [1, 3, 4, 4], opset=14),
    "sub_div_broadcast": make(
        [helper.make_node("Sub", ["x", "c"], ["a"]), helper.make_node("Div", ["a", "d"], ["y"])],
        [1, 3, 4, 4], [_init("c", w(3, 1, 1)), _init("d", np.abs(w(1, 3, 1, 1)) + 1)]),
    "concat_split": make(
        [helper.make_node("Concat", ["x", "x"], ["c"], axis=-3),
         helper.make_node("Split", ["c", "sp"], ["a", "b"], axis=1), helper.make_node("Mul", ["a", "b"], ["y"])],
        [1, 3, 4, 4], [_init("sp", np.asarray([3, 3], np.int64))]),
    "slice_steps_negative": make(
        [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])], [1, 6, 8, 8],
        [_init("s", np.asarray([1, -1, 0], np.int64)), _init("e", np.asarray([5, -100, 7], np.int64)),
         _init("a", np.asarray([1, 2, 3], np.int64)), _init("st", np.asarray([2, -2, 3], np.int64))]),
    "pad_constant_reflect": make(
        [helper.make_node("Pad", ["x", "p", "v"], ["a"], mode="constant"),
         helper.make_node("Pad", ["a", "p"], ["y"], mode="reflect")], [1, 2, 5, 5],
        [_init("p", np.asarray([0, 0, 1, 2, 0, 0, 2, 1], np.int64)), _init("v", np.float32(0.5))]),
    "reshape_flatten_transpose_shuffle": make(
        [helper.make_node("Reshape", ["x", "s1"], ["a"]),
         helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
         helper.make_node("Reshape", ["b", "s2"], ["c"]), helper.make_node("Flatten", ["c"], ["y"], axis=2)],
        [1, 8, 3, 3], [_init("s1", np.asarray([1, 2, 4, 3, 3], np.int64)),
                       _init("s2", np.asarray([1, -1, 3, 3], np.int64))]),
    "squeeze_unsqueeze": make(
        [helper.make_node("GlobalAveragePool", ["x"], ["a"]),
         helper.make_node("Squeeze", ["a", "ax"], ["b"]), helper.make_node("Unsqueeze", ["b", "ax"], ["y"])],
        [1, 3, 4, 4], [_init("ax", np.asarray([2, 3], np.int64))]),
    "pools": make(
        [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
         helper.make_node("AveragePool", ["b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                          count_include_pad=1)], [1, 3, 13, 13]),
    "global_max_reduce": make(
        [helper.make_node("GlobalMaxPool", ["x"], ["a"]), helper.make_node("ReduceMean", ["x"], ["b"], axes=[2, 3]),
         helper.make_node("ReduceMax", ["x"], ["c"], axes=[1], keepdims=1),
         helper.make_node("Add", ["a", "b"], ["d"]), helper.make_node("Add", ["d", "c"], ["y"])], [1, 3, 5, 5]),
    "reducesum_opset13": make([helper.make_node("ReduceSum", ["x", "ax"], ["y"], keepdims=0)], [1, 3, 5, 5],
                              [_init("ax", np.asarray([-1], np.int64))], opset=13),
    "resize_bilinear_align_corners": make(
        [helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="linear",
                          coordinate_transformation_mode="align_corners")], [1, 3, 5, 7],
        [_init("sz", np.asarray([1, 3, 11, 9], np.int64))]),
    "resize_bilinear_half_pixel_scales": make(
        [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear")], [1, 3, 5, 7],
        [_init("sc", np.asarray([1, 1, 2, 2], np.float32))]),
    "resize_nearest_asymmetric": make(
        [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")], [1, 3, 5, 7],
        [_init("sc", np.asarray([1, 1, 2, 3], np.float32))]),
    "resize_nearest_half_pixel": make(
        [helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest")], [1, 3, 8, 8],
        [_init("sz", np.asarray([1, 3, 3, 5], np.int64))]),
    "upsample_opset9": make(
        [helper.make_node("Upsample", ["x", "sc"], ["y"], mode="nearest")], [1, 3, 4, 5],
        [_init("sc", np.asarray([1, 1, 2, 2], np.float32))], opset=9),
    "softmax_argmax": make(
        [helper.make_node("Softmax", ["x"], ["a"], axis=1), helper.make_node("ArgMax", ["a"], ["y"], axis=1,
                                                                            keepdims=0)], [1, 5, 4, 4],
        out_type=TensorProto.INT64),
    "softmax_opset11_axis1": make([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [2, 3, 4], opset=11),
    "expand": make([helper.make_node("GlobalAveragePool", ["x"], ["a"]),
                    helper.make_node("Expand", ["a", "s"], ["y"])], [1, 3, 4, 4],
                   [_init("s", np.asarray([1, 3, 4, 4], np.int64))]),
    "gemm_transb": make(
        [helper.make_node("Flatten", ["x"], ["a"]),
         helper.make_node("Gemm", ["a", "B", "C"], ["y"], transB=1, alpha=0.5, beta=2.0)], [2, 3, 2, 2],
        [_init("B", w(5, 12)), _init("C", w(5))]),
    "matmul_const_left_and_right": make(
        [helper.make_node("Reshape", ["x", "s"], ["a"]), helper.make_node("MatMul", ["a", "R"], ["b"]),
         helper.make_node("MatMul", ["L", "b"], ["y"])], [1, 4, 3, 3],
        [_init("s", np.asarray([1, 4, 9], np.int64)), _init("R", w(9, 6)), _init("L", w(5, 4))]),
    "matmul_attention": make(
        [helper.make_node("Reshape", ["x", "s"], ["a"]), helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1]),
         helper.make_node("MatMul", ["at", "a"], ["g"]), helper.make_node("Softmax", ["g"], ["p"], axis=-1),
         helper.make_node("MatMul", ["a", "p"], ["y"])], [1, 4, 3, 3], [_init("s", np.asarray([1, 4, 9], np.int64))]),
    "identity_dropout": make(
        [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Dropout", ["a"], ["b"]),
         helper.make_node("Relu", ["b"], ["y"])], [1, 3, 4, 4]),
    "shape_arithmetic_folds": make(
        [helper.make_node("Shape", ["x"], ["sh"]), helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
         helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
         helper.make_node("Concat", ["n1", "m1"], ["ns"], axis=0), helper.make_node("Reshape", ["x", "ns"], ["y"])],
        [2, 3, 4, 4], [_init("i0", np.asarray(0, np.int64)), _init("ax0", np.asarray([0], np.int64)),
                       _init("m1", np.asarray([-1], np.int64))]),
    "tiny_input_range_prelu": make(
        [helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Conv", ["a", "w"], ["b"], pads=[1, 1, 1, 1]),
         helper.make_node("PRelu", ["b", "s"], ["y"])], [1, 3, 6, 6],
        [_init("k", np.float32(0.01)), _init("w", w(4, 3, 3, 3)), _init("s", w(4, 1, 1))]),
}


def _compile_and_run(graph, x):
    import tvm
    from tvm import relax

    ex = compile_relax(lower_to_relax(graph), cpu_target())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_roundtrip_and_tvm(case):
    model = CASES[case]
    x_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = RNG.standard_normal(x_shape).astype(np.float32)
    ref = OrtSession(model, optimize=False).run(x)[0]

    graph = import_onnx_model(simplify(onnx.ModelProto.FromString(model.SerializeToString()), case), case)
    graph = PassManager(default_fp32_pipeline()).run(graph)
    via_ir = OrtSession(export_onnx(graph)).run(x)[0]
    assert via_ir.shape == ref.shape
    np.testing.assert_allclose(via_ir, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))

    out = _compile_and_run(graph, x)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    if ref.dtype.kind == "i":
        np.testing.assert_array_equal(out, ref)
    else:
        assert np.abs(out - ref).max() <= 1e-4 * max(1e-6, np.abs(ref).max()), case


def test_cpu_target_turns_off_the_256_bit_preference_on_avx512_only():
    avx512 = cpu_target("sapphirerapids", 2)
    assert [str(a) for a in avx512.attrs["mattr"]] == ["-prefer-256-bit"]
    assert int(avx512.attrs["num-cores"]) == 2
    assert not cpu_target("haswell").attrs.get("mattr", None)
