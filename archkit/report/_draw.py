"""Drawing: a :class:`~archkit.report._plot_data.PlotData` to a plotly figure, HTML and PNG.

plotly is imported only here, and only when a figure is drawn. Static PNG export goes through
kaleido 1.x, which drives a Chrome/Chromium it does not bundle: :func:`find_browser` locates one
(``BROWSER_PATH``, ``ARCHKIT_CHROMIUM`` or ``chromium`` on PATH; ``scripts/chromium.sh``
installs Debian's) and hands it to kaleido through ``BROWSER_PATH``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from archkit._imports import try_import
from archkit.report._plot_data import PlotData, ReportError

__all__ = ["PNG_SIZE", "draw", "draw_figure5", "find_browser", "save"]

#: Width and height of exported PNGs, in pixels (scale 1).
PNG_SIZE = (1100, 700)

# Figure 5's colours: one per resolution for MobileNetV2, greys for the baselines.
_RESOLUTION_COLOURS = {
    96: "#1f77b4",
    128: "#ff7f0e",
    160: "#2ca02c",
    192: "#d62728",
    224: "#9467bd",
}
_SERIES_STYLE = {
    "MobileNetV1": {"color": "#555555", "symbol": "square"},
    "ShuffleNet g=3": {"color": "#8c564b", "symbol": "diamond"},
    "NasNet-A": {"color": "#e377c2", "symbol": "star"},
    "specs": {"color": "#17becf", "symbol": "cross"},
}
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
# Figure 5's MAdds ticks.
_X_TICKS = (7.5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500, 600)


def _plotly():
    with try_import():
        import plotly.graph_objects as go
    return go


def _fmt(value: Any, scale: float = 1.0, unit: str = "", digits: int = 2) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value / scale:,.{digits}f}{unit}"
    return str(value)


def _hover(row: pd.Series) -> str:
    fields = [
        ("spec", _fmt(row["spec"])),
        ("width", _fmt(row["width"], digits=2)),
        ("resolution", _fmt(row["resolution"], digits=0)),
        ("expansion", _fmt(row["expansion"], digits=1)),
        ("MAdds", _fmt(row["madds"], 1e6, "M")),
        ("published MAdds", _fmt(row["published_madds"], 1e6, "M", 0)),
        ("params", _fmt(row["params"], 1e6, "M", 3)),
        ("peak activations", _fmt(row["peak_activation_bytes"], 1e3, " KB", 1)),
        ("top-1", _fmt(row["top1"], unit=" %", digits=1)),
        ("latency", _fmt(row["latency_ms"], unit=" ms", digits=2)),
        ("objective", _fmt(row["objective"], digits=4)),
        ("feasible", _fmt(row["feasible"]) if row["kind"] == "trial" else None),
        ("source", _fmt(row["source"])),
    ]
    lines = [f"<b>{row['label']}</b>"]
    lines += [f"{name}: {value}" for name, value in fields if value is not None]
    return "<br>".join(lines)


def _note_lines(notes: tuple[str, ...], width: int = 150) -> list[str]:
    return [line for note in notes for line in textwrap.wrap(note, width)]


def _layout(fig, data: PlotData, log_x: bool = True) -> None:
    x = data.frame["x"]
    notes = _note_lines(data.notes)
    fig.update_layout(
        title={"text": data.title, "x": 0.5},
        template="plotly_white",
        hovermode="closest",
        legend={"orientation": "v", "x": 1.01, "y": 1},
        margin={"l": 70, "r": 20, "t": 60, "b": 70 + 18 * len(notes)},
        font={"size": 13},
    )
    if log_x and len(x) and (x > 0).all():
        limits = [lim.value for lim in data.limits if lim.axis == "x" and lim.value > 0]
        lo, hi = min([float(x.min()), *limits]), max([float(x.max()), *limits])
        ticks = [t for t in _X_TICKS if lo / 1.5 <= t <= hi * 1.5]
        fig.update_xaxes(
            type="log", tickvals=ticks or None, range=[math.log10(lo / 1.25), math.log10(hi * 1.25)]
        )
    fig.update_xaxes(title_text=data.x_title, showgrid=True, gridcolor="#e5e5e5")
    fig.update_yaxes(title_text=data.y_title, showgrid=True, gridcolor="#e5e5e5")
    if notes:
        fig.add_annotation(
            text="<br>".join(notes),
            xref="paper",
            yref="paper",
            x=0,
            xanchor="left",
            y=-0.12,
            yanchor="top",
            showarrow=False,
            font={"size": 11, "color": "#555555"},
            align="left",
        )


def _scatter(
    go,
    part: pd.DataFrame,
    name: str,
    *,
    mode: str,
    color: str,
    symbol: str,
    size: int = 9,
    opacity: float = 1.0,
    dash: str | None = None,
    legendgroup: str | None = None,
    showlegend: bool = True,
    labels: bool = False,
):
    """One trace; ``labels`` writes each point's label next to it (visible in the PNG too)."""
    part = part.sort_values("x")
    return go.Scatter(
        x=part["x"],
        y=part["y"],
        mode=f"{mode}+text" if labels else mode,
        name=name,
        text=list(part["label"]) if labels else None,
        textposition="top center",
        textfont={"size": 11, "color": color},
        hovertext=[_hover(r) for _, r in part.iterrows()],
        hovertemplate="%{hovertext}<extra></extra>",
        marker={
            "color": color,
            "symbol": symbol,
            "size": size,
            "opacity": opacity,
            "line": {"width": 0.5, "color": "white"},
        },
        line={"color": color, "width": 1.5, "dash": dash},
        legendgroup=legendgroup or name,
        showlegend=showlegend,
    )


