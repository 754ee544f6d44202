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
def __getattr__(name: str):
    # pandas is imported only when a per-layer table is asked for.
    if name in _TABLE:
        from archkit.cost import _table

        return getattr(_table, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
