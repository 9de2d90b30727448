"""The `residual` block kind: ``act?(path(x) + shortcut)``, path a chain of two or three convs
(with activations, pads, resizes, unfolded BN scale/shift between), shortcut ``x`` itself or a
one-conv projection of ``x``."""

from __future__ import annotations

from vcc.passes.blocks.nodes import AFFINE, CONV, RELU_LIKE, RESIZE
from vcc.passes.blocks.pattern import Alt, BlockPattern, Path, Var, op, opt

_PATH_OPS = CONV | RELU_LIKE | RESIZE | AFFINE | {"Pad", "BatchNormalization"}
_SHORTCUT = Alt((Var("x"), Path(Var("x"), _PATH_OPS, (1, 1))))

PATTERN = BlockPattern("residual", opt(RELU_LIKE, op("Add", Path(Var("x"), _PATH_OPS, (2, 3)), _SHORTCUT,
                                                     commutative=True)),
                       absorb=frozenset({"Pad", "Resize", "Upsample"}))
