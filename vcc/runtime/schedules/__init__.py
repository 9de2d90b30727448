"""Fast CPU schedules (fp32, and int8 on the VNNI dot product) for the Relax graphs vcc lowers to.

    mod, report = optimize_for_cpu(mod, target)   # then tvm.compile(mod, target) as before
    print(report.table())

See pipeline.py for the route (channel packing, custom conv legalization, fusion, hand
schedules per fused function), pack.py for the channel packing, int8_conv.py and
int8_schedule.py for the int8 convolutions, and report.py for what the report holds.
"""

from __future__ import annotations

from .pack import pack_channels
from .pipeline import optimize_for_cpu
from .report import FuncRecord, ScheduleReport

__all__ = ["optimize_for_cpu", "pack_channels", "ScheduleReport", "FuncRecord"]
