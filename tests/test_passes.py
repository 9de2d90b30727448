"""Each pass on a tiny graph: the rewrite it makes, and the numbers through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from vcc.frontends.onnx_export import export_onnx
from vcc.ir.graph import Graph, Node
from vcc.ir.verify import IRVerificationError, toposort, verify_graph
from vcc.passes import Pass, PassManager
from vcc.passes.dce import eliminate_dead_code
from vcc.passes.fold_bn import fold_batchnorm
from vcc.passes.fold_constants import fold_constants
from vcc.passes.remove_identity import remove_identity
from vcc.runtime.reference import OrtSession

RNG = np.random.default_rng(1)


def _run(g: Graph, x: np.ndarray) -> np.ndarray:
    return OrtSession(export_onnx(g), optimize=False).run(x)[0]


def _bn(g: Graph, name: str, x: str, c: int, out: str, rank: int = 4) -> Node:
    shape = g.shape(x)
    for k, arr in (("g", RNG.uniform(0.5, 1.5, c)), ("b", RNG.uniform(-1, 1, c)),
                   ("m", RNG.uniform(-1, 1, c)), ("v", RNG.uniform(0.5, 2, c))):
        g.add_constant(f"{name}.{k}", arr.astype(np.float32))
    g.add_value(out, shape, "float32")
    return Node("BatchNormalization", name, [x] + [f"{name}.{k}" for k in "gbmv"], [out], {"epsilon": 1e-5})


def _conv_attrs(k=3, group=1):
    return {"kernel_shape": [k, k], "strides": [1, 1], "pads": [k // 2] * 4, "dilations": [1, 1], "group": group}


def _input_graph(shape=(1, 4, 6, 6)) -> Graph:
    g = Graph(name="t")
    g.add_value("x", shape, "float32")
    g.inputs.append("x")
    return g


def test_fold_batchnorm_into_conv_and_lone_bn():
    g = _input_graph()
    g.add_constant("w", RNG.standard_normal((5, 4, 3, 3)).astype(np.float32))
    g.add_constant("b", RNG.standard_normal(5).astype(np.float32))
    g.add_value("c", (1, 5, 6, 6), "float32")
    g.nodes.append(Node("Conv", "conv", ["x", "w", "b"], ["c"], _conv_attrs()))
    g.nodes.append(_bn(g, "bn1", "c", 5, "y1"))
    g.nodes.append(Node("Relu", "relu", ["y1"], ["r"]))
    g.add_value("r", (1, 5, 6, 6), "float32")
    g.nodes.append(_bn(g, "bn2", "r", 5, "y"))  # after a Relu: cannot fold into a conv
    g.outputs.append("y")
    verify_graph(g)
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    before = _run(g, x)
    folded = fold_batchnorm(g)
    verify_graph(folded)
    assert [n.op for n in folded.nodes] == ["Conv", "Relu", "Mul", "Add"]
    assert [n.op for n in g.nodes].count("BatchNormalization") == 2, "the pass must not mutate its input"
    np.testing.assert_allclose(_run(folded, x), before, rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_into_grouped_conv_transpose():
    g = _input_graph()
    g.add_constant("w", RNG.standard_normal((4, 3, 2, 2)).astype(np.float32))  # group 2 -> 6 outputs
    g.add_value("c", (1, 6, 12, 12), "float32")
    g.nodes.append(Node("ConvTranspose", "up", ["x", "w"], ["c"],
                        {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0], "dilations": [1, 1],
                         "group": 2, "output_padding": [0, 0]}))
    g.nodes.append(_bn(g, "bn", "c", 6, "y"))
    g.outputs.append("y")
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    before = _run(g, x)
    folded = fold_batchnorm(g)
    assert [n.op for n in folded.nodes] == ["ConvTranspose"]
    np.testing.assert_allclose(_run(folded, x), before, rtol=1e-5, atol=1e-5)


def test_bn_not_folded_when_conv_output_has_other_users():
    g = _input_graph()
    g.add_constant("w", RNG.standard_normal((4, 4, 1, 1)).astype(np.float32))
    g.add_value("c", (1, 4, 6, 6), "float32")
    g.nodes.append(Node("Conv", "conv", ["x", "w"], ["c"], _conv_attrs(1)))
    g.nodes.append(_bn(g, "bn", "c", 4, "n"))
    g.add_value("y", (1, 4, 6, 6), "float32")
    g.nodes.append(Node("Add", "add", ["n", "c"], ["y"]))
    g.outputs.append("y")
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    folded = fold_batchnorm(g)
    assert [n.op for n in folded.nodes] == ["Conv", "Mul", "Add", "Add"]
    np.testing.assert_allclose(_run(folded, x), _run(g, x), rtol=1e-5, atol=1e-5)


def test_fold_constants_evaluates_constant_subgraphs():
    g = _input_graph((1, 4, 2, 2))
    g.add_constant("a", np.arange(16, dtype=np.float32).reshape(4, 4))
    g.add_value("at", (4, 4), "float32")
    g.nodes.append(Node("Transpose", "t", ["a"], ["at"], {"perm": [1, 0]}))
    g.add_value("r", (1, 4, 2, 2), "float32")
    g.nodes.append(Node("Reshape", "rs", ["at"], ["r"], {"shape": [1, 4, 2, 2]}))
    g.add_value("y", (1, 4, 2, 2), "float32")
    g.nodes.append(Node("Mul", "mul", ["x", "r"], ["y"]))
    g.outputs.append("y")
    x = RNG.standard_normal((1, 4, 2, 2)).astype(np.float32)
    folded = eliminate_dead_code(fold_constants(g))
    assert [n.op for n in folded.nodes] == ["Mul"]
    np.testing.assert_array_equal(folded.constants["r"], np.arange(16, dtype=np.float32).reshape(4, 4).T.reshape(1, 4, 2, 2))
    np.testing.assert_allclose(_run(folded, x), _run(g, x))


def test_remove_identity_and_dropout_keeps_output_names():
    g = _input_graph((1, 2, 3, 3))
    for name, op, src, dst in (("i1", "Identity", "x", "a"), ("r", "Relu", "a", "b"),
                               ("d", "Dropout", "b", "c"), ("i2", "Identity", "c", "y")):
        g.add_value(dst, (1, 2, 3, 3), "float32")
        g.nodes.append(Node(op, name, [src], [dst]))
    g.outputs.append("y")
    out = remove_identity(g)
    verify_graph(out)
    assert [n.op for n in out.nodes] == ["Relu"]
    assert out.nodes[0].inputs == ["x"] and out.outputs == ["y"] and out.nodes[0].outputs == ["y"]
    x = RNG.standard_normal((1, 2, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(g, x))


def test_dead_code_elimination():
    g = _input_graph((1, 2, 3, 3))
    g.add_constant("unused_w", np.ones(3, np.float32))
    for name, op, src, dst in (("keep", "Relu", "x", "y"), ("dead1", "Sigmoid", "x", "d1"), ("dead2", "Tanh", "d1", "d2")):
        g.add_value(dst, (1, 2, 3, 3), "float32")
        g.nodes.append(Node(op, name, [src], [dst]))
    g.outputs.append("y")
    out = eliminate_dead_code(g)
    assert [n.name for n in out.nodes] == ["keep"]
    assert "unused_w" not in out.constants and "d2" not in out.values
    verify_graph(out)


def test_verifier_catches_broken_graphs():
    g = _input_graph((1, 2))
    g.add_value("a", (1, 2), "float32")
    g.nodes.append(Node("Relu", "r1", ["b"], ["a"]))
    g.add_value("b", (1, 2), "float32")
    g.nodes.append(Node("Relu", "r2", ["a"], ["b"]))
    g.outputs.append("b")
    with pytest.raises(IRVerificationError, match="cycle"):
        verify_graph(g)
    g2 = _input_graph((1, 2))
    g2.add_value("a", (1, 2), "float32")
    g2.nodes.append(Node("Relu", "r1", ["nope"], ["a"]))
    g2.nodes.append(Node("Relu", "r2", ["x"], ["a"]))
    g2.outputs.append("a")
    with pytest.raises(IRVerificationError) as e:
        verify_graph(g2)
    assert "undefined value 'nope'" in str(e.value) and "defined twice" in str(e.value)


def test_toposort_restores_order():
    g = _input_graph((1, 2))
    g.add_value("a", (1, 2), "float32")
    g.add_value("y", (1, 2), "float32")
    g.nodes = [Node("Relu", "second", ["a"], ["y"]), Node("Sigmoid", "first", ["x"], ["a"])]
    g.outputs.append("y")
    with pytest.raises(IRVerificationError, match="topological"):
        verify_graph(g)
    toposort(g)
    assert [n.name for n in g.nodes] == ["first", "second"]
    verify_graph(g)


def test_pass_manager_verifies_and_dumps(tmp_path):
    def breaks(g: Graph) -> Graph:
        g = g.copy()
        g.nodes[0].inputs = ["missing"]
        return g

    g = _input_graph((1, 2))
    g.add_value("y", (1, 2), "float32")
    g.nodes.append(Node("Relu", "r", ["x"], ["y"]))
    g.outputs.append("y")
    pm = PassManager([Pass("eliminate_dead_code", eliminate_dead_code)], dump_dir=tmp_path)
    pm.run(g)
    assert (tmp_path / "01_eliminate_dead_code.txt").read_text().count("Relu") == 1
    with pytest.raises(IRVerificationError, match="after pass breaks"):
        PassManager([Pass("breaks", breaks)]).run(g)
