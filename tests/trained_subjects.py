"""Briefly trained test subjects: person segmentation on the 290 human_seg_vikram photos
(test utility, not a user feature).

An untrained net's argmax map is nearly constant, so int8-vs-fp32 agreement on it says
nothing; the upstream checkpoints cannot be had here. These subjects are trained for a fixed
number of steps (deterministic: seeded init, seeded flips, Adam, cross-entropy, 2 threads)
on the first 240 photos, scored on the last 50, and cached:

    <$VCC_CACHE or ~/.cache/vcc>/subjects/<name>-<key>.pt    (state_dict, weights_only)
    <$VCC_CACHE or ~/.cache/vcc>/subjects/<name>-<key>.json  (held-out IoU, training time)

where key = sha256 of the source of the net's defining files, of the training code and of
the hyper-parameters: editing any of them retrains, and a cache hit never trains.

    subject = trained_subject("unet_mobilenetv2")
    subject.module, subject.size, subject.heldout_iou
    subject.export_onnx(tmp_path / "unet.onnx")
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vcc.calib.images import read_rgb
from vcc.errors import VccError
from vcc.frontends.torch_export import export_torch
from vcc.frontends.zoo import get_model
from vcc.frontends.zoo.export import MainLogits
from vcc.frontends.zoo.train import write_atomic
from vcc.ir.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from subjects import BiSeNetShaped  # noqa: E402

PERSON_FOLDER = Path("images") / "human_seg_vikram"
HELDOUT = 50
THREADS = 2
TINY_MEAN = (0.5, 0.5, 0.5)
TINY_STD = (50.0, 50.0, 50.0)  # pixels in [0, 1] -> [-0.01, 0.01]


# ----------------------------------------------------------------------------- data
def data_dir() -> Path:
    """$VCC_DATA or ../shared/data beside the checkout (as tests/conftest.py)."""
    return Path(os.environ.get("VCC_DATA", ROOT.parent / "shared" / "data"))


def person_pairs(root: Path | None = None) -> list[tuple[Path, Path]]:
    """(photo, mask) pairs images/N.jpg, masks/N.png sorted by N; a VccError if missing."""
    folder = (root or data_dir()) / PERSON_FOLDER
    if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
        raise VccError(f"person photos not found at {folder} (images/, masks/): put ../shared "
                       "beside the checkout or set VCC_DATA")
    photos = sorted((p for p in (folder / "images").glob("*.jpg") if p.stem.isdigit()),
                    key=lambda p: int(p.stem))
    pairs = [(p, folder / "masks" / f"{p.stem}.png") for p in photos]
    missing = [str(m) for _, m in pairs if not m.is_file()]
    if missing:
        raise VccError(f"person masks missing: {', '.join(missing[:5])}")
    if len(pairs) <= HELDOUT:
        raise VccError(f"{folder}: {len(pairs)} photos, need more than {HELDOUT}")
    return pairs


def read_mask(path: Path, size: int) -> np.ndarray:
    """A 0/255 or 0/1 mask -> (size, size) uint8 0/1, resized nearest."""
    try:
        with Image.open(path) as im:
            m = np.asarray(im.convert("L").resize((size, size), Image.NEAREST))
    except OSError as e:
        raise VccError(f"{path}: cannot read the mask ({e})") from e
    return (m > (127 if m.max() > 1 else 0)).astype(np.uint8)


@lru_cache(maxsize=4)
def _load_arrays(root: Path, size: int) -> tuple[np.ndarray, np.ndarray, tuple[Path, ...]]:
    """All photos (N, size, size, 3) uint8 resized bilinear as vcc's preprocess_image, masks."""
    pairs = person_pairs(root)
    photos = np.stack([np.asarray(read_rgb(p).resize((size, size), Image.BILINEAR)) for p, _ in pairs])
    masks = np.stack([read_mask(m, size) for _, m in pairs])
    photos.flags.writeable = masks.flags.writeable = False
    return photos, masks, tuple(p for p, _ in pairs)


