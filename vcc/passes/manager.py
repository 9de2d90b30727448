"""The pass manager: runs passes in order, verifies the IR after each, times and dumps them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vcc.ir.graph import Graph, format_graph
from vcc.ir.verify import IRVerificationError, verify_graph


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[[Graph], Graph]

    def __call__(self, g: Graph) -> Graph:
        return self.fn(g)


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


class PassManager:
    """Runs `passes` in order. After each one the blocks whose nodes vanished are dropped and
    the IR is verified (a failure names the pass); with `dump_dir` the IR after each pass is
    written to `NN_<pass>.txt` there."""

    def __init__(self, passes: Sequence[Pass], verify: bool = True, dump_dir: str | Path | None = None):
        self.passes = list(passes)
        self.verify = verify
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.records: list[PassRecord] = []

    def run(self, g: Graph) -> Graph:
        if self.dump_dir:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            (self.dump_dir / "00_input.txt").write_text(format_graph(g) + "\n")
        for k, p in enumerate(self.passes, 1):
            before = len(g.nodes)
            t0 = time.perf_counter()
            g = p(g)
            dt = time.perf_counter() - t0
            g.prune_blocks()
            if self.verify:
                try:
                    verify_graph(g)
                except IRVerificationError as e:
                    raise IRVerificationError(f"after pass {p.name}: {e}") from e
            self.records.append(PassRecord(p.name, dt, before, len(g.nodes)))
            if self.dump_dir:
                (self.dump_dir / f"{k:02d}_{p.name}.txt").write_text(format_graph(g) + "\n")
        return g


def default_fp32_pipeline() -> list[Pass]:
    """The clean-up every build runs before anything precision-specific, then block
    recognition (it only annotates: no node changes)."""
    from vcc.passes.blocks import annotate_blocks
    from vcc.passes.dce import eliminate_dead_code
    from vcc.passes.fold_bn import fold_batchnorm
    from vcc.passes.fold_constants import fold_constants
    from vcc.passes.remove_identity import remove_identity

    return [
        Pass("remove_identity", remove_identity),
        Pass("fold_constants", fold_constants),
        Pass("fold_batchnorm", fold_batchnorm),
        Pass("fold_constants", fold_constants),
        Pass("eliminate_dead_code", eliminate_dead_code),
        Pass("annotate_blocks", annotate_blocks),
    ]
