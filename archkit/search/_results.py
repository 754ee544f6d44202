"""Results of a study as tables: one row per trial, the Pareto flags, the best results.

Data only (pandas); :mod:`archkit.search._rundir` writes and reads them, the CLI renders them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from archkit.search._metrics import METRICS
from archkit.search._pareto import pareto_front
from archkit.search._rundir import (
    ATTRS_KEY,
    BEST_COLUMNS,
    TRIAL_COLUMNS,
    records,
    stage_columns,
    typed,
    write_run,
)
from archkit.search._space import SearchSpace
from archkit.search._storage import mask_secrets

__all__ = [
    "Progress",
    "RunRecorder",
    "SearchResult",
    "best_calibrated",
    "best_table",
    "pareto_mask",
    "trials_frame",
]


@dataclass(frozen=True)
class Progress:
    """What a progress display needs after each trial of this process."""

    done: int
    total: int
    feasible: int
    infeasible: int
    best: dict[str, Any] | None


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a search.

    Attributes:
        run_dir: where trials.csv, best.csv, best.json, winners/ and run.json were written.
        trials: every trial of the study (see :data:`archkit.search.TRIAL_COLUMNS`).
        best: the reported results (feasible only), with their winner spec paths.
        info: the contents of run.json.
    """

    run_dir: Path
    trials: pd.DataFrame
    best: pd.DataFrame
    info: dict[str, Any]


def trials_frame(
    trials: Sequence[Any], space: SearchSpace, pareto_metrics: Sequence[str]
) -> pd.DataFrame:
    """One row per Optuna trial (any state), in trial-number order."""
    records = []
    for t in sorted(trials, key=lambda t: t.number):
        attrs = {"error": t.user_attrs.get("error", ""), **t.user_attrs.get(ATTRS_KEY, {})}
        attrs["error"] = mask_secrets(str(attrs.get("error") or ""))
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
    frame = typed(frame)
    if len(frame):
        frame["pareto"] = pareto_mask(frame, pareto_metrics)
    return frame


def pareto_mask(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.Series:
    """True for feasible trials no other feasible trial dominates on ``metrics`` (names of
    :data:`~archkit.search.METRICS`); trials with identical metrics (the same candidate drawn
    twice) are all kept."""
    chosen = [METRICS[m] for m in metrics]
    ok = frame["feasible"].fillna(False).astype(bool).to_numpy()
    values = frame[[m.column for m in chosen]].astype(float).to_numpy()
    values[~ok] = float("nan")  # never on the front
    mask = pareto_front(values, [m.direction for m in chosen])
    return pd.Series(mask, index=frame.index)


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
        second = METRICS[pareto_metrics[1]]
        pool = pool.sort_values([second.column, "number"], ascending=[not second.maximize, True])
    else:
        # Calibrated estimates first: an extrapolated one may score higher only because the
        # estimator is outside what it was fitted on, and people act on the first row.
        pool = pool.assign(_extrapolated=pool["calibrated"].eq(False).fillna(False).astype(int))
        pool = pool.sort_values(
            ["_extrapolated", "objective", "madds", "number"], ascending=[True, False, True, True]
        )
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


def best_calibrated(frame: pd.DataFrame, calibrated: bool = True) -> dict[str, Any] | None:
    """The best feasible trial the estimator did not extrapolate for (``calibrated=False``: the
    best one it extrapolated for); None if none."""
    if not len(frame):
        return None
    ok = (
        frame["feasible"].fillna(False).astype(bool)
        & frame["calibrated"].eq(calibrated).fillna(False).astype(bool)
        & frame["objective"].notna()
    )
    pool = frame[ok].sort_values(["objective", "madds", "number"], ascending=[False, True, True])
    return records(pool.head(1))[0] if len(pool) else None


def now() -> str:
    """The current UTC time as run.json records it."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class RunRecorder:
    """Turns the study's trials into the run directory's tables (at the start and the end)."""

    run_dir: Path
    space: SearchSpace
    study: Any
    objective_label: str
    multi: bool
    report_metrics: Sequence[str]
    top: int
    smallest: dict[str, Any]
    info: dict[str, Any]
    #: The journal whose size run.json records (readers compare it to find a stale run).
    journal: Path | None = None
    #: Set for a study in shared storage: each worker's run directory is a snapshot of it.
    snapshot_note: str | None = None
    #: The trials this process last knew of: what is written when the storage is gone.
    known: dict[int, Any] = field(default_factory=dict)

    def remember(self, trial: Any) -> None:
        """Keep a finished trial of this process (``study.tell`` returns it)."""
        if trial is not None:
            self.known[trial.number] = trial

    def read_trials(self) -> list[Any]:
        """The study's trials, remembered for :meth:`write_known`."""
        trials = self.study.get_trials(deepcopy=False)
        self.known = {t.number: t for t in trials}
        return trials

    def write(self, done: int, *, trials: list[Any] | None = None, lost: str = "") -> SearchResult:
        """Write the run directory from the study (or from ``trials``, what is known when the
        storage is gone: ``lost`` says why)."""
        journal_bytes = None
        if self.journal is not None:
            with contextlib.suppress(OSError):
                journal_bytes = self.journal.stat().st_size  # before reading: errs on stale
        if trials is None:
            trials = self.read_trials()
        frame = trials_frame(trials, self.space, self.report_metrics)
        best = best_table(
            frame,
            self.space,
            multi_objective=self.multi,
            pareto_metrics=self.report_metrics,
            top=self.top,
        )
        states = frame["state"].value_counts().to_dict() if len(frame) else {}
        counts = {
            "trials": int(len(frame)),
            "complete": int(states.get("COMPLETE", 0)),
            "feasible": int(frame["feasible"].fillna(False).sum()) if len(frame) else 0,
            # Over an analytic (or latency) budget: never built nor scored (state PRUNED).
            "infeasible": int(states.get("PRUNED", 0)),
            "failed": int(states.get("FAIL", 0)),
            "running": int(states.get("RUNNING", 0)),
            "this_call": done,
        }
        info = {
            **self.info,
            "counts": counts,
            "smallest_candidate": self.smallest,
            "best": records(best.head(1))[0] if len(best) else None,
            "best_calibrated": best_calibrated(frame),
            "best_extrapolated": best_calibrated(frame, calibrated=False),
            "updated": now(),
        }
        if journal_bytes is not None:
            info["journal"] = {"path": self.journal.name, "bytes": journal_bytes}
        if self.snapshot_note or lost:
            info["snapshot"] = {
                "taken": info["updated"],
                "complete": not lost,
                "note": lost or self.snapshot_note,
            }
        best = write_run(self.run_dir, self.space, frame, best, info, self.objective_label)
        return SearchResult(run_dir=self.run_dir, trials=frame, best=best, info=info)
