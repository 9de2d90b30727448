"""The block kinds, in the order :func:`~vcc.passes.blocks.find_blocks` tries them (the order
is part of the result: it orders blocks that start at the same node). Importing this module
imports every kind's module."""

from __future__ import annotations

from vcc.passes.blocks import arm, aspp, ffm, hr_fusion, ppm, residual
from vcc.passes.blocks.pattern import BlockPattern

PATTERNS: tuple[BlockPattern, ...] = (
    arm.PATTERN,
    ffm.PATTERN,
    aspp.PATTERN,
    ppm.PATTERN,
    hr_fusion.PATTERN,
    residual.PATTERN,
)
KINDS = tuple(p.kind for p in PATTERNS)
