"""Ground-truth label maps of the evaluation datasets, and image/label pairing.

Every loader returns a (H, W) uint8 map of class ids; 255 is "ignore". Labels are brought to
the photo's size with nearest-neighbour resizing, since a label's ids must never be blended.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
from PIL import Image, UnidentifiedImageError

from vcc.errors import VccError
from vcc.reports.palette import voc_palette

log = logging.getLogger(__name__)

IGNORE = 255

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]
VOC_IGNORE_RGB = (224, 224, 192)
CELEBAMASK_CLASSES = [
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
    "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
]
# zllrunning/face-parsing.PyTorch (BiSeNet) class order
FACE_PARSING_CLASSES = [
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
    "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
]
CELEBAMASK_REMAPS = {"face-parsing": FACE_PARSING_CLASSES}
CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]
BINARY_CLASSES = ["background", "person"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _open(path: str | os.PathLike) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VccError(f"{path}: cannot read the label map ({e})") from e


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, read from its header."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VccError(f"{path}: cannot read the image ({e})") from e
    return h, w


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (H, W) uint8 id map resized to `size` (H, W) with nearest neighbour (a no-op when equal)."""
    h, w = size
    if label.shape == (h, w):
        return label
    return np.asarray(Image.fromarray(label.astype(np.uint8)).resize((w, h), Image.NEAREST))


