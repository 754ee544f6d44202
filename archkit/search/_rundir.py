"""The run directory: the one module that writes and reads its files.

``trials.csv`` (:data:`TRIAL_COLUMNS`), ``best.csv`` and ``best.json`` (:data:`BEST_COLUMNS`),
``run.json`` and ``winners/*.yaml``. The column names are a contract with the report code and are
listed in docs/search.md; the report reads a run through :func:`load_run`, :func:`read_run_info`,
:func:`winner_ranks` and :func:`winner_names`, never by parsing the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from archkit._json import json_default, records
from archkit.search._errors import RunDirError
from archkit.search._space import SearchSpace
from archkit.search._storage import JOURNAL_FILE

__all__ = [
    "ATTRS_KEY",
    "BEST_COLUMNS",
    "RUN_FILE",
    "TRIAL_COLUMNS",
    "load_run",
    "read_run_info",
    "records",
    "stale_note",
    "stage_columns",
    "typed",
    "winner_names",
    "winner_ranks",
    "write_run",
    "write_run_config",
]

# The candidate and what it costs and scores: the same columns, in the same order, in trials.csv
# and best.csv.
_CANDIDATE_COLUMNS = ("width", "resolution", "expansion")
_MEASURE_COLUMNS = ("madds", "params", "peak_activation_bytes", "latency_ms", "objective")
#: Leading columns of trials.csv; per-stage ``expansion_<row>`` / ``repeats_<row>`` columns follow
#: ``expansion`` when the space has them.
TRIAL_COLUMNS = (
    "number",
    "state",
    *_CANDIDATE_COLUMNS,
    *_MEASURE_COLUMNS,
    "feasible",
    "pareto",
    "calibrated",
    "note",
    "violation",
    "duration_s",
    "worker",
    "error",
)
#: Columns of best.csv (and of each result in best.json), stage columns after ``expansion``.
BEST_COLUMNS = (
    "rank",
    "number",
    *_CANDIDATE_COLUMNS,
    *_MEASURE_COLUMNS,
    "calibrated",
    "note",
    "spec",
)
#: The columns a trials.csv must have to be read (the ones after ``pareto`` are optional).
REQUIRED_COLUMNS = TRIAL_COLUMNS[: TRIAL_COLUMNS.index("pareto") + 1]
RUN_FILE = "run.json"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.csv"
WINNERS_DIR = "winners"
#: The user attribute of an Optuna trial that holds archkit's record of it.
ATTRS_KEY = "archkit"

_INT_COLUMNS = ("number", "resolution", "madds", "params", "peak_activation_bytes", "worker")
_FLOAT_COLUMNS = ("width", "expansion", "latency_ms", "objective", "violation", "duration_s")
_BOOL_COLUMNS = ("feasible", "pareto", "calibrated")
_TEXT_COLUMNS = ("note", "error", "state")
_log = logging.getLogger("archkit.search")
_BOOLEAN_TEXT = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "1.0": True,
    "0.0": False,
    "yes": True,
    "no": False,
    "": False,
    "nan": False,
}


def stage_columns(space: SearchSpace) -> list[str]:
    """The per-stage columns of a space (``expansion_<row>``, ``repeats_<row>``)."""
    return [
        r.name for stage in space.stages for r in (stage.expansion, stage.repeats) if r is not None
    ]


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials table with its column types (nullable integers and booleans)."""
    ints = {c: "Int64" for c in _INT_COLUMNS if c in frame}
    ints.update({c: "Int64" for c in frame.columns if c.startswith("repeats_")})
    floats = {c: "float64" for c in _FLOAT_COLUMNS if c in frame}
    floats.update({c: "float64" for c in frame.columns if c.startswith("expansion_")})
    frame = frame.astype({**ints, **floats})
    for column in _BOOL_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("boolean")
    for column in _TEXT_COLUMNS:
        if column in frame:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


def _atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a reader sees the old file or the new one, and a
    failed write (full disk, read-only folder) leaves no temporary file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_json(path: Path, data: Any) -> None:
    _atomic_write(path, json.dumps(data, indent=2, default=json_default) + "\n")


def _pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # PermissionError: another user's live process
    return False


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of a writer that was killed (its pid is gone)."""
    for tmp in [*run_dir.glob(".*.tmp"), *(run_dir / WINNERS_DIR).glob(".*.tmp")]:
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_is_gone(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_run_config(run_dir: Path, info: dict[str, Any]) -> None:
    """Write run.json before the study exists, so a run killed at any later moment resumes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / RUN_FILE, info)


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


