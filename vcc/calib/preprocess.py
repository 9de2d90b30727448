"""Model preprocessing (resize, [0, 1], mean/std, colour order) and image folders.

The one image path of vcc: calibration, `vcc run`, `vcc compare` and evaluation all read
images through :func:`load_image` with a :class:`Preprocess`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vcc.errors import VccError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
METADATA_KEY = "vcc.preprocess"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# names that datasets give their label maps; never taken as input photos
_LABEL_NAME = re.compile(r"(_target|_label|_labels|_mask|_gtFine_.*|labelTrainIds|labelIds)$", re.I)


@dataclass(frozen=True)
class Preprocess:
    """How a photo becomes the model input: resize to (H, W), scale to [0, 1], subtract mean
    and divide by std per channel (in the model's channel order), NCHW float32.
    `source` says where the figures came from (onnx metadata, command line, defaults)."""

    size: tuple[int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    color: str = "RGB"  # channel order the model expects: RGB or BGR
    source: str = "default"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @staticmethod
    def from_dict(d: dict) -> Preprocess:
        return Preprocess(size=tuple(int(v) for v in d["size"]), mean=tuple(float(v) for v in d["mean"]),
                          std=tuple(float(v) for v in d["std"]), color=d.get("color", "RGB"),
                          source=d.get("source", "manifest"))

    def metadata_json(self) -> str:
        d = self.to_dict()
        d.pop("source")
        return json.dumps(d)


def resolve_preprocess(metadata: dict[str, str], input_shape: Sequence[int],
                       size: Sequence[int] | None = None, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None, bgr: bool | None = None) -> Preprocess:
    """Preprocessing for a model: ONNX metadata, then command-line figures (which override the
    metadata field by field), else the input shape with RGB and ImageNet mean/std."""
    base: dict = {}
    source = "default (input shape, RGB, ImageNet mean/std)"
    if METADATA_KEY in metadata:
        try:
            base = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as e:
            raise VccError(f"the model's {METADATA_KEY} metadata is not valid JSON: {e}") from e
        source = "onnx metadata"
    given = {k: v for k, v in (("size", size), ("mean", mean), ("std", std)) if v is not None}
    if bgr is not None:
        given["color"] = "BGR" if bgr else "RGB"
    if given:
        source = "command line" if not base else "onnx metadata + command line"
    merged = {**base, **given}
    if len(input_shape) != 4:
        raise VccError(f"image preprocessing needs an NCHW input; the model's input shape is {tuple(input_shape)}")
    merged.setdefault("size", list(input_shape[2:]))
    merged.setdefault("mean", IMAGENET_MEAN)
    merged.setdefault("std", IMAGENET_STD)
    merged.setdefault("color", "RGB")
    pre = Preprocess(size=tuple(int(v) for v in merged["size"]),
                     mean=tuple(float(v) for v in merged["mean"]),
                     std=tuple(float(v) for v in merged["std"]), color=str(merged["color"]).upper(),
                     source=source)
    channels = input_shape[1]
    if len(pre.mean) != channels or len(pre.std) != channels:
        raise VccError(f"mean {pre.mean} / std {pre.std} do not match the model's {channels} input channels")
    if any(s <= 0 for s in pre.std):
        raise VccError(f"std must be positive, got {pre.std}")
    if pre.color not in ("RGB", "BGR"):
        raise VccError(f"colour order must be RGB or BGR, got {pre.color!r}")
    if tuple(pre.size) != tuple(input_shape[2:]):
        raise VccError(f"preprocessing size {pre.size} does not match the model's input "
                       f"{tuple(input_shape)}; build with --size {input_shape[2]} {input_shape[3]}")
    return pre


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB (grey, palette and RGBA are converted); a VccError if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VccError(f"{path}: cannot read the image ({e})") from e


def preprocess_image(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """An RGB PIL image -> (1, C, H, W) float32 per `pre`."""
    h, w = pre.size
    arr = np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    if pre.color == "BGR":
        arr = arr[..., ::-1]
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def load_image(path: str | os.PathLike, pre: Preprocess) -> np.ndarray:
    return preprocess_image(read_rgb(path), pre)


def list_images(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """Photos in a folder (recursively), sorted by path. Label maps are left out: files named like
    labels (`*_target`, `*_mask`, `*_gtFine_*`, ...) and a `.png` beside a photo of the same stem
    (CelebAMask-HQ's `0.jpg` + `0.png`)."""
    folder = Path(folder)
    if not folder.exists():
        raise VccError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise VccError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    stems_with_photo = {(p.parent, p.stem) for p in files if p.suffix.lower() in (".jpg", ".jpeg")}
    images = [p for p in files if not _LABEL_NAME.search(p.stem)
              and not (p.suffix.lower() == ".png" and (p.parent, p.stem) in stems_with_photo)]
    if not images:
        raise VccError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images[:limit] if limit else images
