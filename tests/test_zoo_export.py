"""The zoo as users drive it: checkpoints in every upstream wrapping, `vcc export`, `vcc zoo`."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from vcc.errors import VccError
from vcc.frontends.zoo import zoo_models
from vcc.frontends.zoo.checkpoint import load_checkpoint, read_state_dict

NAMES = sorted(zoo_models())
WRAPPINGS = {
    "bare": lambda sd: sd,
    "model_state": lambda sd: {"model_state": sd, "optimizer_state": {}, "cur_itrs": 30000},
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 12},
    "model": lambda sd: {"model": sd},
    "module_prefix": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "wrapped_module_prefix": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
}


def test_zoo_lists_every_seed_model():
    assert len(NAMES) == 18
    for fam, n in (("face", 2), ("human_seg", 6), ("hrnet", 3), ("deeplab", 6), ("person", 1)):
        assert sum(e.family == fam for e in zoo_models().values()) == n


def _round_trip(name, wrappings, tmp_path):
    entry = zoo_models()[name]
    torch.manual_seed(1)
    sd = entry.build(entry.classes).state_dict()
    target = entry.build(entry.classes)
    for wrap_name in wrappings:
        wrap = WRAPPINGS[wrap_name]
        path = tmp_path / f"{wrap_name}.pth"
        torch.save(wrap(sd), path)
        load_checkpoint(target, path)
        got = target.state_dict()
        assert all(torch.equal(got[k], v) for k, v in sd.items()), (name, wrap_name)


def test_every_wrapping_loads_back(tmp_path):
    _round_trip("unet_mobilenetv2", list(WRAPPINGS), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_architecture_loads_its_state_dict(name, tmp_path):
    _round_trip(name, ["bare", "wrapped_module_prefix"], tmp_path)


def test_wrong_checkpoint_lists_keys(tmp_path):
    entry = zoo_models()["bisenet"]
    sd = entry.build(19).state_dict()
    bad = dict(sd)
    del bad["cp.arm16.conv.conv.weight"]
    bad["cp.extra.weight"] = torch.zeros(3)
    bad["conv_out.conv_out.weight"] = torch.zeros(5, 256, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": bad}, path)
    with pytest.raises(VccError) as e:
        load_checkpoint(entry.build(19), path)
    msg = str(e.value)
    assert "1 missing: cp.arm16.conv.conv.weight" in msg
    assert "1 unexpected: cp.extra.weight" in msg
    assert "conv_out.conv_out.weight [5, 256, 1, 1] vs expected [19, 256, 1, 1]" in msg


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, path)
    with pytest.raises(VccError, match="weights_only=True"):
        read_state_dict(path)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(VccError, match="not a readable torch checkpoint"):
        read_state_dict(tmp_path / "junk.pth")


def test_export_cli_with_weights_and_metadata(tmp_path, cli):
    entry = zoo_models()["unet_mobilenetv2"]
    torch.manual_seed(3)
    sd = entry.build(2).state_dict()
    ckpt = tmp_path / "unet.pth"
    torch.save({"model_state": {f"module.{k}": v for k, v in sd.items()}}, ckpt)
    out = tmp_path / "unet.onnx"
    proc = cli("export", "unet_mobilenetv2", "--weights", ckpt, "--size", "160", "160", "-o", out, check=0)
    assert "seeded" not in proc.stderr
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["vcc.preprocess"]) == {"size": [160, 160], "mean": [0.485, 0.456, 0.406],
                                                   "std": [0.229, 0.224, 0.225], "color": "RGB"}
    assert meta["vcc.classes"] == "2" and meta["vcc.weights"] == "unet.pth"
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 2, 160, 160]
    torch.save({"model_state": {"nope": torch.zeros(1)}}, tmp_path / "wrong.pth")
    proc = cli("export", "unet_mobilenetv2", "--weights", tmp_path / "wrong.pth", "-o", tmp_path / "w.onnx", check=2)
    assert "does not fit" in proc.stderr and "missing" in proc.stderr
    proc = cli("export", "unet_mobilenetv2", "-o", tmp_path / "seeded.onnx", "--size", "64", "64", check=0)
    assert "seeded initialisation" in proc.stderr


def test_zoo_json(cli):
    rows = json.loads(cli("zoo", "--json", check=0).stdout)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(NAMES)
    for r in rows:
        assert {"name", "params", "macs", "input_size", "mean", "std", "classes"} <= set(r)
        assert isinstance(r["params"], int) and r["macs"] > 0
    assert by_name["bisenet"]["params"] == 13_300_416
    assert by_name["deeplabv3_mobilenet"]["input_size"] == [513, 513]
    assert by_name["parsenet"]["mean"] == [0.5, 0.5, 0.5]
