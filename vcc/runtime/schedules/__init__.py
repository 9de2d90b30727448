"""Fast fp32 CPU schedules for the Relax graphs vcc lowers to.

    mod, report = optimize_for_cpu(mod, target)   # then tvm.compile(mod, target) as before
    print(report.table())

See pipeline.py for the route (channel packing, custom conv legalization, fusion, hand
schedules per fused function) and report.py for what the report holds.
"""

from __future__ import annotations

from .pack import pack_channels
from .pipeline import optimize_for_cpu
from .report import FuncRecord, ScheduleReport

__all__ = ["optimize_for_cpu", "pack_channels", "ScheduleReport", "FuncRecord"]
