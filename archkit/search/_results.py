"""Run directory contents: trials table, Pareto flags, best results, winner specs, run.json.

Data only (pandas); the CLI renders it. Column names are a contract with the report code and are
listed in docs/search.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from archkit.search._budget import METRICS
from archkit.search._space import SearchSpace
from archkit.search._specio import dump_spec

__all__ = [
    "TRIAL_COLUMNS",
    "BEST_COLUMNS",
    "load_run",
    "pareto_mask",
    "best_table",
    "write_run",
]

#: Leading columns of trials.csv; per-stage ``expansion_<row>`` / ``repeats_<row>`` columns follow
#: ``expansion`` when the space has them.
TRIAL_COLUMNS = (
    "number",
    "state",
    "width",
    "resolution",
    "expansion",
    "madds",
    "params",
    "peak_activation_bytes",
    "latency_ms",
    "objective",
    "feasible",
    "pareto",
    "calibrated",
    "note",
    "violation",
    "duration_s",
    "worker",
    "error",
)
BEST_COLUMNS = (
    "rank",
    "number",
    "width",
    "resolution",
    "expansion",
    "madds",
    "params",
    "peak_activation_bytes",
    "latency_ms",
    "objective",
    "calibrated",
    "note",
    "spec",
)
_BOOL_COLUMNS = ("feasible", "pareto", "calibrated")
#: The user attribute of an Optuna trial that holds archkit's record of it.
ATTRS_KEY = "archkit"


def stage_columns(space: SearchSpace) -> list[str]:
    return [
        r.name for stage in space.stages for r in (stage.expansion, stage.repeats) if r is not None
    ]


def trials_frame(
    trials: Sequence[Any], space: SearchSpace, pareto_metrics: Sequence[str]
) -> pd.DataFrame:
    """One row per Optuna trial (any state), in trial-number order."""
    records = []
    for t in sorted(trials, key=lambda t: t.number):
        attrs = {"error": t.user_attrs.get("error", ""), **t.user_attrs.get(ATTRS_KEY, {})}
        candidate = attrs.get("candidate", dict(t.params))
        record: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "width": candidate.get("width"),
            "resolution": candidate.get("resolution"),
            "expansion": candidate.get("expansion"),
        }
        for name in stage_columns(space):
            record[name] = candidate.get(name)
        record.update(
            {
                "madds": attrs.get("madds"),
                "params": attrs.get("params"),
                "peak_activation_bytes": attrs.get("peak_activation_bytes"),
                "latency_ms": attrs.get("latency_ms"),
                "objective": attrs.get("objective"),
                "feasible": bool(attrs.get("feasible", False)) and t.state.name == "COMPLETE",
                "pareto": False,
                "calibrated": attrs.get("calibrated"),
                "note": attrs.get("note", ""),
                "violation": attrs.get("violation"),
                "duration_s": (t.duration.total_seconds() if t.duration is not None else None),
                "worker": attrs.get("worker"),
                "error": attrs.get("error", ""),
            }
        )
        records.append(record)
    columns = list(TRIAL_COLUMNS[:5]) + stage_columns(space) + list(TRIAL_COLUMNS[5:])
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = _typed(frame)
    if len(frame):
        frame["pareto"] = pareto_mask(frame, pareto_metrics)
    return frame


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    ints = {
        c: "Int64"
        for c in ("number", "resolution", "madds", "params", "peak_activation_bytes", "worker")
        if c in frame
    }
    ints.update({c: "Int64" for c in frame.columns if c.startswith("repeats_")})
    floats = {
        c: "float64"
        for c in ("width", "expansion", "latency_ms", "objective", "violation", "duration_s")
        if c in frame
    }
    floats.update({c: "float64" for c in frame.columns if c.startswith("expansion_")})
    frame = frame.astype({**ints, **floats})
    for column in _BOOL_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("boolean")
    for column in ("note", "error", "state"):
        if column in frame:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


def _metric_column(metric: str) -> tuple[str, int]:
    """Column and sign (+1 larger is better) of a Pareto metric."""
    if metric in ("accuracy", "objective"):
        return "objective", 1
    return METRICS[metric][1], -1


def pareto_mask(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.Series:
    """True for feasible trials no other feasible trial dominates on ``metrics``.

    A trial dominates another when it is at least as good on every metric and better on one;
    trials with identical metrics (the same candidate drawn twice) are all kept.
    """
    mask = pd.Series(False, index=frame.index)
    columns = [_metric_column(m) for m in metrics]
    ok = frame["feasible"].fillna(False).astype(bool)
    for column, _ in columns:
        ok &= frame[column].notna()
    pool = frame[ok]
    if pool.empty:
        return mask
    scores = [pool[c].astype(float).to_numpy() * sign for c, sign in columns]
    points = list(zip(*scores, strict=True))
    for i, index in enumerate(pool.index):
        p = points[i]
        dominated = any(
            all(q[k] >= p[k] for k in range(len(p))) and any(q[k] > p[k] for k in range(len(p)))
            for q in points
        )
        mask[index] = not dominated
    return mask


def candidate_key(row: pd.Series, names: Sequence[str]) -> tuple:
    # Widths that round to the same channel counts make the same network: compare what the
    # network costs (and the searched integers), not the raw width.
    keys = ["resolution", "madds", "params", "peak_activation_bytes", *names]
    return tuple(None if pd.isna(row[n]) else round(float(row[n]), 9) for n in keys)


def best_table(
    frame: pd.DataFrame,
    space: SearchSpace,
    *,
    multi_objective: bool,
    pareto_metrics: Sequence[str],
    top: int = 10,
) -> pd.DataFrame:
    """The results to report: feasible, completed trials only, one per distinct candidate.

    Single objective: the ``top`` best by objective (ties: fewer MAdds first). Multi-objective:
    the whole Pareto front, ordered by its second metric (cheapest first).
    """
    names = ["expansion", *stage_columns(space)]
    pool = frame[frame["feasible"].fillna(False).astype(bool) & frame["objective"].notna()]
    if multi_objective:
        pool = pool[pool["pareto"].fillna(False).astype(bool)]
        column, sign = _metric_column(pareto_metrics[1])
        pool = pool.sort_values([column, "number"], ascending=[sign < 0, True])
    else:
        pool = pool.sort_values(["objective", "madds", "number"], ascending=[False, True, True])
    seen, keep = set(), []
    for index, row in pool.iterrows():
        key = candidate_key(row, names)
        if key in seen:
            continue
        seen.add(key)
        keep.append(index)
    best = pool.loc[keep]
    if not multi_objective:
        best = best.head(top)
    best = best.reset_index(drop=True)
    best.insert(0, "rank", range(1, len(best) + 1))
    best["spec"] = ""
    columns = list(BEST_COLUMNS[:5]) + stage_columns(space) + list(BEST_COLUMNS[5:])
    return best[columns]


def best_calibrated(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The best feasible trial the estimator did not extrapolate for (None if none)."""
    if not len(frame):
        return None
    ok = (
        frame["feasible"].fillna(False).astype(bool)
        & frame["calibrated"].fillna(False).astype(bool)
        & frame["objective"].notna()
    )
    pool = frame[ok].sort_values(["objective", "madds", "number"], ascending=[False, True, True])
    return records(pool.head(1))[0] if len(pool) else None


