"""IR -> IR rewrites, each a small named pass, run by :class:`PassManager`."""

from vcc.passes.manager import Pass, PassManager, default_fp32_pipeline

__all__ = ["Pass", "PassManager", "default_fp32_pipeline"]
