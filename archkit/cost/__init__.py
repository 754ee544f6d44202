"""Exact analytic costs from the spec alone: MAdds, parameters, peak activation memory."""

from archkit.cost._count import CONVENTIONS, Costs, count
from archkit.cost._memory import DTYPE_BYTES, SCHEDULES, Step, schedule_steps

__all__ = [
    "CONVENTIONS",
    "Costs",
    "DTYPE_BYTES",
    "Profile",
    "SCHEDULES",
    "Step",
    "count",
    "profile",
    "schedule_steps",
]


def __getattr__(name: str):
    # pandas is imported only when a per-layer table is asked for.
    if name in ("Profile", "profile"):
        from archkit.cost import _profile

        return getattr(_profile, name)
    raise AttributeError(name)