def draw_figure5(data: PlotData):
    """The paper's Figure 5 layout: MobileNetV2 coloured by resolution, one line per resolution
    through the multipliers; the baselines as markers on a log MAdds axis."""
    go = _plotly()
    fig = go.Figure()
    frame = data.frame
    v2 = frame[frame["series"] == "MobileNetV2"]
    for resolution in sorted(v2["resolution"].unique()):
        part = v2[v2["resolution"] == resolution]
        fig.add_trace(
            _scatter(
                go,
                part,
                f"MobileNetV2 {resolution}x{resolution}",
                mode="lines+markers",
                color=_RESOLUTION_COLOURS.get(int(resolution), "#333333"),
                symbol="circle",
            )
        )
    for series in ("MobileNetV1", "ShuffleNet g=3", "NasNet-A"):
        part = frame[frame["series"] == series]
        if len(part):
            style = _SERIES_STYLE[series]
            fig.add_trace(_scatter(go, part, series, mode="markers", size=10, **style))
    for label, text in (("MobileNetV2 1.4/224", "V2 1.4"), ("MobileNetV2 1.0/224", "V2 1.0")):
        point = v2[v2["label"] == label]
        if len(point):
            fig.add_annotation(
                x=math.log10(float(point["x"].iloc[0])),
                y=float(point["y"].iloc[0]),
                text=text,
                showarrow=True,
                arrowhead=0,
                ax=-30,
                ay=-25,
                font={"size": 12},
            )
    _layout(fig, data)
    fig.update_yaxes(dtick=2.5)
    return fig


def draw(data: PlotData):
    """A generic Pareto plot: reference families (markers, a line through each family's own
    front), single specs, and a search run's trials with its front."""
    go = _plotly()
    fig = go.Figure()
    frame = data.frame
    palette = iter(_PALETTE)
    for series, part in frame.groupby("series", sort=False):
        kind = part["kind"].iloc[0]
        if kind == "trial":
            continue
        style = _SERIES_STYLE.get(series, {"color": next(palette), "symbol": "circle"})
        if kind == "spec":  # a spec the user named: its own marker, its name on the plot
            style = {**style, "symbol": "diamond"}
        fig.add_trace(
            _scatter(
                go, part, series, mode="markers", opacity=0.8, labels=kind == "spec",
                size=11 if kind == "spec" else 9, **style,
            )
        )
        # With two costs (latency, memory vs MAdds) a front is just the cheapest point.
        front = part[part["series_front"]]
        if data.maximize_y and len(front) > 1:
            fig.add_trace(
                _scatter(
                    go,
                    front,
                    f"{series} front",
                    mode="lines",
                    color=style["color"],
                    symbol=style["symbol"],
                    dash="dot",
                    legendgroup=series,
                    showlegend=False,
                )
            )
    trials = frame[frame["kind"] == "trial"]
    if len(trials):
        name = trials["series"].iloc[0]
        feasible = trials[trials["feasible"].astype(bool)]
        infeasible = trials[~trials["feasible"].astype(bool)]
        if len(feasible):
            fig.add_trace(
                _scatter(
                    go,
                    feasible,
                    f"{name}: trials",
                    mode="markers",
                    color="#ff7f0e",
                    symbol="circle",
                    size=7,
                    opacity=0.7,
                )
            )
        if len(infeasible):
            fig.add_trace(
                _scatter(
                    go,
                    infeasible,
                    f"{name}: infeasible",
                    mode="markers",
                    color="#aaaaaa",
                    symbol="x",
                    size=7,
                    opacity=0.6,
                )
            )
        front = trials[trials["on_front"]]
        # Only on the objective's axis: the run's front is its objective against costs.
        if len(front) and data.maximize_y:
            fig.add_trace(
                _scatter(
                    go,
                    front,
                    f"{name}: Pareto front",
                    mode="lines+markers",
                    color="#d62728",
                    symbol="circle",
                    size=10,
                )
            )
        winner = trials[trials["winner_rank"] == 1]
        if len(winner):
            fig.add_trace(
                _scatter(
                    go,
                    winner,
                    f"{name}: winner",
                    mode="markers",
                    color="#000000",
                    symbol="star",
                    size=16,
                    labels=True,
                )
            )
    _layout(fig, data)
    _draw_limits(fig, data)
    return fig


