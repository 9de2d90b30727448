"""IR -> IR rewrites, each a small named pass, run by :class:`PassManager`."""

from vcc.passes.blocks import annotate_blocks, block_of, find_blocks
from vcc.passes.manager import Pass, PassManager, default_fp32_pipeline

__all__ = ["Pass", "PassManager", "annotate_blocks", "block_of", "default_fp32_pipeline", "find_blocks"]