class PersonData:
    """The person photos at size x size: the last 50 (by N) held out, the rest train.

    Tensors are NCHW float32 preprocessed as vcc does ((x / 255 - mean) / std, RGB) and
    int64 labels 0 (background) / 1 (person)."""

    def __init__(self, size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, root: Path | None = None):
        self.size = size
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.photos, self.masks, self.paths = _load_arrays(Path(root or data_dir()), size)
        n = len(self.paths)
        self.train_index = np.arange(0, n - HELDOUT)
        self.heldout_index = np.arange(n - HELDOUT, n)

    @property
    def heldout_paths(self) -> list[Path]:
        return [self.paths[i] for i in self.heldout_index]

    def pixels(self, index: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Photos as NCHW float32 in [0, 1]."""
        x = torch.from_numpy(self.photos[np.asarray(index)]).permute(0, 3, 1, 2)
        return x.to(torch.float32).contiguous() / 255.0

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).reshape(1, -1, 1, 1)
        return (pixels - mean) / std

    def inputs(self, index: Sequence[int] | np.ndarray) -> torch.Tensor:
        return self.normalize(self.pixels(index))

    def labels(self, index: Sequence[int] | np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.masks[np.asarray(index)].astype(np.int64))

    def heldout(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs(self.heldout_index), self.labels(self.heldout_index)


# ----------------------------------------------------------------------------- scoring
def main_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The main logits at the input size: the output, or the first of a tuple of outputs,
    resized bilinear (as the zoo's MainLogits) when smaller than the input."""
    y = module(x)
    if isinstance(y, (tuple, list)):
        y = y[0]
    if tuple(y.shape[2:]) != tuple(x.shape[2:]):
        y = F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)
    return y


