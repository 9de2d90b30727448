"""The accuracy report's evaluation set: the photos to evaluate on (a folder of photos, or a
labelled dataset's photos paired with their labels), less those used for calibration.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vcc.errors import VccError
from vcc.reports.labels import (
    CELEBAMASK_REMAPS,
    DATASETS,
    LabelledSet,
    LabelRef,
    celebamask_remap_table,
)


@dataclass
class EvalSet:
    """The photos to evaluate on and, for a labelled dataset, each photo's label."""

    images: list[Path]
    labels: dict[Path, LabelRef] = field(default_factory=dict)
    dataset: str | None = None
    root: Path | None = None
    remap: str | None = None
    class_names: list[str] = field(default_factory=list)
    excluded: int = 0  # photos left out (used for calibration)
    unpaired: int = 0  # photos of a labelled dataset without a label

    @property
    def labelled(self) -> bool:
        return self.dataset is not None


def parse_dataset(text: str) -> tuple[str, Path | None]:
    """'voc' -> ('voc', None); 'voc:DIR' -> ('voc', DIR)."""
    name, _, root = text.partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        raise VccError(f"unknown dataset {name!r} in {text!r}; known: {', '.join(DATASETS)} "
                       f"(as NAME or NAME:DIR)")
    return name, Path(root) if root else None


def _class_names(name: str, remap: str | None) -> list[str]:
    if remap is not None:
        if name != "celebamask":
            raise VccError(f"--remap {remap!r} applies to celebamask labels only, not {name}")
        celebamask_remap_table(remap)
        return list(CELEBAMASK_REMAPS[remap])
    return list(DATASETS[name].classes)


_LABEL_NAMES = (("_image", "_target"), ("_leftImg8bit", "_gtFine_labelTrainIds"))


def _pair_by_name(name: str, photos: list[Path], labels_dir: Path, remap: str | None) -> dict[Path, LabelRef]:
    """Photos in one folder, labels in another: `<stem>.png`, or the dataset's label name."""
    out = {}
    for p in photos:
        stems = [p.stem] + [p.stem.replace(a, b) for a, b in _LABEL_NAMES if a in p.stem]
        for s in stems[::-1]:
            cand = labels_dir / f"{s}.png"
            if cand.is_file() and cand.resolve() != p.resolve():
                out[p] = LabelRef(cand, p, name, remap)
                break
    return out


def _is_under(path: Path, folder: Path) -> bool:
    """Whether `path` is in `folder` as named (symbolic links are not followed)."""
    return Path(os.path.abspath(folder)) in Path(os.path.abspath(path)).parents


def eval_set(images: str | os.PathLike | None = None, dataset: str | None = None,
             labels: str | os.PathLike | None = None, remap: str | None = None, limit: int | None = None,
             exclude: Iterable[str | os.PathLike] = ()) -> EvalSet:
    """The evaluation photos: a folder of photos (`images`), or a labelled dataset given as
    `dataset='voc:DIR'`, or `dataset='voc'` with `labels=DIR` (the dataset root holding photos and
    labels; with `images` too, only the photos under `images` count, and when `images` is a folder
    of its own its photos are paired by name with the labels in DIR). `exclude` leaves photos out
    (those used for calibration); `limit` keeps the first N."""
    from vcc.calib.images import list_images

    name, root = parse_dataset(dataset) if dataset else (None, None)
    if labels is not None:
        if name is None:
            raise VccError("--labels needs --dataset voc|celebamask|cityscapes|binary")
        if root is not None and Path(root).resolve() != Path(labels).resolve():
            raise VccError(f"two label folders given ({root} and {labels}); give one")
        root = Path(labels)
    if remap is not None and name is None:
        raise VccError("--remap needs a labelled dataset (--dataset celebamask:DIR)")
    skip = {Path(p).resolve() for p in exclude}
    if name is None:
        if images is None:
            raise VccError("no evaluation images: give a folder of photos or a labelled dataset")
        found = list_images(images)
        photos = [p for p in found if p.resolve() not in skip]
        return _limited(EvalSet(photos, excluded=len(found) - len(photos)), limit)
    if root is None:
        if images is None:
            raise VccError(f"dataset {name} needs its folder: {name}:DIR")
        root = Path(images)
    class_names = _class_names(name, remap)
    pairs: dict[Path, LabelRef] = {}
    unpaired = 0
    try:
        ls = LabelledSet(name, root, remap)
        pairs = dict(iter(ls))
        unpaired = len(ls.unpaired)
    except VccError:
        if images is None or Path(images).resolve() == Path(root).resolve():
            raise
    if images is not None and Path(images).resolve() != Path(root).resolve():
        inside = {p: r for p, r in pairs.items() if _is_under(p, Path(images))}
        if inside:
            pairs = inside
        else:
            photos = list_images(images)
            pairs = _pair_by_name(name, photos, Path(root), remap)
            unpaired = len(photos) - len(pairs)
            if not pairs:
                raise VccError(f"{images}: none of its {len(photos)} photos has a {name} label in {root}")
    kept = {p: r for p, r in sorted(pairs.items()) if p.resolve() not in skip}
    ev = EvalSet(list(kept), kept, name, Path(root), remap, class_names,
                 excluded=len(pairs) - len(kept), unpaired=unpaired)
    return _limited(ev, limit)


def eval_set_from_spec(spec: str, exclude: Iterable[str | os.PathLike] = (),
                       limit: int | None = None) -> EvalSet:
    """`vcc build --eval SPEC`: a folder of photos (DIR), or a labelled dataset (NAME:DIR)."""
    name, sep, _ = spec.partition(":")
    if sep and name.strip().lower() in DATASETS:
        return eval_set(None, spec, exclude=exclude, limit=limit)
    return eval_set(spec, exclude=exclude, limit=limit)


def _limited(ev: EvalSet, limit: int | None) -> EvalSet:
    if limit:
        ev.images = ev.images[:limit]
        ev.labels = {p: ev.labels[p] for p in ev.images if p in ev.labels}
    if not ev.images:
        raise VccError("no evaluation images left" + (f" ({ev.excluded} were used for calibration)"
                                                      if ev.excluded else ""))
    return ev
