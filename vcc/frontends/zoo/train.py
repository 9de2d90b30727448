"""Training a zoo model on the labelled person photos: `vcc export person --train`.

The recipe (architecture, input size, the photo/mask files, epochs, batch, seed, learning
rate, and the source of the net and of this module) is hashed into the cache key; a cached
checkpoint is loaded (``torch.load(weights_only=True)``) and never retrained:

    <$VCC_CACHE or ~/.cache/vcc>/trained/<model>-<key>.pt     the state_dict
    <$VCC_CACHE or ~/.cache/vcc>/trained/<model>-<key>.json   the recipe, held-out IoU, seconds

The photos are `images/N.jpg` + `masks/N.png` of `$VCC_DATA/images/human_seg_vikram` (default
`../shared/data` from the working folder, else beside the checkout), sorted by N: the last HELDOUT are held out, the rest
train. Training is deterministic on one machine (seeded initialisation, seeded batch order and
augmentation, torch's deterministic algorithms, a fixed thread count). The photos are resized
as vcc preprocesses them (the whole photo, bilinear, to the input size), masks nearest.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import nn

from vcc.errors import VccError
from vcc.frontends.zoo import get_model

PERSON_PHOTOS = Path("images") / "human_seg_vikram"
HELDOUT = 50
THREADS = 2


@dataclass(frozen=True)
class Recipe:
    model: str
    size: int  # square input side
    epochs: int
    batch: int
    lr: float
    seed: int = 0


RECIPES = {"person": Recipe("person", size=160, epochs=20, batch=8, lr=4e-3)}


# ----------------------------------------------------------------------------- data
def data_root() -> Path:
    """$VCC_DATA, else ../shared/data from the working folder, else beside the checkout."""
    if os.environ.get("VCC_DATA"):
        return Path(os.environ["VCC_DATA"])
    here = Path("..") / "shared" / "data"
    beside_repo = Path(__file__).resolve().parents[4] / "shared" / "data"
    return here if here.is_dir() or not beside_repo.is_dir() else beside_repo


@dataclass(frozen=True)
class Split:
    """The (photo, mask) pairs, sorted by N, split into training and held-out pairs."""

    folder: Path
    train: list[tuple[Path, Path]]
    heldout: list[tuple[Path, Path]]

    def files(self) -> list[str]:
        """The file list the cache key names (relative to the folder)."""
        return [str(p.relative_to(self.folder)) for pair in self.train + self.heldout for p in pair]


def person_split(root: Path | None = None) -> Split:
    folder = (root or data_root()) / PERSON_PHOTOS
    images, masks = folder / "images", folder / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise VccError(f"{folder}: the labelled person photos (images/N.jpg, masks/N.png) are not there; "
                       "put ../shared beside the checkout or set VCC_DATA")
    photos = sorted((p for p in images.glob("*.jpg") if p.stem.isdigit()), key=lambda p: int(p.stem))
    pairs = [(p, masks / f"{p.stem}.png") for p in photos]
    lacking = [m.name for _, m in pairs if not m.is_file()]
    if lacking:
        raise VccError(f"{masks}: masks missing for {len(lacking)} photos ({', '.join(lacking[:5])})")
    if len(pairs) <= 2 * HELDOUT:
        raise VccError(f"{folder}: {len(pairs)} labelled photos; training needs more than {2 * HELDOUT}")
    return Split(folder, pairs[:-HELDOUT], pairs[-HELDOUT:])


def _read(path: Path, mode: str, size: int, resample) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode).resize((size, size), resample))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VccError(f"{path}: cannot read the image ({e})") from e


def load_pairs(pairs: list[tuple[Path, Path]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Photos as (N, 3, size, size) float32 in 0..1 and masks as (N, size, size) int64 0/1."""
    photos = np.stack([_read(p, "RGB", size, Image.BILINEAR) for p, _ in pairs])
    masks = np.stack([_read(m, "L", size, Image.NEAREST) for _, m in pairs])
    masks = masks >= 128 if masks.max() > 1 else masks > 0
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    return x, torch.from_numpy(masks.astype(np.int64))


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _jitter(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded left-right flip, zoom 0.8-1.25 and shift of up to 10% (one affine warp; photo
    bilinear, mask nearest), brightness +-0.1."""
    n = len(x)
    rand = torch.rand(n, 5, generator=gen)
    flip = torch.where(rand[:, 0] < 0.5, -1.0, 1.0)
    zoom = 0.8 + 0.45 * rand[:, 1]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = flip / zoom, 1.0 / zoom
    theta[:, 0, 2], theta[:, 1, 2] = 0.2 * rand[:, 2] - 0.1, 0.2 * rand[:, 3] - 0.1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", align_corners=False)
    y = F.grid_sample(y[:, None].float(), grid, mode="nearest", align_corners=False)[:, 0].long()
    return (x + (0.2 * rand[:, 4] - 0.1).view(n, 1, 1, 1)).clamp(0.0, 1.0), y


# ----------------------------------------------------------------------------- training
def _main_logits(entry, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = entry.main_logits(module, x)
    if tuple(y.shape[2:]) != tuple(x.shape[2:]):
        y = F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)
    return y


@torch.no_grad()
def person_iou(entry, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """IoU of class 1 (person), intersections and unions summed over the images."""
    module.eval()
    pred = torch.cat([_main_logits(entry, module, x[i:i + 10]).argmax(1) for i in range(0, len(x), 10)]).bool()
    union = int((pred | y.bool()).sum())
    return int((pred & y.bool()).sum()) / union if union else 1.0


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 5.0)


def train(recipe: Recipe, split: Split) -> tuple[nn.Module, float, float]:
    """Train from the seeded initialisation (Adam, cosine-decayed lr, cross-entropy on the main
    logits); returns the eval-mode module, the held-out person IoU and the training seconds."""
    entry = get_model(recipe.model)
    import torch.utils.deterministic as det

    threads, deterministic, fill = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                                    det.fill_uninitialized_memory)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    det.fill_uninitialized_memory = False  # every buffer here is written before it is read
    try:
        x, y = load_pairs(split.train, recipe.size)
        hx, hy = load_pairs(split.heldout, recipe.size)
        torch.manual_seed(recipe.seed)
        module = entry.build(2).train()
        steps = recipe.epochs * (len(x) // recipe.batch)
        opt = torch.optim.Adam(module.parameters(), lr=recipe.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        gen = torch.Generator().manual_seed(recipe.seed)
        start = time.perf_counter()
        with _progress(steps, f"training {recipe.model}") as bar:
            for _ in range(recipe.epochs):
                order = torch.randperm(len(x), generator=gen)
                for b in range(len(x) // recipe.batch):
                    idx = order[b * recipe.batch:(b + 1) * recipe.batch]
                    bx, by = _jitter(x[idx], y[idx], gen)
                    loss = F.cross_entropy(_main_logits(entry, module, normalize(bx, entry.mean, entry.std)), by)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                    bar.update()
        seconds = time.perf_counter() - start
        iou = person_iou(entry, module, normalize(hx, entry.mean, entry.std), hy)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        det.fill_uninitialized_memory = fill
    return module.eval(), iou, seconds


# ----------------------------------------------------------------------------- the cache
def cache_dir() -> Path:
    base = os.environ.get("VCC_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "vcc") / "trained"


def recipe_key(recipe: Recipe, split: Split) -> str:
    """sha256 of the recipe, the data file list, and the source of the net and of this module."""
    entry = get_model(recipe.model)
    net_source = Path(inspect.getsourcefile(entry.build)).read_text()
    parts = {"recipe": asdict(recipe), "files": split.files(), "heldout": HELDOUT, "threads": THREADS,
             "net": hashlib.sha256(net_source.encode()).hexdigest(),
             "trainer": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` into a temporary sibling of `path`, then renamed over it: a reader never sees
    a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class Trained:
    recipe: Recipe
    module: nn.Module  # eval mode
    heldout_iou: float
    weights: Path
    info: dict
    from_cache: bool
    split: Split


def trained_model(name: str, root: Path | None = None, log: Callable[[str], None] = lambda s: None) -> Trained:
    """The zoo model `name` trained per its recipe: from the cache, else trained now and cached."""
    if name not in RECIPES:
        raise VccError(f"--train: vcc has no training recipe for {name!r} (trainable: {', '.join(RECIPES)})")
    recipe = RECIPES[name]
    split = person_split(root)
    key = recipe_key(recipe, split)
    weights = cache_dir() / f"{name}-{key}.pt"
    info_path = weights.with_suffix(".json")
    torch.manual_seed(recipe.seed)
    module = get_model(name).build(2)
    if weights.is_file() and info_path.is_file():
        try:
            module.load_state_dict(torch.load(weights, weights_only=True, map_location="cpu"))
            info = json.loads(info_path.read_text())
            log(f"trained {name} from the cache {weights} (held-out person IoU {info['heldout_iou']:.3f})")
            return Trained(recipe, module.eval(), float(info["heldout_iou"]), weights, info, True, split)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            log(f"{weights}: unreadable cached checkpoint ({e}); training again")
    log(f"training {name} at {recipe.size}x{recipe.size} on {len(split.train)} photos of {split.folder} "
        f"({recipe.epochs} epochs, seed {recipe.seed}; {len(split.heldout)} held out); cached as {weights}")
    module, iou, seconds = train(recipe, split)
    info = {"recipe": asdict(recipe), "key": key, "heldout_iou": round(iou, 4), "train_seconds": round(seconds, 1),
            "train_photos": len(split.train), "heldout_photos": len(split.heldout),
            "heldout": [p.name for p, _ in split.heldout], "data": str(split.folder), "torch": torch.__version__}
    write_atomic(weights, lambda p: torch.save(module.state_dict(), p))
    write_atomic(info_path, lambda p: p.write_text(json.dumps(info, indent=1)))
    log(f"trained {name} in {seconds:.0f} s: held-out person IoU {iou:.3f} ({len(split.heldout)} photos)")
    return Trained(recipe, module, iou, weights, info, False, split)


def write_split(split: Split, out: Path) -> Path:
    """The split as folders of symbolic links to the photos (nothing copied): out/train/images,
    out/heldout/images + out/heldout/masks (a `binary` dataset for `--eval` / `vcc compare`)."""
    out = Path(out)
    for part, pairs in (("train", split.train), ("heldout", split.heldout)):
        for sub, k in (("images", 0), ("masks", 1)):
            if part == "train" and sub == "masks":
                continue
            folder = out / part / sub
            folder.mkdir(parents=True, exist_ok=True)
            for pair in pairs:
                link = folder / pair[k].name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(pair[k].resolve())
    return out
