"""What `optimize_for_cpu` did to each fused function."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# How a function was scheduled, best first.
HAND = ("conv", "depthwise", "conv_int8")  # register-tiled convolution schedules (int8: VNNI)
GENERIC = ("injective", "reduction")  # our parallel + vectorised schedules
FALLBACK = ("dlight", "default")  # TVM's DLight CPU rules, or the plain legalized loops


@dataclass(frozen=True)
class FuncRecord:
    """One fused PrimFunc: its name, the ops it computes, how it was scheduled."""

    name: str
    kind: str  # ops fused in it, from FuseOps' naming ("conv2d_nchwc_add_relu", "resize2d", ...)
    schedule: str  # one of HAND + GENERIC + FALLBACK
    macs: int = 0  # multiply-accumulates of its convolutions per call (0 for other ops)
    note: str = ""  # why a function fell back
    calls: int = 1  # call sites in "main" (FuseTIR shares one function between equal layers)

    @property
    def fell_back(self) -> bool:
        return self.schedule in FALLBACK


@dataclass
class ScheduleReport:
    functions: list[FuncRecord] = field(default_factory=list)
    layout: dict[str, int] = field(default_factory=dict)  # counts from pack_channels

    @property
    def scheduled(self) -> list[FuncRecord]:
        return [f for f in self.functions if not f.fell_back]

    @property
    def fallbacks(self) -> list[FuncRecord]:
        return [f for f in self.functions if f.fell_back]

    @property
    def untiled_convs(self) -> list[FuncRecord]:
        """Convolutions that run on a generic loop schedule (no register tiling, no VNNI): as
        slow as a fallback, though not one (a grouped int8 conv, a layout no rule packs)."""
        return [f for f in self.functions if f.macs and f.schedule in GENERIC]

    def macs(self, schedules: tuple[str, ...] | None = None) -> int:
        return sum(f.macs * f.calls for f in self.functions
                   if schedules is None or f.schedule in schedules)

    def summary(self) -> str:
        total = self.macs()
        hand = self.macs(HAND)
        share = f"{100.0 * hand / total:.1f}%" if total else "n/a"
        return (f"{len(self.functions)} functions: {len(self.scheduled)} scheduled "
                f"({sum(f.schedule in HAND for f in self.functions)} conv-tiled), "
                f"{len(self.fallbacks)} fallback; conv MACs hand-scheduled {hand}/{total} ({share})")

    def table(self) -> str:
        rows = [("function", "calls", "schedule", "MACs per call", "note")]
        for f in sorted(self.functions, key=lambda r: (-r.macs * r.calls, r.name)):
            rows.append((f.name, str(f.calls), f.schedule, f"{f.macs:,}" if f.macs else "", f.note))
        widths = [max(len(r[k]) for r in rows) for k in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join([self.summary(), *lines])

    def to_dict(self) -> dict:
        return {"functions": [asdict(f) for f in self.functions], "layout": dict(self.layout)}