def winner_name(space: SearchSpace, row: pd.Series) -> str:
    parts = [space.name, f"w{float(row['width']):.3f}", f"r{int(row['resolution'])}"]
    if not pd.isna(row.get("expansion")):
        parts.append(f"t{float(row['expansion']):g}")
    if stage_columns(space):
        parts.append(f"trial{int(row['number'])}")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(parts))


def candidate_params(row: pd.Series, space: SearchSpace) -> dict[str, float]:
    params = {r.name: row[r.name] for r in space.ranges if r.name in row}
    return {
        k: (int(v) if k == "resolution" or k.startswith("repeats_") else float(v))
        for k, v in params.items()
    }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with None for missing values (the JSON form of a table)."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append(
            {
                k: (None if _missing(v) else (v.item() if hasattr(v, "item") else v))
                for k, v in row.items()
            }
        )
    return out


def _missing(value: Any) -> bool:
    try:
        return value is pd.NA or value is None or (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def write_run(
    run_dir: Path,
    space: SearchSpace,
    frame: pd.DataFrame,
    best: pd.DataFrame,
    info: dict[str, Any],
    objective_label: str,
) -> pd.DataFrame:
    """Write trials.csv, best.csv, best.json, winners/*.yaml and run.json; return ``best`` with
    its ``spec`` column filled in (paths relative to ``run_dir``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    winners = run_dir / "winners"
    winners.mkdir(exist_ok=True)
    for old in winners.glob("*.yaml"):
        old.unlink()
    best = best.copy()
    for index, row in best.iterrows():
        name = winner_name(space, row)
        spec = space.candidate(candidate_params(row, space))
        spec = dataclasses.replace(
            spec,
            name=name,
            description=f"archkit search winner #{int(row['rank'])} of "
            f"{info.get('study_name')}: trial {int(row['number'])}",
        )
        comment = (
            f"archkit search winner #{int(row['rank'])}: study "
            f"{info.get('study_name')}, trial {int(row['number'])}\n"
            f"objective ({objective_label}): {row['objective']:.4g}; madds "
            f"{int(row['madds'])}; params {int(row['params'])}"
        )
        calibrated = row["calibrated"]
        if not pd.isna(calibrated) and not bool(calibrated):
            comment += f"\nextrapolated: {row['note']}"
        path = winners / f"{int(row['rank']):02d}_{name}.yaml"
        _atomic_write(path, dump_spec(spec, comment))
        # A winner is only useful if it reads back as the very network that was scored.
        from archkit.spec import load_spec

        if load_spec(path) != spec:
            raise RuntimeError(f"winner spec {path} does not round-trip")
        best.at[index, "spec"] = str(path.relative_to(run_dir))
    _atomic_write(run_dir / "trials.csv", frame.to_csv(index=False))
    _atomic_write(run_dir / "best.csv", best.to_csv(index=False))
    _atomic_write(
        run_dir / "best.json",
        json.dumps(
            {"objective": objective_label, "results": records(best)},
            indent=2,
            default=_json_default,
        )
        + "\n",
    )
    _atomic_write(run_dir / "run.json", json.dumps(info, indent=2, default=_json_default) + "\n")
    return best


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """The trials of a run directory (``trials.csv``) with typed columns.

    Raises:
        SearchInputError: ``run_dir`` holds no trials.csv.
    """
    from archkit.search._errors import SearchInputError

    path = Path(run_dir) / "trials.csv"
    if not path.is_file():
        raise SearchInputError(
            "run directory",
            f"{run_dir}: no trials.csv (not a search run, or it has not finished a trial yet)",
        )
    frame = pd.read_csv(path, dtype={"state": str, "note": str, "error": str})
    return _typed(frame)
