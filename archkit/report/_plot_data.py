"""Plot data: reference families, single specs and search runs as one DataFrame.

Computing is kept apart from drawing (``optuna/visualization/_pareto_front.py`` does the same):
everything here is testable without plotly; :mod:`archkit.report._draw` turns a
:class:`PlotData` into a figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from archkit import reference as paper
from archkit.cost import DTYPE_BYTES, SCHEDULES, count
from archkit.errors import ArchkitError
from archkit.report._families import FAMILY_GRIDS, family_spec, shufflenet_unscaled_stem
from archkit.search import METRICS as _ALL_METRICS
from archkit.search import (
    PLOT_METRICS,
    RunDirError,
    load_run,
    pareto_front,
    read_run_info,
    winner_names,
    winner_ranks,
)
from archkit.spec import Spec, load_spec

__all__ = [
    "Limit",
    "METRICS",
    "PLOT_COLUMNS",
    "PlotData",
    "ReportError",
    "family_points",
    "figure5_data",
    "load_latency_csv",
    "load_trials",
    "pareto_data",
    "spec_points",
]


class ReportError(ArchkitError):
    """A report or plot input is unusable (a malformed trials.csv, a missing browser...)."""


#: The columns of every plot DataFrame, one row per point.
PLOT_COLUMNS = (
    "series",
    "kind",
    "label",
    "spec",
    "width",
    "resolution",
    "expansion",
    "madds",
    "params",
    "peak_activation_bytes",
    "top1",
    "latency_ms",
    "objective",
    "feasible",
    "on_front",
    "winner_rank",
    "published_madds",
    "source",
)

#: The y metrics of a plot (x is MAdds), from the one metric table (``archkit.search.METRICS``).
METRICS = {name: _ALL_METRICS[name] for name in PLOT_METRICS}


@dataclass(frozen=True)
class Limit:
    """A budget drawn as a line: ``axis`` ``x`` (vertical line) or ``y`` (horizontal), at
    ``value`` in the axis's unit, with its ``label`` (e.g. ``budget 150M MAdds``)."""

    axis: str
    value: float
    label: str


@dataclass(frozen=True)
class PlotData:
    """Everything a figure needs: the points and the axes.

    Attributes:
        frame: one row per point, columns :data:`PLOT_COLUMNS` plus ``x`` (MAdds, millions),
            ``y`` (in the axis's unit) and ``series_front`` (on its own series' front).
            ``winner_rank`` is a run's rank of the trial in its best.csv (1: the winner).
        x_title, y_title, title: axis and figure titles.
        maximize_y: whether larger y is better (accuracy) or worse (latency, memory...).
        notes: lines for the figure's caption (what was left out and why).
        limits: the run's budgets on these axes, drawn as lines.
    """

    frame: pd.DataFrame
    x_title: str
    y_title: str
    title: str
    maximize_y: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    limits: tuple[Limit, ...] = field(default_factory=tuple)


def _width(width: float) -> str:
    """1.0 -> "1.0", 0.35 -> "0.35" (the way the papers write multipliers)."""
    return f"{width:.1f}" if float(width).is_integer() else f"{width:g}"


def _empty() -> dict[str, object]:
    return {c: None for c in PLOT_COLUMNS}


def _spec_record(
    spec: Spec, dtype: str, schedule: str, convention: str = "pytorch"
) -> dict[str, object]:
    costs = count(spec, convention)
    expansions = {r.expansion for r in spec.rows if r.has_expansion}
    return {
        "spec": spec.name,
        "width": spec.width,
        "resolution": spec.resolution,
        "expansion": expansions.pop() if len(expansions) == 1 else None,
        "madds": costs.madds,
        "params": costs.params,
        "peak_activation_bytes": costs.peak_activation_bytes(dtype, schedule),
    }


