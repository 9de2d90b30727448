"""Photos in, model inputs out: read an image, preprocess it per a :class:`Preprocess`, list a folder.

The one image path of vcc: calibration, `vcc run`, `vcc compare` and evaluation all read
images through :func:`load_image`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vcc.errors import VccError
from vcc.ir.preprocess import Preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# names that datasets give their label maps; never taken as input photos
_LABEL_NAME = re.compile(r"(_target|_label|_labels|_mask|_gtFine_.*|labelTrainIds|labelIds)$", re.I)


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB (grey, palette and RGBA are converted); a VccError if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Image.DecompressionBombError as e:  # PIL's pixel limit (a decompression bomb?)
        raise VccError(f"{path}: cannot read the image: {str(e).splitlines()[0][:160]}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise VccError(f"{path}: cannot read the image ({str(e)[:160]})") from e


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