def write_run(
    run_dir: Path,
    space: SearchSpace,
    frame: pd.DataFrame,
    best: pd.DataFrame,
    info: dict[str, Any],
    objective_label: str,
) -> pd.DataFrame:
    """Write winners/*.yaml, trials.csv, best.json, best.csv and run.json; return ``best`` with
    its ``spec`` column filled in (paths relative to ``run_dir``).

    Each file is replaced atomically, and in this order: the winners first, the files that name
    them after, run.json last, and only then the winners no index names any more. A reader (or a
    kill) at any moment finds every file whole and every file an index names present.
    """
    from archkit.ops import dump_spec
    from archkit.spec import load_spec

    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(run_dir)
    winners = run_dir / WINNERS_DIR
    winners.mkdir(exist_ok=True)
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
        if info.get("snapshot"):
            comment += f"\n{info['snapshot']['note']}"
        path = winners / f"{int(row['rank']):02d}_{name}.yaml"
        _atomic_write(path, dump_spec(spec, comment))
        # A winner is only useful if it reads back as the very network that was scored.
        if load_spec(path) != spec:
            raise RuntimeError(f"winner spec {path} does not round-trip")
        best.at[index, "spec"] = str(path.relative_to(run_dir))
    _atomic_write(run_dir / TRIALS_FILE, frame.to_csv(index=False))
    best_json = {"objective": objective_label, "results": records(best)}
    if info.get("snapshot"):
        best_json["snapshot"] = info["snapshot"]
    _write_json(run_dir / "best.json", best_json)
    _atomic_write(run_dir / BEST_FILE, best.to_csv(index=False))
    _write_json(run_dir / RUN_FILE, info)
    named = {run_dir / p for p in best["spec"]}
    for old in winners.glob("*.yaml"):
        if old not in named:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    return best


def _booleans(series: pd.Series, column: str, source: Path) -> pd.Series:
    text = series.astype(str).str.strip().str.lower()
    bad = sorted(set(text) - set(_BOOLEAN_TEXT))
    if bad:
        raise RunDirError(f"{source}: column {column!r} must be true/false, got {bad[0]!r}")
    return text.map(_BOOLEAN_TEXT).astype(bool)


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """The trials of a run directory (``trials.csv``) with typed columns.

    Raises:
        RunDirError: ``run_dir`` holds no trials.csv, or a column of it is missing or malformed
            (the message names the file, the column and the first bad value).
    """
    path = Path(run_dir) / TRIALS_FILE
    note = stale_note(run_dir)
    if note:
        _log.warning("archkit: warning: %s", note)
    if not path.is_file():
        raise RunDirError(
            f"{run_dir}: no trials.csv (not a search run, or it has not finished a trial yet)"
        )
    try:
        frame = pd.read_csv(path, dtype={"state": str, "note": str, "error": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise RunDirError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_COLUMNS)})"
        )
    numeric = [c for c in (*_INT_COLUMNS, *_FLOAT_COLUMNS) if c in frame.columns]
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][values.isna() & frame[column].notna()]
        if len(bad):
            raise RunDirError(
                f"{path}: column {column!r} must be numeric, "
                f"got {bad.iloc[0]!r} (row {bad.index[0]})"
            )
        frame[column] = values
    for column in _BOOL_COLUMNS:
        if column in frame.columns and column != "calibrated":
            frame[column] = _booleans(frame[column], column, path)
    try:
        return typed(frame)
    except (TypeError, ValueError) as exc:
        raise RunDirError(f"{path}: {exc}") from None


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``run.json`` as a dict ({} when absent or unreadable).

    Besides the file's own keys (docs/search.md), it has ``memory_dtype`` and
    ``memory_schedule`` (run.json nests them under ``memory``) and ``objective_label``.
    """
    try:
        info = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    memory = info.get("memory")
    if isinstance(memory, dict):
        info.setdefault("memory_dtype", memory.get("dtype"))
        info.setdefault("memory_schedule", memory.get("schedule"))
    objective = info.get("objective")
    if isinstance(objective, dict):
        label = objective.get("label") or objective.get("name", "see run.json")
        loo = objective.get("loo_mae_top1")
        info["objective_label"] = label + (
            f"; leave-one-out error {loo:.2f} points" if isinstance(loo, int | float) else ""
        )
    return info


def winner_ranks(run_dir: str | Path) -> dict[int, int]:
    """Trial number -> rank, from the run's best.csv (absent or unreadable: {})."""
    path = Path(run_dir) / BEST_FILE
    if not path.is_file():
        return {}
    try:
        best = pd.read_csv(path)
        return {int(n): int(r) for n, r in zip(best["number"], best["rank"], strict=True)}
    except (KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}


def winner_names(run_dir: str | Path) -> list[str]:
    """The winner spec files' names (``01_<name>``) that best.csv names, in rank order (a
    best.csv without a ``spec`` column, as written by hand: the files in winners/, sorted)."""
    try:
        best = pd.read_csv(Path(run_dir) / BEST_FILE, dtype={"spec": str})
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        best = None
    if best is None or "spec" not in best.columns:
        return sorted(p.stem for p in (Path(run_dir) / WINNERS_DIR).glob("*.yaml"))
    return [Path(s).stem for s in best["spec"].dropna() if s]


def stale_note(run_dir: str | Path) -> str | None:
    """Why the files of ``run_dir`` are older than its journal (None when they are not, or the
    study lives in a shared storage, whose run directories say they are snapshots)."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    written = (info.get("journal") or {}).get("bytes")
    try:
        size = (run_dir / JOURNAL_FILE).stat().st_size
    except OSError:
        return None
    if not isinstance(written, int) or size <= written:
        return None
    trials = (info.get("counts") or {}).get("trials", 0)
    return (
        f"{run_dir} is older than its journal (its files hold {trials} trials, written "
        f"{info.get('updated') or info.get('created')}; the study has changed since: a search "
        f"is running or was killed); refresh it with: archkit search --resume {run_dir} "
        f"--trials 0"
    )
