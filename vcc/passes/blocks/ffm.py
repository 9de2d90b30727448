"""The `ffm` block kind: BiSeNet's feature fusion module, ``f = act(conv(concat(...)))``, then
``f + f * sigmoid(conv1x1(act(conv1x1(gap(f)))))``."""

from __future__ import annotations

from vcc.passes.blocks.nodes import CONV
from vcc.passes.blocks.pattern import Bind, BlockPattern, Var, op
from vcc.passes.blocks.shared import _gate, acts

_FFM_GATE = _gate("feat", hidden=True)

PATTERN = BlockPattern("ffm", op("Add", Bind("feat", acts(op(CONV, op("Concat", any_inputs=True)))),
                                 op("Mul", Var("feat"), _FFM_GATE, commutative=True), commutative=True))
