"""Predicted vs measured latency: the data of the scatter plot, and its drawing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["LatencyScatter", "draw_latency_scatter", "latency_scatter_data"]


@dataclass(frozen=True)
class LatencyScatter:
    """One point per held-out network (``space``, ``predicted_ms``, ``measured_ms``,
    ``error``) and the title's summary line."""

    points: pd.DataFrame
    title: str


def latency_scatter_data(rows: list[dict[str, Any]], summary: dict[str, Any]) -> LatencyScatter:
    """The points and title of the predicted-vs-measured plot of an evaluation."""
    frame = pd.DataFrame([r for r in rows if r.get("predicted_ms") is not None])
    p, noise = summary["prediction"], summary["noise_floor"]
    title = (
        f"{summary['device']} / {summary['runtime']}: {summary['networks']} held-out networks, "
        f"{p['within_10pct']:.0%} within +-10% ({p['within_5pct']:.0%} within +-5%), "
        f"mean error {p['mean_error']:.1%}; device repeatability "
        f"{noise['within_10pct']:.0%} within +-10%"
    )
    return LatencyScatter(frame, title)


def draw_latency_scatter(data: LatencyScatter) -> Any:
    """A plotly figure: predicted against measured, the +-10% band, one colour per space."""
    import plotly.graph_objects as go

    fig = go.Figure()
    points = data.points
    if points.empty:
        return fig
    low = float(min(points["predicted_ms"].min(), points["measured_ms"].min())) * 0.9
    high = float(max(points["predicted_ms"].max(), points["measured_ms"].max())) * 1.1
    for name, factor, dash in (("measured", 1.0, "solid"), ("+10%", 1.1, "dot"),
                               ("-10%", 0.9, "dot")):
        fig.add_trace(go.Scatter(x=[low, high], y=[low * factor, high * factor], mode="lines",
                                 name=name, line={"color": "#888888", "dash": dash, "width": 1},
                                 hoverinfo="skip"))
    spaces = points["space"].fillna("networks") if "space" in points else None
    groups = points.groupby(spaces) if spaces is not None else [("networks", points)]
    for space, group in groups:
        fig.add_trace(go.Scatter(
            x=group["measured_ms"], y=group["predicted_ms"], mode="markers", name=str(space),
            text=group["name"],
            customdata=group["error"] * 100,
            hovertemplate="%{text}<br>measured %{x:.3f} ms<br>predicted %{y:.3f} ms"
                          "<br>error %{customdata:.1f}%<extra></extra>",
        ))
    fig.update_layout(
        title={"text": data.title, "font": {"size": 13}},
        xaxis={"title": "measured latency (ms)", "type": "log"},
        yaxis={"title": "predicted latency (ms)", "type": "log"},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig
