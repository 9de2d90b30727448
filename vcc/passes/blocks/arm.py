"""The `arm` block kind: BiSeNet's attention refinement module,
``feat * sigmoid(conv1x1(gap(feat)))`` (the 1x1 conv may carry a folded BN or a ReLU after it)."""

from __future__ import annotations

from vcc.passes.blocks.nodes import POOL
from vcc.passes.blocks.pattern import BlockPattern, Var, op
from vcc.passes.blocks.shared import _gate

_ARM_GATE = _gate("feat", hidden=False)

PATTERN = BlockPattern("arm", op("Mul", Var("feat"), _ARM_GATE, commutative=True), shared=POOL)
