"""The `hr_fusion` block kind: HRNet's multi-resolution fusion, per output branch
``act(sum of terms)``, each term either an input as it is or a resampled one (a conv / activation
/ resize chain whose output resolution differs from its input's), at least one resampled, every
term from a different input and no input an ancestor of another; one block per set of inputs."""

from __future__ import annotations

import itertools

from vcc.passes.blocks.nodes import AFFINE, CONV, RELU_LIKE, RESIZE
from vcc.passes.blocks.pattern import Alt, BlockPattern, Env, Matcher, Path, Sum, Var, opt

_FUSION_TERM = Alt((
    Path(Var("sources", collect=True), CONV | RELU_LIKE | RESIZE | AFFINE, (1, 4), resample=True),
    Var("sources", collect=True),
))


def _fusion_ok(m: Matcher, env: Env, root: str) -> bool:
    """Distinct, parallel inputs, at least one resampled to the output's resolution."""
    sources = env["sources"]
    if len(set(sources)) != len(sources) or all(m.spatial(s) == m.spatial(root) for s in sources):
        return False
    return not any(m.is_ancestor(a, b) or m.is_ancestor(b, a)
                   for a, b in itertools.combinations(sources, 2))


PATTERN = BlockPattern("hr_fusion", opt(RELU_LIKE, Sum(_FUSION_TERM)), check=_fusion_ok,
                       group_by_entries=2)