def _single_channel(im: Image.Image, path: str | os.PathLike) -> np.ndarray:
    """The ids of a grey / palette / 16-bit label png; an RGB one must have equal channels."""
    arr = np.asarray(im)
    if arr.ndim == 3:
        if im.mode not in ("RGB", "RGBA") or not (
                np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise VccError(f"{path}: expected a single-channel label map of class ids, got a "
                           f"{im.mode} image with differing channels (a colour rendering?)")
        arr = arr[..., 0]
    return arr


def _check_ids(arr: np.ndarray, num_classes: int, path: str | os.PathLike) -> np.ndarray:
    bad = ((arr >= num_classes) & (arr != IGNORE)) | (arr < 0)
    if bad.any():
        raise VccError(f"{path}: label ids {np.unique(arr[bad])[:8].tolist()} outside "
                       f"0..{num_classes - 1} and {IGNORE} (ignore)")
    return arr.astype(np.uint8)


# --- PASCAL VOC -------------------------------------------------------------------------------

def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def decode_voc_colors(arr: np.ndarray) -> tuple[np.ndarray, int]:
    """A VOC label as an array -> ((H, W) uint8 ids, count of unknown pixels).

    (H, W, 3) RGB is decoded with the VOC palette (ids 0..20, (224, 224, 192) -> 255);
    (H, W) is taken as palette indices (ids 0..20 and 255). Any other colour / index -> 255,
    counted."""
    arr = np.asarray(arr)
    n = len(VOC_CLASSES)
    if arr.ndim == 2:
        ids = arr.astype(np.int64)
        unknown = ((ids >= n) & (ids != IGNORE)) | (ids < 0)
        return np.where(unknown, IGNORE, ids).astype(np.uint8), int(np.count_nonzero(unknown))
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise VccError(f"a VOC label is (H, W) indices or (H, W, 3) RGB, got shape {arr.shape}")
    lut = {int(c): k for k, c in enumerate(_pack_rgb(voc_palette(n)))}
    lut[int(_pack_rgb(np.array(VOC_IGNORE_RGB)))] = IGNORE
    codes, inverse = np.unique(_pack_rgb(arr), return_inverse=True)
    mapped = np.array([lut.get(int(c), -1) for c in codes], dtype=np.int64)
    ids = mapped[inverse.reshape(arr.shape[:2])]
    unknown = ids < 0
    return np.where(unknown, IGNORE, ids).astype(np.uint8), int(np.count_nonzero(unknown))


@overload
def decode_voc_target(path: str | os.PathLike, with_unknown: Literal[False] = ...) -> np.ndarray: ...
@overload
def decode_voc_target(path: str | os.PathLike, with_unknown: Literal[True]) -> tuple[np.ndarray, int]: ...
def decode_voc_target(path: str | os.PathLike, with_unknown: bool = False):
    """A VOC target png (RGB in the VOC palette, or palette-mode "P" / grey where the index is
    the id) -> (H, W) uint8 ids 0..20 and 255. Colours outside the palette become 255; with
    `with_unknown` the count of such pixels is returned too (it is logged either way)."""
    im = _open(path)
    if im.mode in ("P", "L"):
        arr = np.asarray(im)
    elif im.mode in ("RGB", "RGBA"):
        arr = np.asarray(im.convert("RGB"))
    else:
        raise VccError(f"{path}: a VOC target must be an RGB, palette or grey png, got mode {im.mode}")
    ids, unknown = decode_voc_colors(arr)
    if unknown:
        log.warning("%s: %d pixels have colours outside the VOC palette; scored as ignore", path, unknown)
    return (ids, unknown) if with_unknown else ids


# --- CelebAMask-HQ, Cityscapes, binary masks --------------------------------------------------

def celebamask_remap_table(remap: str) -> np.ndarray:
    """A 256-entry lookup from CelebAMask-HQ ids to the ids of another class order (255 kept)."""
    if remap not in CELEBAMASK_REMAPS:
        raise VccError(f"unknown CelebAMask-HQ remap {remap!r}; known: {', '.join(CELEBAMASK_REMAPS)}")
    order = CELEBAMASK_REMAPS[remap]
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for k, name in enumerate(CELEBAMASK_CLASSES):
        lut[k] = order.index(name)
    return lut


def load_celebamask_label(path: str | os.PathLike, remap: str | None = None) -> np.ndarray:
    """A CelebAMask-HQ label png (ids 0..18 in CelebAMask-HQ order) -> (H, W) uint8; with
    `remap="face-parsing"` the ids are those of the face-parsing BiSeNet checkpoint."""
    ids = _check_ids(_single_channel(_open(path), path), len(CELEBAMASK_CLASSES), path)
    return celebamask_remap_table(remap)[ids] if remap is not None else ids


def load_cityscapes_trainids(path: str | os.PathLike) -> np.ndarray:
    """A Cityscapes `*_gtFine_labelTrainIds.png` -> (H, W) uint8 train ids 0..18 and 255."""
    return _check_ids(_single_channel(_open(path), path), len(CITYSCAPES_CLASSES), path)


def load_binary_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """A 0/255 or 0/1 mask -> (H, W) uint8 0/1 (anything >= 128 is 1 in a 0..255 mask);
    resized to `size` (H, W) with nearest neighbour when given and different."""
    arr = _single_channel(_open(path), path).astype(np.int64)
    mask = (arr > 0) if arr.max(initial=0) <= 1 else (arr >= 128)
    mask = mask.astype(np.uint8)
    return resize_label(mask, size) if size is not None else mask


# --- image / label pairing --------------------------------------------------------------------

def _photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _pairs_voc(root: Path) -> list[tuple[Path, Path]]:
    """`<id>_image.png` + `<id>_target.png`, or VOCdevkit's JPEGImages/ + SegmentationClass/."""
    pairs = [(p, p.with_name(p.name.replace("_image", "_target", 1)).with_suffix(".png"))
             for p in _photos(root) if p.stem.endswith("_image")]
    jpeg, seg = root / "JPEGImages", root / "SegmentationClass"
    if jpeg.is_dir() and seg.is_dir():
        pairs += [(p, seg / f"{p.stem}.png") for p in _photos(jpeg)]
    return pairs


def _pairs_celebamask(root: Path) -> list[tuple[Path, Path]]:
    """`<i>.jpg` + `<i>.png` in the same folder."""
    return [(p, p.with_suffix(".png")) for p in _photos(root) if p.suffix.lower() in (".jpg", ".jpeg")]


def _pairs_cityscapes(root: Path) -> list[tuple[Path, Path]]:
    """`X_leftImg8bit.png` + `X_gtFine_labelTrainIds.png` beside it, or in the gtFine/ tree that
    mirrors leftImg8bit/ (the official layout)."""
    pairs = []
    for p in _photos(root):
        if not p.name.endswith("_leftImg8bit.png"):
            continue
        name = p.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
        beside = p.with_name(name)
        parts = list(p.relative_to(root).parent.parts)
        mirrored = (root.joinpath(*["gtFine" if s == "leftImg8bit" else s for s in parts]) / name
                    if "leftImg8bit" in parts else beside)
        pairs.append((p, beside if beside.exists() else mirrored))
    return pairs


def _pairs_binary(root: Path) -> list[tuple[Path, Path]]:
    """`images/N.jpg` + `masks/N.png`."""
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        return []
    by_stem = {p.relative_to(masks).with_suffix(""): p for p in _photos(masks)}
    return [(p, by_stem.get(p.relative_to(images).with_suffix(""), masks / f"{p.stem}.png"))
            for p in _photos(images)]


@dataclass(frozen=True)
class DatasetSpec:
    """How a dataset's folder pairs photos with labels, and how a label is read."""

    pairs: Callable[[Path], list[tuple[Path, Path]]]
    load: Callable[[Path, str | None], np.ndarray]
    classes: list[str]
    layout: str


DATASETS: dict[str, DatasetSpec] = {
    "voc": DatasetSpec(_pairs_voc, lambda p, _: decode_voc_target(p), VOC_CLASSES,
                       "<id>_image.png + <id>_target.png"),
    "celebamask": DatasetSpec(_pairs_celebamask, load_celebamask_label, CELEBAMASK_CLASSES,
                              "<i>.jpg + <i>.png"),
    "cityscapes": DatasetSpec(_pairs_cityscapes, lambda p, _: load_cityscapes_trainids(p),
                              CITYSCAPES_CLASSES, "*_leftImg8bit.png + *_gtFine_labelTrainIds.png"),
    "binary": DatasetSpec(_pairs_binary, lambda p, _: load_binary_mask(p), BINARY_CLASSES,
                          "images/N.jpg + masks/N.png"),
}


@dataclass(frozen=True)
class LabelRef:
    """A lazily read label: calling it returns the (H, W) uint8 ids at its photo's size."""

    path: Path
    image_path: Path
    dataset: str
    remap: str | None = None

    def __call__(self) -> np.ndarray:
        ids = DATASETS[self.dataset].load(self.path, self.remap)
        return resize_label(ids, image_size(self.image_path))


class LabelledSet:
    """The labelled photos of a dataset folder: iterates sorted `(image_path, label_loader)`
    pairs, where `label_loader()` reads the label at the photo's size.

    `remap` (CelebAMask-HQ only) gives the labels, and `class_names`, in another class order.
    Photos without a label file are left out and listed in `unpaired`."""

    def __init__(self, dataset: str, root: str | os.PathLike, remap: str | None = None) -> None:
        if dataset not in DATASETS:
            raise VccError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
        if remap is not None and dataset != "celebamask":
            raise VccError(f"remap {remap!r} applies to celebamask labels only, not {dataset}")
        spec = DATASETS[dataset]
        self.dataset = dataset
        self.root = Path(root)
        self.remap = remap
        if remap is not None:
            celebamask_remap_table(remap)  # an unknown remap is an error here, not at first load
        self.class_names = list(CELEBAMASK_REMAPS[remap] if remap is not None else spec.classes)
        if not self.root.is_dir():
            raise VccError(f"{self.root}: no such folder (a {dataset} dataset root)")
        found = sorted(spec.pairs(self.root))
        self.pairs = [(img, lab) for img, lab in found if lab.is_file()]
        self.unpaired = [img for img, lab in found if not lab.is_file()]
        if not self.pairs:
            raise VccError(f"{self.root}: no {dataset} image/label pairs found (expected "
                           f"{spec.layout}; {len(self.unpaired)} photos without a label)")
        if self.unpaired:
            log.info("%s: %d photos have no label and are left out", self.root, len(self.unpaired))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[tuple[Path, LabelRef]]:
        for img, lab in self.pairs:
            yield img, LabelRef(lab, img, self.dataset, self.remap)
