"""The trained default model's parts: the person split, the recipe-keyed cache (a hit loads and
never trains), deterministic training, `vcc run --overlay`'s blend, `vcc summary`'s line, and
the import's onnxsim skip."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from vcc.errors import VccError
from vcc.frontends.onnx_load import simplification_needed
from vcc.frontends.zoo import get_model
from vcc.frontends.zoo import train as T
from vcc.frontends.zoo.export import export_trained_module
from vcc.reports.accuracy_gates import summary_line
from vcc.reports.palette import save_overlay


def test_split_holds_out_the_last_50_by_number(data):
    split = T.person_split(data)
    assert len(split.train) == 240 and len(split.heldout) == T.HELDOUT
    numbers = [int(p.stem) for p, _ in split.train + split.heldout]
    assert numbers == sorted(numbers) and split.heldout[0][0].stem == str(numbers[240])
    assert all(m.name == f"{p.stem}.png" for p, m in split.train + split.heldout)


def test_split_of_a_missing_folder_names_it(tmp_path):
    with pytest.raises(VccError, match="human_seg_vikram.*VCC_DATA"):
        T.person_split(tmp_path)


def test_the_key_follows_the_recipe_and_the_photo_list(data):
    split = T.person_split(data)
    recipe = T.RECIPES["person"]
    key = T.recipe_key(recipe, split)
    assert key == T.recipe_key(recipe, split)
    assert key != T.recipe_key(dataclasses.replace(recipe, epochs=recipe.epochs + 1), split)
    assert key != T.recipe_key(dataclasses.replace(recipe, seed=1), split)
    assert key != T.recipe_key(dataclasses.replace(recipe, lr=recipe.lr * 2), split)
    fewer = dataclasses.replace(split, train=split.train[1:])
    assert key != T.recipe_key(recipe, fewer)


def test_a_cache_hit_loads_the_checkpoint_and_does_not_train(data, tmp_path, monkeypatch):
    monkeypatch.setenv("VCC_CACHE", str(tmp_path))
    split = T.person_split(data)
    recipe = T.RECIPES["person"]
    torch.manual_seed(5)
    module = get_model("person").build(2)
    weights = T.cache_dir() / f"person-{T.recipe_key(recipe, split)}.pt"
    weights.parent.mkdir(parents=True)
    torch.save(module.state_dict(), weights)
    weights.with_suffix(".json").write_text(json.dumps({"heldout_iou": 0.5}))
    monkeypatch.setattr(T, "train", lambda *a: pytest.fail("trained on a cache hit"))
    got = T.trained_model("person", data)
    assert got.from_cache and got.heldout_iou == 0.5 and got.weights == weights
    assert all(torch.equal(a, b) for a, b in zip(got.module.state_dict().values(),
                                                 module.state_dict().values(), strict=True))
    out = export_trained_module("person", got.module, tmp_path / "p.onnx", (64, 64), "test")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["vcc.classes"] == "2" and json.loads(meta["vcc.preprocess"])["size"] == [64, 64]


def test_no_recipe_is_a_clear_error():
    with pytest.raises(VccError, match="no training recipe for 'bisenet'.*person"):
        T.trained_model("bisenet")


def test_training_is_deterministic(data):
    split = T.person_split(data)
    split = dataclasses.replace(split, train=split.train[:16], heldout=split.heldout[:4])
    recipe = T.Recipe("person", size=32, epochs=2, batch=8, lr=4e-3)
    (m1, iou1, _), (m2, iou2, _) = T.train(recipe, split), T.train(recipe, split)
    assert iou1 == iou2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    torch.manual_seed(0)
    seeded = get_model("person").build(2).state_dict()
    assert not torch.equal(seeded["classifier.weight"], m1.state_dict()["classifier.weight"])  # it trained


def test_write_split_links_not_copies(data, tmp_path):
    split = T.person_split(data)
    out = T.write_split(split, tmp_path / "split")
    held = sorted((out / "heldout" / "images").iterdir())
    assert len(held) == 50 and len(list((out / "train" / "images").iterdir())) == 240
    assert all(p.is_symlink() for p in held)
    assert (out / "heldout" / "masks" / "280.png").resolve() == (split.folder / "masks" / "280.png").resolve()


def test_overlay_blends_the_classes_and_keeps_the_background(tmp_path):
    photo = Image.fromarray(np.full((30, 40, 3), 100, np.uint8))
    mask = np.zeros((15, 20), np.uint8)
    mask[:, 10:] = 1
    save_overlay(photo, mask, tmp_path / "o.png", alpha=0.5)
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.shape == (30, 40, 3)
    assert (out[:, :20] == 100).all()  # background as photographed
    assert (out[:, 20:] == (178, 50, 50)).all()  # half the photo, half pure red (class 1)


def test_summary_line_has_the_figures():
    doc = {"artifact": {"dtype": "int8"}, "images": 50, "agreement": 0.9952, "sqnr_db": 32.4,
           "labels": {"dataset": "binary", "images": 50}, "miou_ref": 0.7096, "miou_artifact": 0.7093,
           "miou_drop_points": 0.03,
           "per_class": [{"name": "background", "iou_ref": 0.79, "iou_artifact": 0.79},
                         {"name": "person", "iou_ref": 0.6261, "iou_artifact": 0.6255}]}
    line = summary_line(doc)
    assert line == ("int8 vs fp32 on 50 photos: argmax agreement 99.52%, SQNR 32.4 dB | binary labels (50): "
                    "mIoU 70.96 -> 70.93 (-0.03 points), person IoU 62.61 -> 62.55")


def _graph(nodes, inits=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)))


def test_onnxsim_runs_only_where_there_is_something_to_simplify():
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    plain = _graph([helper.make_node("Relu", ["x"], ["y"], name="relu")])
    assert simplification_needed(plain) is None
    shape = _graph([helper.make_node("Shape", ["x"], ["s"], name="shape"),
                    helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")])
    assert simplification_needed(shape) == "Shape node 'shape'"
    folded = _graph([helper.make_node("Neg", ["w"], ["n"], name="neg"),
                     helper.make_node("Add", ["x", "n"], ["y"], name="add")], [w])
    assert simplification_needed(folded) == "constant-foldable Neg node 'neg'"
    dead = _graph([helper.make_node("Relu", ["x"], ["y"], name="relu"),
                   helper.make_node("Sigmoid", ["x"], ["z"], name="unused")])
    assert simplification_needed(dead) == "unused Sigmoid node 'unused'"


def test_run_overlay_needs_a_photo(cli, tmp_path):
    proc = cli("run", tmp_path, "--input", tmp_path / "x.npy", "--overlay", tmp_path / "o.png", check=2)
    assert "--overlay needs a photo" in proc.stderr and "Traceback" not in proc.stderr
