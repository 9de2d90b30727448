"""Label loaders and image/label pairing on the real files in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcc.errors import VccError
from vcc.reports.labels import (
    CELEBAMASK_CLASSES,
    FACE_PARSING_CLASSES,
    LabelledSet,
    celebamask_remap_table,
    decode_voc_colors,
    decode_voc_target,
    load_binary_mask,
    load_celebamask_label,
    load_cityscapes_trainids,
)
from vcc.reports.palette import save_mask

ROOT = Path(__file__).resolve().parents[1]


def _images() -> Path:
    d = Path(os.environ.get("VCC_DATA", ROOT.parent / "shared" / "data")) / "images"
    if not d.is_dir():
        pytest.fail(f"test data not found at {d}: put ../shared beside the checkout or set VCC_DATA")
    return d


@pytest.fixture(scope="module")
def images() -> Path:
    return _images()


def test_voc_targets_decode_to_palette_ids(images):
    targets = sorted((images / "voc2012_vainf_samples").glob("*_target.png"))
    assert len(targets) == 14
    seen: set[int] = set()
    for t in targets:
        ids, unknown = decode_voc_target(t, with_unknown=True)
        assert unknown == 0, t
        assert ids.shape == (513, 513) and ids.dtype == np.uint8
        values = set(np.unique(ids).tolist())
        assert values <= set(range(21)) | {255}, (t, values)
        assert len(values - {255}) > 1, (t, values)  # background and at least one object
        assert 255 in values  # the (224, 224, 192) object border
        seen |= values
    assert len(seen - {0, 255}) >= 8  # the samples cover many VOC classes


def test_voc_palette_mode_round_trip_and_unknown_colours(images, tmp_path):
    ids = decode_voc_target(images / "voc2012_vainf_samples" / "294_target.png")
    p = tmp_path / "294.png"
    save_mask(ids, p)
    assert Image.open(p).mode == "P"
    np.testing.assert_array_equal(decode_voc_target(p), ids)
    rgb = np.asarray(Image.open(images / "voc2012_vainf_samples" / "294_target.png").convert("RGB")).copy()
    rgb[:3, :5] = (1, 2, 3)  # 15 pixels of a colour outside the palette
    dec, unknown = decode_voc_colors(rgb)
    assert unknown == 15 and (dec[:3, :5] == 255).all()
    np.testing.assert_array_equal(dec[3:], ids[3:])
    idx, unknown = decode_voc_colors(np.array([[0, 20, 21], [255, 40, 3]], np.uint8))
    assert unknown == 2 and idx.tolist() == [[0, 20, 255], [255, 255, 3]]


def test_celebamask_ids_and_face_parsing_remap(images):
    lut = celebamask_remap_table("face-parsing")
    assert sorted(lut[:19].tolist()) == list(range(19)) and lut[255] == 255
    for k, name in enumerate(CELEBAMASK_CLASSES):
        assert FACE_PARSING_CLASSES[lut[k]] == name
    assert lut[2] == 10 and lut[13] == 17 and lut[6] == 2  # nose, hair, l_brow
    for png in sorted((images / "celebamask_hq_maskgan").glob("*.png")):
        ids = load_celebamask_label(png)
        assert ids.shape == (512, 512) and ids.dtype == np.uint8
        assert set(np.unique(ids).tolist()) <= set(range(19)) and len(np.unique(ids)) > 5
        fp = load_celebamask_label(png, remap="face-parsing")
        np.testing.assert_array_equal(fp, lut[ids])
        assert np.array_equal(np.bincount(ids.ravel(), minlength=19)[np.argsort(lut[:19])],
                              np.bincount(fp.ravel(), minlength=19))
    with pytest.raises(VccError, match="unknown CelebAMask-HQ remap 'bisenet'"):
        load_celebamask_label(png, remap="bisenet")


def test_cityscapes_train_ids(images, tmp_path):
    png = images / "cityscapes_mmseg_pseudo" / "frankfurt_000000_000294_gtFine_labelTrainIds.png"
    ids = load_cityscapes_trainids(png)
    assert ids.shape == (128, 256) and ids.dtype == np.uint8
    values = set(np.unique(ids).tolist())
    assert values <= set(range(19)) | {255} and len(values - {255}) >= 5 and 0 in values  # road
    bad = tmp_path / "bad_gtFine_labelTrainIds.png"
    Image.fromarray(np.full((4, 4), 30, np.uint8)).save(bad)
    with pytest.raises(VccError, match=r"bad_gtFine_labelTrainIds.png: label ids \[30\]"):
        load_cityscapes_trainids(bad)


def test_binary_masks_smaller_than_photo_come_back_at_photo_size(images):
    folder = images / "human_seg_vikram"
    smaller = []
    for mask in sorted((folder / "masks").glob("*.png"))[:120]:
        with Image.open(mask) as m, Image.open(folder / "images" / f"{mask.stem}.jpg") as im:
            if m.size != im.size:
                smaller.append((mask, (im.size[1], im.size[0])))
    assert len(smaller) >= 20
    for mask, size in smaller[:20]:
        raw = load_binary_mask(mask)
        assert set(np.unique(raw).tolist()) == {0, 1} and raw.shape != size
        big = load_binary_mask(mask, size=size)
        assert big.shape == size and set(np.unique(big).tolist()) == {0, 1}
        assert abs(big.mean() - raw.mean()) < 0.02  # nearest resize keeps the person's share
    lab_set = LabelledSet("binary", folder)
    assert len(lab_set) == 290 and lab_set.num_classes == 2
    by_name = {img.stem: lab for img, lab in lab_set}
    mask, size = smaller[0]
    np.testing.assert_array_equal(by_name[mask.stem](), load_binary_mask(mask, size=size))


@pytest.mark.parametrize("dataset,folder,count,classes,remap", [
    ("voc", "voc2012_vainf_samples", 14, 21, None),
    ("celebamask", "celebamask_hq_maskgan", 4, 19, None),
    ("celebamask", "celebamask_hq_maskgan", 4, 19, "face-parsing"),
    ("cityscapes", "cityscapes_mmseg_pseudo", 1, 19, None),
])
def test_labelled_sets(images, dataset, folder, count, classes, remap):
    s = LabelledSet(dataset, images / folder, remap=remap)
    assert len(s) == count and s.num_classes == classes == len(s.class_names)
    pairs = list(s)
    assert [p for p, _ in pairs] == sorted(p for p, _ in pairs)
    img, label = pairs[0]
    with Image.open(img) as im:
        w, h = im.size
    ids = label()
    assert ids.shape == (h, w) and ids.dtype == np.uint8
    assert set(np.unique(ids).tolist()) <= set(range(classes)) | {255}
    if remap:
        assert s.class_names == FACE_PARSING_CLASSES


def test_labelled_set_errors(images, tmp_path):
    with pytest.raises(VccError, match="cityscapes_espnet_fullres: no cityscapes image/label pairs"):
        LabelledSet("cityscapes", images / "cityscapes_espnet_fullres")
    with pytest.raises(VccError, match="unknown dataset 'ade20k'; known datasets: voc, celebamask"):
        LabelledSet("ade20k", images)
    with pytest.raises(VccError, match="nowhere: no such folder"):
        LabelledSet("voc", tmp_path / "nowhere")
    with pytest.raises(VccError, match="celebamask labels only"):
        LabelledSet("voc", images / "voc2012_vainf_samples", remap="face-parsing")
