"""Exact analytic costs from the spec alone: MAdds, parameters, peak activation memory."""

from archkit.cost._count import CONVENTIONS, Costs, bn_params_per_channel, count
from archkit.cost._memory import DTYPE_BYTES, SCHEDULES, Step, schedule_steps

__all__ = [
    "CONVENTIONS",
    "CostTable",
    "Costs",
    "DTYPE_BYTES",
    "LAYER_COLUMNS",
    "SCHEDULES",
    "Step",
    "bn_params_per_channel",
    "cost_table",
    "count",
    "schedule_steps",
]

#: Names that only ``archkit.cost._table`` defines (it imports pandas).
_TABLE = ("CostTable", "cost_table", "LAYER_COLUMNS")
#: The old names of the cost table, kept until the callers outside archkit.cost are renamed
#: (archkit/cli/profile.py, archkit/report/heads.py, benchmarks/count_vs_fvcore.py).
# TODO(issue 10 merge): delete once those call sites use cost_table / CostTable.
_RENAMED = {"profile": "cost_table", "Profile": "CostTable"}


def __getattr__(name: str):
    # pandas is imported only when a per-layer table is asked for.
    if name in _TABLE or name in _RENAMED:
        from archkit.cost import _table

        return getattr(_table, _RENAMED.get(name, name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
