"""The preprocessing a model expects (resize, [0, 1], mean/std, colour order): plain data.

Ground layer: the ONNX metadata written by `vcc export`, the build and the artifact's manifest all
record a :class:`Preprocess`; reading and preprocessing photos is `vcc.calib.images`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from vcc.errors import VccError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
METADATA_KEY = "vcc.preprocess"


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