def _check(dtype: str, schedule: str) -> None:
    if dtype not in DTYPE_BYTES:
        raise ReportError(f"--dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if schedule not in SCHEDULES:
        raise ReportError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


def family_points(
    families: tuple[str, ...] = ("mobilenetv2", "mobilenetv1", "shufflenet_g3"),
    *,
    specs_dir: str | Path | None = None,
    dtype: str = "fp32",
    schedule: str = "naive",
    include_nasnet: bool = True,
    widths: dict[str, tuple[float, ...]] | None = None,
) -> pd.DataFrame:
    """The published models of each family, counted by archkit, with published accuracy.

    MobileNetV2 and V1 take TF-slim's checkpoints (width x resolution); ShuffleNet g=3 takes the
    1x, 1.5x and 2x models (1.5x with its 24-channel stem, the model whose 292M the paper
    quotes). ``widths`` restricts a family to some multipliers.
    """
    _check(dtype, schedule)
    records = []
    for family in families:
        if family not in FAMILY_GRIDS:
            raise ReportError(f"unknown family {family!r} (known: {', '.join(FAMILY_GRIDS)})")
        label = FAMILY_GRIDS[family][0]
        keep = (widths or {}).get(family)
        if family in ("mobilenetv2", "mobilenetv1"):
            rows = (
                paper.TFSLIM_MOBILENET_V2 if family == "mobilenetv2" else paper.TFSLIM_MOBILENET_V1
            )
            grid = [
                (r.width, r.resolution, r.top1, r.macs_m * 1e6, "TF-slim checkpoint") for r in rows
            ]
        else:
            grid = [
                (w, 224, top1, madds * 1e6, source)
                for w, madds, _, top1, source in paper.SHUFFLENET_G3
            ]
        for width, resolution, top1, published, source in grid:
            if keep is not None and not any(math.isclose(width, k) for k in keep):
                continue
            spec = family_spec(family, width, resolution, specs_dir)
            if family == "shufflenet_g3" and math.isclose(width, 1.5):
                spec = shufflenet_unscaled_stem(spec)
            record = _empty()
            record.update(_spec_record(spec, dtype, schedule))
            record.update(
                series=label,
                kind="family",
                label=f"{label} {_width(width)}/{resolution}",
                spec=f"specs/{family}.yaml --width {width:g} --resolution {resolution}",
                top1=top1,
                published_madds=published,
                source=source,
            )
            if family == "shufflenet_g3":
                record["label"] = f"ShuffleNet {width:g}x (g=3)"
                if math.isclose(width, 1.5):
                    record["spec"] += " (stem kept at 24 channels)"
            records.append(record)
    if include_nasnet:
        record = _empty()
        record.update(
            series="NasNet-A",
            kind="published",
            label="NasNet-A (published, no spec)",
            madds=paper.NASNET_A["madds_m"] * 1e6,
            params=paper.NASNET_A["params_m"] * 1e6,
            top1=paper.NASNET_A["top1"],
            resolution=224,
            published_madds=paper.NASNET_A["madds_m"] * 1e6,
            source="MobileNetV2 paper, Table 4",
        )
        records.append(record)
    return pd.DataFrame.from_records(records, columns=list(PLOT_COLUMNS))


def figure5_data(specs_dir: str | Path | None = None) -> PlotData:
    """The paper's Figure 5: published top-1 against archkit's MAdds.

    MobileNetV2 at multipliers 0.35, 0.5, 0.75, 1.0 for every resolution 96..224 and 1.4 at 224
    (the figure's caption and its "V2 1.4" label), MobileNetV1, ShuffleNet and NasNet-A.
    """
    widths = {"mobilenetv2": (*paper.FIGURE5_EXTRA["widths"], 1.4)}
    frame = family_points(specs_dir=specs_dir, widths=widths)
    return _finish(
        frame,
        "accuracy",
        title="MobileNetV2 vs MobileNetV1, ShuffleNet, NasNet-A (the paper's Figure 5)",
        notes=(
            "x: archkit's exact MAdds of each spec (1000 classes); y: published top-1 "
            "(TF-slim checkpoints for MobileNetV1/V2; ShuffleNet and NasNet-A as quoted in the "
            "paper). NasNet-A has no spec: drawn at its published MAdds.",
            "Regenerate: archkit report figure5",
        ),
    )


def spec_points(
    paths: tuple[str | Path, ...], *, dtype: str = "fp32", schedule: str = "naive"
) -> pd.DataFrame:
    """One point per spec file (no published accuracy), each its own series named after the
    spec (its file's name when two specs share one), so a legend and a PNG tell them apart."""
    _check(dtype, schedule)
    specs = [load_spec(path) for path in paths]
    names = [spec.name for spec in specs]
    records = []
    for path, spec in zip(paths, specs, strict=True):
        name = spec.name if names.count(spec.name) == 1 else f"{spec.name} ({Path(path).name})"
        record = _empty()
        record.update(_spec_record(spec, dtype, schedule))
        record.update(
            series=name,
            kind="spec",
            label=name,
            spec=str(path),
            source=str(path),
        )
        records.append(record)
    return pd.DataFrame.from_records(records, columns=list(PLOT_COLUMNS))


def load_trials(run_dir: str | Path, *, complete_only: bool = True) -> pd.DataFrame:
    """A search run's trials (read by :func:`archkit.search.load_run`) as plot rows (``kind`` =
    ``trial``).

    Raises:
        ReportError: no ``trials.csv``, or a required column is missing or malformed.
    """
    run_dir = Path(run_dir)
    try:
        raw = load_run(run_dir)
    except RunDirError as exc:
        raise ReportError(str(exc)) from None
    path = run_dir / "trials.csv"
    # Counts read as whole numbers unless a trial lacks them (plot rows have always held them so).
    for column in ("number", "resolution", "madds", "params", "peak_activation_bytes"):
        counts = raw[column]
        raw[column] = counts.astype(float) if counts.isna().any() else counts.astype("int64")
    if complete_only:
        raw = raw[raw["state"].astype(str).str.upper() == "COMPLETE"]
    ranks = winner_ranks(run_dir)
    records = []
    for r in raw.itertuples(index=False):
        number = int(r.number)
        record = _empty()
        record.update(
            series=f"run {run_dir.name}",
            kind="trial",
            label=f"trial {number}" + (f" (winner #{ranks[number]})" if number in ranks else ""),
            spec=(f"width {r.width:g}, resolution {int(r.resolution)}, expansion {r.expansion:g}"),
            width=r.width,
            resolution=int(r.resolution),
            expansion=r.expansion,
            madds=r.madds,
            params=r.params,
            peak_activation_bytes=r.peak_activation_bytes,
            latency_ms=r.latency_ms,
            objective=r.objective,
            feasible=bool(r.feasible),
            on_front=bool(r.pareto),
            winner_rank=ranks.get(number),
            source=str(path),
        )
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=list(PLOT_COLUMNS))
    frame.attrs["winners"] = winner_names(run_dir)
    frame.attrs["run_info"] = read_run_info(run_dir)
    return frame


