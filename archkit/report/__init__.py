"""Reports: the paper's tables reproduced next to archkit's counts, and Pareto plots.

Data and drawing are apart: :func:`pareto_data` and :func:`figure5_data` return a
:class:`PlotData` (a DataFrame and axis titles) without importing plotly; :func:`draw`,
:func:`draw_figure5` and :func:`save` import plotly (and kaleido for PNG) when called.
"""

from archkit.report._all import REPORT_FILES, write_all, write_figure5, write_memory_plot
from archkit.report._draw import PNG_SIZE, draw, draw_figure5, find_browser, save
from archkit.report._latency import LatencyScatter, draw_latency_scatter, latency_scatter_data
from archkit.report._markdown import paper_tables_markdown, write_paper_tables
from archkit.report._plot_data import (
    METRICS,
    PlotData,
    ReportError,
    family_points,
    figure5_data,
    load_trials,
    pareto_data,
)
from archkit.report._tables import (
    match_kind,
    section4_ranges,
    table2,
    table3,
    table4,
    tfslim_table,
    truncate,
)

__all__ = [
    "METRICS",
    "PNG_SIZE",
    "REPORT_FILES",
    "LatencyScatter",
    "PlotData",
    "ReportError",
    "draw",
    "draw_figure5",
    "draw_latency_scatter",
    "family_points",
    "figure5_data",
    "find_browser",
    "latency_scatter_data",
    "load_trials",
    "match_kind",
    "paper_tables_markdown",
    "pareto_data",
    "save",
    "section4_ranges",
    "table2",
    "table3",
    "table4",
    "tfslim_table",
    "truncate",
    "write_all",
    "write_figure5",
    "write_memory_plot",
    "write_paper_tables",
]
