"""Recognise the blocks segmentation nets are built from, from declarative patterns.

A block is a connected group of nodes that a segmentation architecture repeats as one unit:
BiSeNet's attention refinement (`arm`) and feature fusion (`ffm`) modules, DeepLab's atrous
spatial pyramid pooling (`aspp`), HRNet's multi-resolution fusion (`hr_fusion`), residual
blocks (`residual`) and PSPNet's pyramid pooling (`ppm`). Each kind is described in a few lines
of a small dataflow pattern language (in the spirit of TVM's relay dataflow patterns), matched
backwards from a root value over the producers of the IR:

- ``Var("x")`` matches any value and binds it; a later ``Var("x")`` must be the same value
  (this is how "the sigmoid gate multiplies the map it was pooled from" is said);
  ``Var("x", collect=True)`` appends instead;
- ``Op(ops, *args)`` matches a value produced by a node of one of `ops` whose non-constant
  inputs match `args` in order (``commutative=True``: in any order); ``where`` constrains the
  node (kernel size, dilation, strides), ``tag`` collects the node's name for a check;
- ``Alt(a, b)``, ``opt(ops, p)`` (an optional node such as an extra ReLU), ``acts(p)`` (zero to
  two activations);
- ``Path(start, ops, convs)``: a chain of single-input nodes of `ops` holding `convs` (lo, hi)
  convolutions back to a value matched by `start`, shortest first;
- ``Sum(term)``: a tree of two-input Adds (inner sums used only by the tree), every leaf a term;
- ``Each(ops, branch, count)``: a node (Concat) whose every input matches `branch`, so a
  variable number of parallel branches is one pattern;
- ``Cone(start, ops, need)``: any connected subgraph of `ops` over one input (adaptive pooling
  to a grid that does not divide the map exports as Slice / ReduceMean / Concat).

A match becomes a block when its nodes are not claimed by an earlier block of its kind and are
private: no member's output leaves the block except the root value (and the outputs of the
kind's `shared` ops). `absorb` ops that feed the block and are used only by it join it (the
reflection pad a residual block's two paths share after onnxsim's common-subexpression
elimination). Kinds with `group_by_entries` merge their matches that read the same entry values
into one block: an HRNet fusion is one block per HighResolutionModule (all its output branches),
so the count equals `count_fuse_layers`.

Roots are tried from the graph outputs backwards, so the larger of two overlapping matches of a
kind (a residual Add with and without its trailing ReLU) claims the nodes. A node belongs to at
most one block of a kind; blocks of different kinds may nest or overlap (the residual blocks of
a DeepLab backbone are separate blocks before the ASPP, whose members are only its branches,
concat and projection); :func:`block_of` names the smallest block holding each node.

What each kind is:

- ``arm``: ``feat * sigmoid(conv1x1(gap(feat)))`` (the 1x1 conv may carry a folded BN or a
  ReLU after it);
- ``ffm``: ``f = act(conv(concat(...)))``, then ``f + f * sigmoid(conv1x1(act(conv1x1(gap(f)))))``;
- ``aspp``: a concat of branches all reading one value ``x`` (1x1 convs, dilated 3x3 convs, at
  most one image-pooling branch ``broadcast(acts(conv1x1(acts(gap(x)))))``), at least one
  dilated, projected by a 1x1 conv (+ activation);
- ``hr_fusion``: per output branch ``act(sum of terms)``, each term either an input as it is or
  a resampled one (a conv / activation / resize chain whose output resolution differs from its
  input's: upsampled 1x1 conv, strided 3x3 convs), at least one resampled, every term from a
  different input and no input an ancestor of another (parallel branches, not a strided
  residual block); one block per set of inputs;
- ``residual``: ``act?(path(x) + shortcut)``, path a chain of two or three convs (with
  activations, pads, resizes, unfolded BN scale/shift between), shortcut ``x`` itself or a
  one-conv projection of ``x``;
- ``ppm``: a concat of ``x`` and at least two pooled branches
  ``resize(acts(conv1x1(pool(x))))`` back to x's size, `pool` any average pooling subgraph.

Where things are: the pattern language and :class:`BlockPattern` in ``pattern``, the op families
and node predicates in ``nodes``, sub-patterns several kinds share in ``shared``, one module per
kind (``arm``, ``ffm``, ``aspp``, ``ppm``, ``hr_fusion``, ``residual``), the kinds in the order
they are tried in ``kinds``, and the matcher that turns matches into blocks in ``find``. This
package re-exports the public names.
"""

from __future__ import annotations

from vcc.passes.blocks.find import annotate_blocks, block_of, blocks_json, count_blocks, find_blocks
from vcc.passes.blocks.kinds import KINDS, PATTERNS
from vcc.passes.blocks.nodes import (
    AFFINE,
    BROADCAST,
    CONV,
    GATE,
    POOL,
    RELU_LIKE,
    RESIZE,
    is_1x1,
    is_atrous,
    is_branch_conv,
    pools_to_one,
)
from vcc.passes.blocks.pattern import (
    Alt,
    Bind,
    BlockPattern,
    Cone,
    Each,
    Env,
    Matcher,
    NodeCheck,
    Op,
    Path,
    Pattern,
    Sum,
    Var,
    op,
    opt,
)
from vcc.passes.blocks.shared import acts

__all__ = [
    "AFFINE", "BROADCAST", "CONV", "GATE", "KINDS", "PATTERNS", "POOL", "RELU_LIKE", "RESIZE",
    "Alt", "Bind", "BlockPattern", "Cone", "Each", "Env", "Matcher", "NodeCheck", "Op", "Path",
    "Pattern", "Sum", "Var", "acts", "annotate_blocks", "block_of", "blocks_json", "count_blocks",
    "find_blocks", "is_1x1", "is_atrous", "is_branch_conv", "op", "opt", "pools_to_one",
]