def load_latency_csv(path: str | Path) -> pd.DataFrame:
    """Measured latencies: columns ``family`` (or ``name``: a spec's name, e.g. mobilenetv2),
    ``width``, ``resolution``, ``latency_ms``."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ReportError(f"{path}: cannot read the latency CSV ({exc})") from None
    if "family" not in frame.columns and "name" in frame.columns:
        frame = frame.rename(columns={"name": "family"})
    missing = [c for c in ("family", "width", "resolution", "latency_ms") if c not in frame.columns]
    if missing:
        raise ReportError(
            f"{path}: missing column(s) {', '.join(missing)} (expected family "
            "or name, width, resolution, latency_ms)"
        )
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    return frame[["family", "width", "resolution", "latency_ms"]]


def _attach_latency(frame: pd.DataFrame, latency: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for i, row in frame.iterrows():
        if row["kind"] not in ("family", "spec") or row["width"] is None:
            continue
        name = str(row["spec"]).split("/")[-1].split(".yaml")[0]
        hits = latency[
            (latency["family"] == name)
            & np.isclose(latency["width"].astype(float), float(row["width"]))
            & (latency["resolution"].astype(int) == int(row["resolution"]))
        ]
        if len(hits):
            frame.at[i, "latency_ms"] = float(hits["latency_ms"].iloc[0])
    return frame


#: The y metrics a run's front (the `pareto` column: the objective against costs) belongs on.
_FRONT_METRICS = ("accuracy", "objective")


def _finish(
    frame: pd.DataFrame,
    metric: str,
    *,
    title: str,
    notes: tuple[str, ...] = (),
    limits: tuple[Limit, ...] = (),
) -> PlotData:
    y_metric, x_metric = METRICS[metric], _ALL_METRICS["madds"]
    maximize = y_metric.maximize
    # Reference points (published models) may keep the metric in a column of their own: top-1
    # is published as `top1`; a run's trials have only the search's estimate of it.
    column = y_metric.published_column or y_metric.column
    frame = frame.copy()
    frame["x"] = frame[x_metric.column].astype(float) / x_metric.axis_scale
    frame["y"] = pd.to_numeric(frame[column], errors="coerce").astype(float) / y_metric.axis_scale
    if column != y_metric.column:
        trials = frame["kind"] == "trial"
        frame.loc[trials, "y"] = pd.to_numeric(
            frame.loc[trials, y_metric.column], errors="coerce"
        ).astype(float)
    dropped = frame[frame["y"].isna()]
    frame = frame[frame["y"].notna()].reset_index(drop=True)
    if frame.empty:
        hint = " (give --latency CSV or --run)" if metric == "latency" else ""
        raise ReportError(f"nothing to plot: no point has a value for {column}{hint}")
    notes = tuple(notes)
    if len(dropped):
        names = sorted(set(dropped["series"]))
        notes += (f"left out for lack of {column}: {len(dropped)} point(s) of {', '.join(names)}",)
    xy = (x_metric.direction, y_metric.direction)
    trials = frame["kind"] == "trial"
    if metric not in _FRONT_METRICS and trials.any():
        # The search's front trades its objective (accuracy) against costs: on a latency,
        # memory or params axis it would be a line through points that are not a front there.
        frame.loc[trials, "on_front"] = False
        notes += (
            f"the run's Pareto front (its objective against costs) is not drawn on a "
            f"{y_metric.short} axis",
        )
    # The front of the reference points; a run's trials keep the search's own `pareto` flags.
    reference = ~trials
    if reference.any():
        frame.loc[reference, "on_front"] = pareto_front(frame.loc[reference, ["x", "y"]], xy)
    frame["on_front"] = frame["on_front"].fillna(False).astype(bool)
    frame["series_front"] = False
    for _, index in frame.groupby("series").groups.items():
        part = frame.loc[index]
        frame.loc[index, "series_front"] = pareto_front(part[["x", "y"]], xy)
    return PlotData(
        frame, x_metric.axis_title, y_metric.axis_title, title, maximize, notes, limits
    )


def pareto_data(
    metric: str = "accuracy",
    *,
    families: tuple[str, ...] = ("mobilenetv2", "mobilenetv1", "shufflenet_g3"),
    specs: tuple[str | Path, ...] = (),
    run: str | Path | None = None,
    latency_csv: str | Path | None = None,
    dtype: str = "fp32",
    schedule: str = "naive",
    specs_dir: str | Path | None = None,
) -> PlotData:
    """Points for a Pareto plot of ``metric`` against MAdds.

    Args:
        metric: one of :data:`METRICS` (``accuracy``, ``latency``, ``memory``, ``params``,
            ``objective``).
        families: reference families (spec file stems) drawn with their published models.
        specs: extra spec files, one point each.
        run: a search run directory (``trials.csv``, ``winners/*.yaml``).
        latency_csv: measured latencies of family/spec points for ``metric="latency"``.
        dtype, schedule: how peak activation memory is counted for families and specs.
    """
    if metric not in METRICS:
        raise ReportError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    parts = []
    winners: list[str] = []
    notes: list[str] = []
    info: dict = {}
    if run is not None:
        trials = load_trials(run)
        winners = trials.attrs.get("winners", [])
        info = trials.attrs.get("run_info", {})
        # Count the families' memory the way the run counted its trials.
        if info.get("memory_dtype") in DTYPE_BYTES and info.get("memory_schedule") in SCHEDULES:
            if (info["memory_dtype"], info["memory_schedule"]) != (dtype, schedule):
                dtype, schedule = info["memory_dtype"], info["memory_schedule"]
                if metric == "memory":
                    notes.append("memory counted as the run did (run.json)")
        if metric == "accuracy":
            notes.append(
                f"trials: the search's objective ({info.get('objective_label', 'see run.json')}"
                "), an estimate of top-1, not a measured accuracy"
            )
        parts.append(trials)
    if specs:
        parts.insert(0, spec_points(tuple(specs), dtype=dtype, schedule=schedule))
    if families:
        parts.insert(
            0,
            family_points(
                families,
                specs_dir=specs_dir,
                dtype=dtype,
                schedule=schedule,
                include_nasnet=metric == "accuracy",
            ),
        )
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ReportError("nothing to plot: give families, specs or a run")
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if latency_csv is not None:
        frame = _attach_latency(frame, load_latency_csv(latency_csv))
    if metric == "memory":
        notes.append(
            f"families and specs: peak activation memory, {dtype}, {schedule} "
            "schedule (archkit.cost); trials: the run's own peak_activation_bytes"
        )
    if run is not None:
        notes.append(
            f"run {Path(run).name}: completed trials; the front is the search's "
            f"`pareto` column; {len(winners)} winner spec(s) in {Path(run).name}/winners/"
        )
    limits = _budget_limits(info.get("budgets"), metric) if run is not None else ()
    return _finish(
        frame, metric, title=f"{METRICS[metric].short} vs MAdds", notes=tuple(notes),
        limits=limits,
    )


#: How a budget reads next to its line, in the axis's unit.
_LIMIT_UNITS = {"madds": "M", "params": "M", "memory": " KB", "latency": " ms"}


def _budget_limits(budgets: object, metric: str) -> tuple[Limit, ...]:
    """A run's budgets (run.json ``budgets``) on the plot's axes: MAdds on x, y's own budget."""
    if not isinstance(budgets, dict):
        return ()
    limits = []
    for axis, one in (("x", _ALL_METRICS["madds"]), ("y", METRICS[metric])):
        value = budgets.get(one.budget) if one.budget else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            scaled = value / one.axis_scale
            unit = _LIMIT_UNITS.get(one.name, "")
            limits.append(Limit(axis, scaled, f"budget {scaled:g}{unit} {one.short}"))
    return tuple(limits)
