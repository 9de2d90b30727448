"""Colour palettes for label maps (the PASCAL VOC bit-interleaved palette)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def voc_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: class k's colour interleaves the bits of k over R, G and B."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[k] = (r, g, b)
    return pal


def save_mask(mask: np.ndarray, path: str | os.PathLike) -> None:
    """Write a (H, W) class-id map as a palette PNG (ids above 255 are not representable)."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(voc_palette().reshape(-1).tolist())
    im.save(path)


def save_overlay(photo: Image.Image, mask: np.ndarray, path: str | os.PathLike, alpha: float = 0.55) -> None:
    """The photo at its own size with the (H, W) class-id map blended over it: each pixel of a
    class other than 0 (background) takes `alpha` of its class colour (a map of another size is
    resized nearest-neighbour to the photo), the background stays as photographed."""
    rgb = np.asarray(photo.convert("RGB"), dtype=np.float32)
    ids = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(photo.size, Image.NEAREST))
    # the VOC colours at twice their brightness (class 1's (128, 0, 0) is dark): pure red for 1
    colours = np.minimum(voc_palette().astype(np.float32) * 2, 255)[ids]
    out = np.where(ids[..., None] > 0, (1 - alpha) * rgb + alpha * colours, rgb)
    Image.fromarray(out.round().astype(np.uint8)).save(path)
