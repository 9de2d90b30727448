"""The `ppm` block kind: PSPNet's pyramid pooling, a concat of ``x`` and at least two pooled
branches ``resize(acts(conv1x1(pool(x))))`` back to x's size, `pool` any average pooling
subgraph."""

from __future__ import annotations

from vcc.passes.blocks.nodes import CONV, POOL, RESIZE, is_1x1
from vcc.passes.blocks.pattern import Alt, BlockPattern, Cone, Each, Env, Matcher, Var, op
from vcc.passes.blocks.shared import acts

_PPM_BRANCH = Alt((
    Var("x"),
    op(RESIZE, acts(op(CONV, Cone(Var("x"), POOL | {"Slice", "Concat"}, POOL, tag="pools"),
                       where=is_1x1))),
))


def _ppm_ok(m: Matcher, env: Env, root: str) -> bool:
    return len(env.get("pools", ())) >= 2


PATTERN = BlockPattern("ppm", Each(frozenset({"Concat"}), _PPM_BRANCH, (3, 64)), check=_ppm_ok)
