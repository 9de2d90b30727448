"""Calibration data: a folder of photos (preprocessed per the model) or of ready .npy tensors.

A source is a plain iterable of input arrays (the way ONNX Runtime's CalibrationDataReader
and TensorRT's calibrators take data), with a fingerprint for the calibration cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcc.calib.images import list_images, load_image, read_rgb
from vcc.errors import VccError
from vcc.ir.preprocess import Preprocess

log = logging.getLogger(__name__)


def choose_evenly(items: Sequence, n: int | None) -> list:
    """n items spread evenly over a sorted list (deterministic, covers the whole folder)."""
    items = list(items)
    if not n or n >= len(items):
        return items
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in sorted(set(idx.tolist()))]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class CalibrationSource:
    """The chosen files and how to turn each into an input tensor."""

    folder: Path
    files: list[Path]
    kind: str  # "images" or "npy"
    input_shape: tuple[int, ...]
    preprocess: Preprocess | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        """sha256 over the chosen files' relative names and contents."""
        h = hashlib.sha256()
        for p in self.files:
            h.update(str(p.relative_to(self.folder)).encode())
            h.update(_file_digest(p).encode())
        return h.hexdigest()

    def __iter__(self) -> Iterator[np.ndarray]:
        for p in self.files:
            x = self._load(p)
            if x is not None:
                yield x

    def _load(self, p: Path) -> np.ndarray | None:
        if self.kind == "npy":
            return _load_npy(p, self.input_shape)
        try:
            return load_image(p, self.preprocess)
        except VccError as e:
            log.warning("skipping unreadable calibration image: %s", e)
            self.skipped.append(str(p))
            return None


def _load_npy(p: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        x = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise VccError(f"{p}: cannot read the .npy tensor ({str(e)[:160]})") from e
    if x.dtype.kind not in "fiu":
        raise VccError(f"{p}: a .npy tensor of dtype {x.dtype} cannot be a calibration input (need real numbers)")
    if x.shape == tuple(shape[1:]):
        x = x[None]
    if x.shape != tuple(shape):
        raise VccError(f"{p}: tensor of shape {list(x.shape)} does not match the model input {list(shape)}")
    x = np.ascontiguousarray(x.astype(np.float32))
    if not np.isfinite(x).all():
        raise VccError(f"{p}: the tensor holds NaN or infinite values (or values beyond float32)")
    return x


def calibration_source(folder: str | os.PathLike, input_shape: Sequence[int], preprocess: Preprocess | None,
                       num: int | None = 50) -> CalibrationSource:
    """Photos or .npy tensors from `folder`; `num` of them chosen evenly over the sorted list.

    Unreadable photos are skipped with a warning naming each (checked up front, so the count is
    right); a missing or empty folder, or no readable photo, is a VccError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VccError(f"{folder}: no such calibration folder")
    npys = sorted(p for p in folder.rglob("*.npy") if p.is_file())
    if npys:
        return CalibrationSource(folder, choose_evenly(npys, num), "npy", tuple(input_shape))
    try:
        candidates = list_images(folder)
    except VccError as e:
        raise VccError(f"{folder}: no calibration images or .npy tensors found") from e
    readable, skipped = [], []
    for p in choose_evenly(candidates, num):
        try:
            read_rgb(p)
            readable.append(p)
        except VccError as e:
            log.warning("skipping unreadable calibration image: %s", e)
            skipped.append(str(p))
    if not readable:
        raise VccError(f"{folder}: none of the {len(skipped)} image files could be read "
                       f"(first: {skipped[0]})")
    return CalibrationSource(folder, readable, "images", tuple(input_shape),
                             preprocess, skipped)
