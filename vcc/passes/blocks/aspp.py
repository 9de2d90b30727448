"""The `aspp` block kind: DeepLab's atrous spatial pyramid pooling, a concat of branches all
reading one value ``x`` (1x1 convs, dilated 3x3 convs, at most one image-pooling branch
``broadcast(acts(conv1x1(acts(gap(x)))))``), at least one dilated, projected by a 1x1 conv
(+ activation)."""

from __future__ import annotations

from vcc.passes.blocks.nodes import (
    BROADCAST,
    CONV,
    POOL,
    is_1x1,
    is_atrous,
    is_branch_conv,
    pools_to_one,
)
from vcc.passes.blocks.pattern import Alt, BlockPattern, Each, Env, Matcher, Var, op
from vcc.passes.blocks.shared import acts

_ASPP_BRANCH = Alt((
    acts(op(CONV, Var("x"), where=is_branch_conv, tag="branch_convs")),
    acts(op(BROADCAST, acts(op(CONV, acts(op(POOL, Var("x"), where=pools_to_one, tag="pools")),
                               where=is_1x1)))),
))


def _aspp_ok(m: Matcher, env: Env, root: str) -> bool:
    convs = env.get("branch_convs", ())
    return any(is_atrous(m.graph, m.by_name[c]) for c in convs) and len(env.get("pools", ())) <= 1


PATTERN = BlockPattern("aspp", acts(op(CONV, Each(frozenset({"Concat"}), _ASPP_BRANCH, (2, 64)), where=is_1x1)),
                       check=_aspp_ok)
