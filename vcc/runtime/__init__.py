"""Lowering to TVM, compiling, the artifact format and the reference executor."""

from __future__ import annotations


def load(path):
    """Load an artifact directory and return its :class:`~vcc.runtime.artifact.Predictor`.

    The predictor may be called from several threads at once: calls are serialised by a lock
    around its one Relax VM (measured against one VM per thread, which gave no more throughput;
    see the Predictor's docstring), and every thread gets the results a sequential call gives.
    """
    from vcc.runtime.artifact import Predictor

    return Predictor.load(path)


__all__ = ["load"]