@torch.no_grad()
def predict(module: nn.Module, x: torch.Tensor, batch: int = 10) -> torch.Tensor:
    """Argmax maps (N, H, W) of the eval-mode module."""
    module.eval()
    return torch.cat([main_logits(module, x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def heldout_person_iou(module: nn.Module, data: PersonData) -> float:
    """IoU of class 1 (person) over the 50 held-out photos, confusion summed over images."""
    x, y = data.heldout()
    pred = predict(module, x).bool()
    truth = y.bool()
    union = int((pred | truth).sum())
    return float(int((pred & truth).sum()) / union) if union else 1.0


# ----------------------------------------------------------------------------- the tiny-range net
def _prelu_conv(cin: int, cout: int, k: int = 1, s: int = 1, d: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, padding=d * (k // 2), dilation=d, groups=groups,
                                   bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout))


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (strided or dilated) -> pointwise 1x1, each BN + PReLU; residual when the
    shape allows."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.dw = _prelu_conv(cin, cin, 3, stride, dilation, groups=cin)
        self.pw = _prelu_conv(cin, cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class TinyRangePReLU(nn.Module):
    """A small efficient net for inputs normalised to about +-0.01: PReLU after every conv,
    depthwise-separable blocks down to 1/8, a dilated (2, 4, 8) context at 1/8, a
    ConvTranspose decoder with a 1/4 skip, a bilinear 4x upsample to the input."""

    def __init__(self, num_classes: int = 2, width: int = 16):
        super().__init__()
        w = width
        self.stem = _prelu_conv(3, w, 3, 2)                                   # 1/2
        self.down4 = SeparableBlock(w, 2 * w, stride=2)                       # 1/4
        self.down8 = SeparableBlock(2 * w, 4 * w, stride=2)                   # 1/8
        self.context = nn.Sequential(*(SeparableBlock(4 * w, 4 * w, dilation=d) for d in (2, 4, 8)))
        self.up = nn.Sequential(nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),
                                nn.BatchNorm2d(2 * w), nn.PReLU(2 * w))      # 1/4
        self.fuse = SeparableBlock(4 * w, 2 * w)
        self.cls = nn.Conv2d(2 * w, num_classes, 1)

    def forward(self, x):
        f4 = self.down4(self.stem(x))
        y = self.up(self.context(self.down8(f4)))
        y = self.cls(self.fuse(torch.cat([y, f4], dim=1)))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Subject:
    """How to build (2-class head) and train one subject."""

    name: str
    build: Callable[[], nn.Module]
    size: int
    steps: int
    lr: float
    seed: int = 0
    batch: int = 8
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    aux_weight: float = 0.4  # loss weight of training-mode auxiliary outputs
    zoo: str | None = None  # zoo model name: export through the zoo's MainLogits

    def hyper(self) -> dict:
        return {"name": self.name, "size": self.size, "steps": self.steps, "lr": self.lr,
                "seed": self.seed, "batch": self.batch, "mean": list(self.mean),
                "std": list(self.std), "aux_weight": self.aux_weight, "zoo": self.zoo}


def _zoo(name: str) -> Callable[[], nn.Module]:
    return lambda: get_model(name).build(2)


SUBJECTS: dict[str, Subject] = {s.name: s for s in (
    Subject("bisenet_shaped", lambda: BiSeNetShaped(num_classes=2), size=160, steps=600, lr=2e-3),
    Subject("unet_mobilenetv2", _zoo("unet_mobilenetv2"), size=128, steps=300, lr=1e-3,
            zoo="unet_mobilenetv2"),
    Subject("deeplab3plus_resnet18", _zoo("deeplab3plus_resnet18"), size=128, steps=300, lr=1e-3,
            zoo="deeplab3plus_resnet18"),
    Subject("deeplabv3_mobilenet", _zoo("deeplabv3_mobilenet"), size=128, steps=300, lr=1e-3,
            zoo="deeplabv3_mobilenet"),
    Subject("bisenet", _zoo("bisenet"), size=128, steps=300, lr=1e-3, zoo="bisenet"),
    Subject("tiny_range_prelu", lambda: TinyRangePReLU(num_classes=2, width=16), size=128,
            steps=1500, lr=3e-3, mean=TINY_MEAN, std=TINY_STD),
)}

# the subjects the test suite trains from an empty cache on 2 cores (about 75 s each for the
# test nets, 2 and 3.5 minutes for the two zoo models); the int8 tests run on the confident test
# nets (INT8_SUBJECTS); bisenet and deeplabv3_mobilenet are for benchmarks/int8_accuracy.py
CI_SUBJECTS = ("bisenet_shaped", "tiny_range_prelu", "unet_mobilenetv2", "deeplab3plus_resnet18")
INT8_SUBJECTS = ("bisenet_shaped", "tiny_range_prelu")


# ----------------------------------------------------------------------------- training
def _loss(out: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """Cross-entropy of the main logits plus aux_weight x that of each auxiliary output
    (each resized bilinear to the labels when smaller)."""
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    total = torch.zeros(())
    for i, o in enumerate(outs):
        if tuple(o.shape[2:]) != tuple(y.shape[1:]):
            o = F.interpolate(o, size=y.shape[1:], mode="bilinear", align_corners=False)
        total = total + (1.0 if i == 0 else aux_weight) * F.cross_entropy(o, y)
    return total


def _batches(n: int, batch: int, steps: int, gen: torch.Generator):
    """`steps` index batches: epochs of a seeded permutation."""
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < batch:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        idx, order = order[:batch], order[batch:]
        yield idx.numpy()


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def augment(pixels: torch.Tensor, labels: torch.Tensor, gen: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded photometric and geometric jitter of a batch: a left-right flip (p = 1/2), a zoom
    of 0.75-1.3 and a shift of up to 15% in one affine warp (photo bilinear, mask nearest,
    outside black / background), contrast 0.8-1.2 and brightness +-0.1."""
    n = len(pixels)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    zoom = _uniform(n, 0.75, 1.3, gen)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = flip / zoom, 1.0 / zoom
    theta[:, 0, 2], theta[:, 1, 2] = _uniform(n, -0.15, 0.15, gen), _uniform(n, -0.15, 0.15, gen)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    pixels = F.grid_sample(pixels, grid, mode="bilinear", align_corners=False)
    labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", align_corners=False)
    contrast = _uniform(n, 0.8, 1.2, gen).reshape(n, 1, 1, 1)
    bright = _uniform(n, -0.1, 0.1, gen).reshape(n, 1, 1, 1)
    pixels = ((pixels - 0.5) * contrast + 0.5 + bright).clamp(0.0, 1.0)
    return pixels, labels[:, 0].round().long()


def _log(msg: str) -> None:
    print(f"[trained_subjects] {msg}", file=sys.stderr, flush=True)


def train_subject(subject: Subject, data: PersonData) -> nn.Module:
    """Train from the seeded initialisation for subject.steps steps (Adam, cosine-decayed lr,
    BatchNorm in train mode); the module is returned in eval mode."""
    torch.manual_seed(subject.seed)
    module = subject.build().train()
    opt = torch.optim.Adam(module.parameters(), lr=subject.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / subject.steps)))
    gen = torch.Generator().manual_seed(subject.seed)
    train = data.train_index
    start, report = time.perf_counter(), max(1, subject.steps // 5)
    for step, idx in enumerate(_batches(len(train), subject.batch, subject.steps, gen), 1):
        x, y = augment(data.pixels(train[idx]), data.labels(train[idx]), gen)
        loss = _loss(module(data.normalize(x)), y, subject.aux_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % report == 0 or step == subject.steps:
            _log(f"{subject.name}: step {step}/{subject.steps} loss {loss.item():.3f} "
                 f"({time.perf_counter() - start:.0f} s)")
    return module.eval()


# ----------------------------------------------------------------------------- cache
# the functions whose source decides the trained weights and the cached IoU
_TRAINING_CODE = (person_pairs, read_mask, _load_arrays, PersonData, main_logits, predict,
                  heldout_person_iou, _loss, _batches, _uniform, augment, train_subject)


def cache_dir() -> Path:
    base = os.environ.get("VCC_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "vcc") / "subjects"


def _source_texts(module: nn.Module) -> list[str]:
    """The source deciding the net: whole files of its module classes (torch's own left out);
    for classes defined here, the class source only (editing the table keeps the cache)."""
    torch_dir = str(Path(torch.__file__).parent)
    here = str(Path(__file__).resolve())
    files, classes = set(), set()
    for m in module.modules():
        f = inspect.getsourcefile(type(m))
        if f is None or f.startswith(torch_dir):
            continue
        if str(Path(f).resolve()) == here:
            classes.add(type(m))
        else:
            files.add(str(Path(f).resolve()))
    texts = [Path(f).read_text() for f in sorted(files)]
    texts += [inspect.getsource(c) for c in sorted(classes, key=lambda c: c.__qualname__)]
    return texts


def cache_key(subject: Subject, module: nn.Module) -> str:
    h = hashlib.sha256()
    parts = [*_source_texts(module), *(inspect.getsource(f) for f in _TRAINING_CODE),
             json.dumps(subject.hyper(), sort_keys=True), f"threads={THREADS}"]
    for p in parts:
        h.update(hashlib.sha256(p.encode()).digest())
    return h.hexdigest()[:16]


_save_atomic = write_atomic  # the trainer's atomic cache write


# ----------------------------------------------------------------------------- the subject
@dataclass
class TrainedSubject:
    subject: Subject
    module: nn.Module  # eval mode
    heldout_iou: float
    weights: Path  # the cached state_dict
    trained_now: bool  # trained in this call (a cache miss)
    train_seconds: float  # as recorded when it was trained
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.subject.name

    @property
    def size(self) -> int:
        return self.subject.size

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.subject.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.subject.std

    def data(self) -> PersonData:
        return PersonData(self.size, self.mean, self.std)

    def preprocess(self, size: int | None = None) -> Preprocess:
        side = size or self.size
        return Preprocess(size=(side, side), mean=self.mean, std=self.std, color="RGB")

    def metadata(self, size: int | None = None) -> dict[str, str]:
        return {"vcc.preprocess": self.preprocess(size).metadata_json(), "vcc.classes": "2",
                "vcc.model": self.name, "vcc.weights": self.weights.name}

    def export_onnx(self, path: str | os.PathLike, size: int | None = None) -> Path:
        """ONNX of the main logits at the input resolution (1, 3, size, size), vcc metadata;
        `size` defaults to the training size (the nets are fully convolutional)."""
        if self.subject.zoo:
            wrapped = MainLogits(get_model(self.subject.zoo), self.module)
        else:
            wrapped = _MainLogits(self.module)
        side = size or self.size
        export_torch(wrapped, (1, 3, side, side), path, metadata=self.metadata(size))
        self.module.eval()
        return Path(path)


class _MainLogits(nn.Module):
    """The zoo's MainLogits for test nets: main logits resized to the input size."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.model = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return main_logits(self.model, x)


def _paths(name: str, key: str) -> tuple[Path, Path]:
    d = cache_dir()
    return d / f"{name}-{key}.pt", d / f"{name}-{key}.json"


def load_subject(name: str) -> TrainedSubject | None:
    """The cached subject, or None on a cache miss; never trains."""
    subject = _subject(name)
    torch.manual_seed(subject.seed)
    module = subject.build()
    weights, info_path = _paths(name, cache_key(subject, module))
    if not weights.is_file() or not info_path.is_file():
        return None
    try:
        module.load_state_dict(torch.load(weights, weights_only=True, map_location="cpu"))
        info = json.loads(info_path.read_text())
        iou = float(info["heldout_iou"])
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        _log(f"{name}: unreadable cache {weights} ({e}); retraining")
        return None
    return TrainedSubject(subject, module.eval(), iou, weights, False,
                          float(info.get("train_seconds", 0.0)), info)


def _subject(name: str) -> Subject:
    if name not in SUBJECTS:
        raise VccError(f"unknown trained subject {name!r}; known: {', '.join(SUBJECTS)}")
    return SUBJECTS[name]


def _train_and_cache(name: str) -> TrainedSubject:
    subject = _subject(name)
    data = PersonData(subject.size, subject.mean, subject.std)
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        _log(f"{name}: no cached weights in {cache_dir()}; training {subject.steps} steps "
             f"at {subject.size}x{subject.size}")
        start = time.perf_counter()
        module = train_subject(subject, data)
        seconds = time.perf_counter() - start
        iou = heldout_person_iou(module, data)
    finally:
        torch.set_num_threads(threads)
    _log(f"{name}: held-out person IoU {iou:.3f} after {seconds:.0f} s")
    weights, info_path = _paths(name, cache_key(subject, module))
    info = {**subject.hyper(), "heldout_iou": iou, "train_seconds": round(seconds, 1),
            "torch": torch.__version__}
    _save_atomic(weights, lambda p: torch.save(module.state_dict(), p))
    _save_atomic(info_path, lambda p: p.write_text(json.dumps(info, indent=1)))
    return TrainedSubject(subject, module, iou, weights, True, seconds, info)


_MEMO: dict[str, TrainedSubject] = {}


def trained_subject(name: str) -> TrainedSubject:
    """The named subject trained (from the disk cache when there, else trained now and
    cached); memoised per process, so callers share one module: do not modify it."""
    if name not in _MEMO:
        _MEMO[name] = load_subject(name) or _train_and_cache(name)
    return _MEMO[name]
