"""The trained test subjects: data split, cache, held-out IoU floors, ONNX export."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import trained_subjects as ts
from trained_subjects import CI_SUBJECTS, SUBJECTS, PersonData, heldout_person_iou, trained_subject

from vcc.calib.images import load_image
from vcc.errors import VccError
from vcc.ir.preprocess import resolve_preprocess

# held-out person IoU floors, a little below what each subject measured (2 threads, torch 2.13
# CPU)
FLOORS = {
    "bisenet_shaped": 0.55,  # measured 0.595
    "tiny_range_prelu": 0.58,  # measured 0.638
    "unet_mobilenetv2": 0.48,  # measured 0.529 (300 steps at 128, 116 s)
    "deeplab3plus_resnet18": 0.44,  # measured 0.487 (300 steps at 128, 199 s)
}


# ----------------------------------------------------------------------------- data (fast)
@pytest.fixture(scope="module")
def person64() -> PersonData:
    return PersonData(64)


def test_person_data_split_and_order(person64: PersonData) -> None:
    ns = [int(p.stem) for p in person64.paths]
    assert len(ns) == 290 and ns == sorted(ns)
    assert len(person64.train_index) == 240 and len(person64.heldout_index) == 50
    assert [int(p.stem) for p in person64.heldout_paths] == ns[-50:]
    assert person64.photos.shape == (290, 64, 64, 3) and person64.masks.shape == (290, 64, 64)


def test_person_masks_are_binary_and_nontrivial(person64: PersonData) -> None:
    assert set(np.unique(person64.masks).tolist()) == {0, 1}
    share = person64.masks.mean(axis=(1, 2))
    assert (share > 0.01).all() and (share < 0.99).all()
    _, y = person64.heldout()
    assert y.dtype == torch.int64 and y.shape == (50, 64, 64)


def test_person_inputs_match_vcc_preprocessing(person64: PersonData) -> None:
    """The training tensors are what vcc computes from the exported metadata."""
    data = PersonData(64, mean=ts.TINY_MEAN, std=ts.TINY_STD)
    meta = {"vcc.preprocess": json.dumps({"size": [64, 64], "mean": list(ts.TINY_MEAN),
                                          "std": list(ts.TINY_STD), "color": "RGB"})}
    pre = resolve_preprocess(meta, (1, 3, 64, 64))
    i = int(data.heldout_index[3])
    np.testing.assert_allclose(data.inputs([i]).numpy(), load_image(data.paths[i], pre), atol=1e-7)
    assert float(data.inputs(data.train_index[:20]).abs().max()) <= 0.0100001


def test_missing_data_raises(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VCC_DATA", str(tmp_path))
    with pytest.raises(VccError, match="person photos not found"):
        PersonData(64)


def test_unknown_subject_raises() -> None:
    with pytest.raises(VccError, match="unknown trained subject"):
        trained_subject("no_such_subject")


def test_cache_key_follows_hyper_parameters() -> None:
    sub = SUBJECTS["tiny_range_prelu"]
    module = sub.build()
    key = ts.cache_key(sub, module)
    assert key == ts.cache_key(sub, sub.build())
    assert key != ts.cache_key(dataclasses.replace(sub, steps=sub.steps + 1), module)
    assert key != ts.cache_key(dataclasses.replace(sub, lr=sub.lr * 2), module)


def test_atomic_save_leaves_nothing_on_failure(tmp_path) -> None:
    target = tmp_path / "w.pt"

    def broken(p):
        p.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ts._save_atomic(target, broken)
    assert list(tmp_path.iterdir()) == []


def test_training_is_deterministic() -> None:
    sub = dataclasses.replace(SUBJECTS["tiny_range_prelu"], steps=4, size=64)
    data = PersonData(64, sub.mean, sub.std)
    a, b = ts.train_subject(sub, data), ts.train_subject(sub, data)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


# ----------------------------------------------------------------------------- trained (slow)
@pytest.mark.slow
@pytest.mark.parametrize("name", CI_SUBJECTS)
def test_heldout_iou_floor(name: str) -> None:
    s = trained_subject(name)
    assert not s.module.training
    assert s.heldout_iou >= FLOORS[name], f"{name}: held-out person IoU {s.heldout_iou:.3f}"
    # the cached figure is the module's
    assert heldout_person_iou(s.module, s.data()) == pytest.approx(s.heldout_iou, abs=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", CI_SUBJECTS)
def test_cache_hit_returns_identical_weights(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = trained_subject(name)
    monkeypatch.setattr(ts, "train_subject", lambda *a: pytest.fail("a cache hit trained"))
    monkeypatch.setattr(ts, "_MEMO", {})
    again = trained_subject(name)
    assert again is not s and not again.trained_now and again.weights == s.weights
    assert again.heldout_iou == s.heldout_iou
    ref = s.module.state_dict()
    got = again.module.state_dict()
    assert list(got) == list(ref)
    for k, v in ref.items():
        assert torch.equal(got[k], v), k


@pytest.mark.slow
@pytest.mark.parametrize("name", CI_SUBJECTS)
def test_onnx_export_agrees_with_torch(name: str, tmp_path) -> None:
    s = trained_subject(name)
    path = s.export_onnx(tmp_path / f"{name}.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["vcc.preprocess"]) == {"size": [s.size, s.size], "mean": list(s.mean),
                                                  "std": list(s.std), "color": "RGB"}
    assert meta["vcc.classes"] == "2"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x, _ = s.data().heldout()
    got = np.concatenate([sess.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(len(x))])
    assert got.shape == (50, 2, s.size, s.size)
    want = ts.predict(s.module, x).numpy()
    agree = float((got.argmax(1) == want).mean())
    assert agree >= 0.999, f"{name}: onnxruntime and torch argmax agree on {agree:.5f} of pixels"
