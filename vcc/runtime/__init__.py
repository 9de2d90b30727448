"""Lowering to TVM, compiling, the artifact format and the reference executor."""

from __future__ import annotations


def load(path):
    """Load an artifact directory and return its :class:`~vcc.runtime.artifact.Predictor`."""
    from vcc.runtime.artifact import Predictor

    return Predictor.load(path)


__all__ = ["load"]
