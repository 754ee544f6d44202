"""The metrics a search optimizes, budgets and plots: one table, read by field name.

The search (``--pareto``, budgets), the run directory (``trials.csv`` columns), the report's plots
(axis titles, units) and the CLI's choices all read :data:`METRICS`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "PARETO_METRICS", "PLOT_METRICS"]


@dataclass(frozen=True)
class Metric:
    """One measured or estimated quantity of a candidate network.

    Attributes:
        name: what users type (``--pareto accuracy,madds``, ``archkit plot --y memory``).
        column: its column in ``trials.csv`` and in plot data.
        direction: ``"maximize"`` or ``"minimize"`` (what "better" means).
        axis_title: the plot axis title, in the axis's unit.
        axis_scale: divisor from the column's unit to the axis's (bytes -> KB: 1e3).
        short: the word a plot title uses (``"peak memory vs MAdds"``).
        budget: the :class:`~archkit.search.Budgets` field that limits it, if any.
        published_column: where reference points (published models) keep it, if not in
            ``column``: the search estimates top-1 as its objective; papers publish ``top1``.
    """

    name: str
    column: str
    direction: str
    axis_title: str
    axis_scale: float = 1.0
    short: str = ""
    budget: str | None = None
    published_column: str | None = None

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


#: Every metric by name.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "accuracy",
            "objective",
            "maximize",
            "ImageNet top-1 accuracy (%), published",
            short="top-1",
            published_column="top1",
        ),
        Metric(
            "madds",
            "madds",
            "minimize",
            "multiply-adds (millions, archkit's exact count)",
            1e6,
            short="MAdds",
            budget="madds",
        ),
        Metric(
            "params", "params", "minimize", "parameters (millions)", 1e6, "parameters", "params"
        ),
        Metric(
            "memory",
            "peak_activation_bytes",
            "minimize",
            "peak activation memory (KB, 1 KB = 1000 bytes)",
            1e3,
            "peak memory",
            "peak_activation_bytes",
        ),
        Metric("latency", "latency_ms", "minimize", "latency (ms)", 1.0, "latency", "latency_ms"),
        Metric("objective", "objective", "maximize", "search objective", 1.0, "objective"),
    )
}

#: What ``--pareto`` accepts: the objective (accuracy) first, then the costs.
PARETO_METRICS = ("accuracy", "madds", "params", "memory", "latency")
#: What ``archkit plot --y`` accepts (x is always MAdds).
PLOT_METRICS = ("accuracy", "latency", "memory", "params", "objective")
