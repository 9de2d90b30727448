"""The model zoo: the seed architectures in plain torch, with upstream state_dict keys."""

from __future__ import annotations

import importlib

from vcc.errors import VccError
from vcc.frontends.zoo.registry import ZooModel, register, registered

_FAMILIES = ("bisenet_face", "parsenet", "human_seg", "hrnet", "deeplab", "person")


def _load_families() -> None:
    for fam in _FAMILIES:
        try:
            importlib.import_module(f"vcc.frontends.zoo.{fam}")
        except ModuleNotFoundError as e:
            if e.name != f"vcc.frontends.zoo.{fam}":
                raise


def zoo_models() -> dict[str, ZooModel]:
    """Every registered zoo model by name."""
    _load_families()
    return registered()


def get_model(name: str) -> ZooModel:
    models = zoo_models()
    if name not in models:
        raise VccError(f"unknown zoo model {name!r}; known: {', '.join(sorted(models))}")
    return models[name]


__all__ = ["ZooModel", "get_model", "register", "zoo_models"]