def _draw_limits(fig, data: PlotData) -> None:
    """The run's budgets as dashed lines, each labelled (after :func:`_layout`: the label of a
    line on a log axis is placed at the logarithm of its value, as plotly wants)."""
    colour = "#d62728"
    line = {"color": colour, "width": 1.5, "dash": "dash"}
    for limit in data.limits:
        if limit.axis == "x":
            fig.add_vline(x=limit.value, line=line)
            log = fig.layout.xaxis.type == "log"
            fig.add_annotation(
                x=math.log10(limit.value) if log else limit.value, xref="x", xanchor="left",
                y=0.02, yref="paper", yanchor="bottom", text=limit.label, showarrow=False,
                font={"color": colour, "size": 12},
            )
        else:
            fig.add_hline(y=limit.value, line=line)
            fig.add_annotation(
                x=1, xref="paper", xanchor="right", y=limit.value, yref="y",
                yanchor="bottom", text=limit.label, showarrow=False,
                font={"color": colour, "size": 12},
            )


def find_browser() -> str | None:
    """A Chrome/Chromium for kaleido: ``BROWSER_PATH``, ``ARCHKIT_CHROMIUM``, or one on PATH."""
    for candidate in (os.environ.get("BROWSER_PATH"), os.environ.get("ARCHKIT_CHROMIUM")):
        if candidate and Path(candidate).is_file():
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _DropIgnoredMessages(logging.Filter):
    """Drops choreographer's "JSONError decoding message. Ignoring" records.

    kaleido talks to the browser through choreographer, which skips a message it cannot decode
    and carries on, but logs the skip with a full traceback on stderr. The export still succeeds
    (a real failure raises from ``write_image``), so that traceback would only make a
    successful ``archkit plot`` look broken.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "Ignoring" not in str(record.msg)


_IGNORED_MESSAGES = _DropIgnoredMessages()


def quiet_browser_channel() -> None:
    """Install :class:`_DropIgnoredMessages` on choreographer's pipe logger (idempotent)."""
    # Through choreographer's own module: its logger is logistro's subclass (with debug2),
    # which a plain logging.getLogger made first would shadow.
    try:
        from choreographer.channels import pipe
    except ImportError:  # no kaleido: write_image reports it
        return
    logger = pipe._logger
    if _IGNORED_MESSAGES not in logger.filters:
        logger.addFilter(_IGNORED_MESSAGES)


def save(
    fig,
    stem: str | Path,
    *,
    png: bool = True,
    plotlyjs: str = "directory",
    size: tuple[int, int] = PNG_SIZE,
) -> list[Path]:
    """Write ``<stem>.html`` (interactive) and ``<stem>.png`` (static); return the paths.

    Args:
        plotlyjs: ``directory`` (a shared ``plotly.min.js`` next to the HTML: works offline,
            one copy for many plots), ``inline`` (self-contained, ~4.7 MB each) or ``cdn``.

    Raises:
        ReportError: PNG export needs a Chrome/Chromium and none was found.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    include = {"directory": "directory", "inline": True, "cdn": "cdn"}.get(plotlyjs)
    if include is None:
        raise ReportError(f"plotlyjs must be directory, inline or cdn, got {plotlyjs!r}")
    html = stem.with_suffix(".html")
    # A fixed div id keeps a regenerated file identical when nothing changed.
    fig.write_html(
        html,
        include_plotlyjs=include,
        full_html=True,
        div_id=f"archkit-{stem.name}",
        config={"displaylogo": False, "responsive": True},
    )
    written = [html]
    if png:
        browser = find_browser()
        if browser is None:
            raise ReportError(
                "PNG export needs Chrome or Chromium (kaleido 1.x does not bundle one): run "
                "scripts/chromium.sh, or set BROWSER_PATH; --no-png writes the HTML only"
            )
        os.environ["BROWSER_PATH"] = browser
        quiet_browser_channel()
        path = stem.with_suffix(".png")
        width, height = size
        fig.write_image(path, format="png", width=width, height=height, scale=1)
        written.append(path)
    return written
