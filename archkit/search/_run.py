"""``run_search``: an Optuna study over a search space, under hard budgets.

Each trial draws a candidate, counts it analytically (no model is built) and checks the analytic
budgets. Every budget is fed to Optuna as a constraint (``trial.set_constraint``, Optuna 5), so
the sampler learns where the feasible region is. A candidate over an analytic budget is never
built or scored: the trial ends PRUNED with ``feasible = False``. Only then is latency measured
(if asked) and the objective evaluated.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from archkit.cost import DTYPE_BYTES, SCHEDULES, count
from archkit.errors import BudgetError, SpecError
from archkit.search._budget import METRICS, Budgets, format_bytes, format_count
from archkit.search._errors import SearchInputError
from archkit.search._estimators import Estimator, make_estimator
from archkit.search._results import ATTRS_KEY, best_calibrated, best_table, trials_frame, write_run
from archkit.search._space import SearchSpace, load_search_space
from archkit.search._storage import default_storage_url, open_storage, redact_url

__all__ = ["run_search", "resume_search", "SearchResult", "Progress", "PARETO_METRICS"]

PARETO_METRICS = ("accuracy", *METRICS)
RUN_FILE = "run.json"


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
    """The outcome of :func:`run_search`.

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


def _parse_pareto(pareto: str | Sequence[str] | None, need_device: bool) -> list[str]:
    if pareto is None or pareto == "" or pareto == []:
        return []
    names = [p.strip() for p in (pareto.split(",") if isinstance(pareto, str) else pareto)]
    for name in names:
        if name not in PARETO_METRICS:
            raise SearchInputError(
                "--pareto", f"unknown metric {name!r} (known: {', '.join(PARETO_METRICS)})"
            )
    if len(names) < 2 or len(set(names)) != len(names):
        raise SearchInputError(
            "--pareto",
            f"needs two or more distinct metrics such as accuracy,madds, got {','.join(names)!r}",
        )
    if "accuracy" not in names:
        raise SearchInputError("--pareto", "must include accuracy (the objective)")
    if names[0] != "accuracy":
        names.remove("accuracy")
        names.insert(0, "accuracy")
    if "latency" in names and not need_device:
        raise SearchInputError("--pareto", "latency needs --device")
    return names


class _LatencyMeter:
    """Median latency of a candidate on a device (``archkit.device``, imported when asked)."""

    def __init__(self, device: str, options: dict[str, Any]) -> None:
        try:
            from archkit.device import load_device
        except ImportError as exc:
            raise SearchInputError(
                "--device", f"latency needs archkit.device (TVM), which cannot be imported: {exc}"
            ) from None
        self.name = device
        self.options = dict(options)
        self.device = load_device(device, **self.options)
        try:
            from archkit.device import check_reachable
        except ImportError:  # an archkit.device without the check: the first trial will tell
            check_reachable = None
        if check_reachable is not None:
            check_reachable(self.device)
        # Samplers revisit candidates (widths that round to the same channels, list choices);
        # compiling and timing one takes seconds to minutes, so each network is measured once.
        self._cache: dict[Any, float] = {}

    def __call__(self, spec: Any) -> float:
        from archkit.build import build_model, example_input
        from archkit.device import measure_latency

        key = dataclasses.replace(spec, name="candidate")
        if key not in self._cache:
            result = measure_latency(
                build_model(spec).eval(),
                example_input(spec),
                self.device,
                progress=False,
                name=spec.name,
            )
            self._cache[key] = float(result.median_ms)
        return self._cache[key]


def _describe_params(params: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in params.items())


def _smallest_costs(space: SearchSpace, dtype: str, schedule: str) -> dict[str, Any]:
    params = space.smallest()
    costs = count(space.candidate(params))
    return {
        "params_of_candidate": params,
        "madds": costs.madds,
        "params": costs.params,
        "peak_activation_bytes": costs.peak_activation_bytes(dtype, schedule),
    }


def _budget_failure(
    space: SearchSpace,
    budgets: Budgets,
    smallest: dict[str, Any],
    latency_ms: float | None = None,
    ran: int | None = None,
) -> BudgetError:
    cost = (
        f"{format_count(smallest['madds'])} MAdds, {format_count(smallest['params'])} params, "
        f"{format_bytes(smallest['peak_activation_bytes'])} peak activations"
    )
    if latency_ms is not None:
        cost += f", {latency_ms:.2f} ms"
    limits = []
    if budgets.madds is not None:
        limits.append(f"--budget-madds {format_count(budgets.madds)}")
    if budgets.params is not None:
        limits.append(f"--budget-params {format_count(budgets.params)}")
    if budgets.peak_activation_bytes is not None:
        limits.append(f"--budget-memory {format_bytes(budgets.peak_activation_bytes)}")
    if budgets.latency_ms is not None:
        limits.append(f"--budget-latency {budgets.latency_ms:g}ms")
    smallest_text = (
        f"the smallest candidate ({_describe_params(smallest['params_of_candidate'])}) costs {cost}"
    )
    if ran is None:
        return BudgetError(
            f"no candidate of search space {space.name!r} meets "
            f"{' and '.join(limits)}: {smallest_text}"
        )
    fits = all(smallest[k] <= v for k, v in budgets.analytic.items()) and (
        budgets.latency_ms is None or latency_ms is None or latency_ms <= budgets.latency_ms
    )
    hint = ", which fits: more --trials may find others" if fits else ""
    return BudgetError(
        f"none of the {ran} trials of search space {space.name!r} met "
        f"{' and '.join(limits)}; {smallest_text}{hint}"
    )


def _make_sampler(seed: int, multi_objective: bool) -> Any:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate: width and resolution trade off against each other under a budget.
        # constant_liar: concurrent workers do not all draw next to the same running trial.
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=10
        )


def _config_fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """What workers joining one study must agree on."""
    keys = ("space_name", "budgets", "objective", "pareto", "memory_dtype", "memory_schedule")
    return {k: config.get(k) for k in keys}


def run_search(
    space: SearchSpace | str | Path,
    *,
    budgets: Budgets | None = None,
    objective: str = "published",
    objective_options: dict[str, Any] | None = None,
    pareto: str | Sequence[str] | None = None,
    trials: int | None = 100,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    run_dir: str | Path | None = None,
    device: str | None = None,
    device_options: dict[str, Any] | None = None,
    memory_dtype: str = "fp32",
    memory_schedule: str = "naive",
    top: int = 10,
    worker: int = 0,
    timeout_s: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    command: str | None = None,
    resume: bool = False,
    estimator: Estimator | None = None,
) -> SearchResult:
    """Search ``space`` for the best candidates under ``budgets``; write the run directory.

    Args:
        space: a :class:`SearchSpace` or the path of a search space file.
        budgets: hard limits; a candidate over any of them is never reported.
        objective: ``published``, ``proxy`` or ``train`` (see :data:`ESTIMATORS`).
        objective_options: keyword arguments of the estimator (``train``: ``data``, ``epochs``
            ...).
        pareto: e.g. ``"accuracy,madds"``: a multi-objective search reporting the Pareto front.
        trials: trials this call runs (each worker of a shared study runs its own ``trials``);
            None with ``resume``: the trials missing to reach the first call's target.
        seed: seeds the sampler; the same seed and storage give the same trials.
        storage: an RDB URL (``postgresql://...``) or ``journal:PATH``; default a journal file in
            the run directory.
        study_name: default ``<space>-<objective>-<UTC timestamp>``.
        run_dir: default ``runs/<study_name>``.
        device: a device name for latency (``--budget-latency``, ``--pareto ...,latency``).
        device_options: ``host``, ``port``, ``key``, ``tracker`` for ``load_device``.
        memory_dtype, memory_schedule: how peak activation memory is counted.
        top: how many best results a single-objective run reports.
        worker: a number distinct per concurrent worker (offsets its sampler seed).
        timeout_s: stop starting trials after this many seconds.
        progress: called after every trial of this process.
        command: the command line, recorded in run.json.
        resume: continue the study recorded in ``run_dir`` (see :func:`resume_search`).
        estimator: a ready estimator (overrides ``objective`` and ``objective_options``).

    Raises:
        SearchInputError, SearchSpaceError, StorageError: bad input, before any trial runs.
        BudgetError: no candidate meets the budgets (after writing the run directory).
    """
    import optuna

    budgets = budgets or Budgets()
    if trials is None and not resume:
        trials = 100
    if trials is not None and (
        not isinstance(trials, int) or isinstance(trials, bool) or trials < 0
    ):
        raise SearchInputError("--trials", f"must be a whole number >= 0, got {trials!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise SearchInputError("--seed", f"must be a whole number in 0..2^31-1, got {seed!r}")
    if memory_dtype not in DTYPE_BYTES:
        raise SearchInputError(
            "--memory-dtype", f"must be one of {', '.join(DTYPE_BYTES)}, got {memory_dtype!r}"
        )
    if memory_schedule not in SCHEDULES:
        raise SearchInputError(
            "--memory-schedule", f"must be one of {', '.join(SCHEDULES)}, got {memory_schedule!r}"
        )
    if budgets.latency_ms is not None and device is None:
        raise SearchInputError("--budget-latency", "needs --device (e.g. --device rpi4)")
    space_path = None
    if not isinstance(space, SearchSpace):
        space_path = str(Path(space).resolve())
        space = load_search_space(space)
    pareto_metrics = _parse_pareto(pareto, device is not None)
    multi = bool(pareto_metrics)
    report_metrics = pareto_metrics or ["accuracy", "madds"]
    objective_options = dict(objective_options or {})
    if estimator is None:
        estimator = make_estimator(objective, **objective_options)
    objective = estimator.name
    space = estimator.prepare(space)

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    study_name = study_name or f"{space.name}-{objective}-{stamp}"
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / study_name
    if not resume and (run_dir / RUN_FILE).exists() and storage is None:
        raise SearchInputError(
            "--run-dir",
            f"{run_dir} already holds a run; continue it with "
            f"--resume {run_dir} or choose another --run-dir",
        )
    shared = storage is not None
    storage_url = storage or default_storage_url(run_dir)

    # Everything below needs no trial: a budget nobody can meet fails here, before any trial.
    smallest = _smallest_costs(space, memory_dtype, memory_schedule)
    for key, limit in budgets.analytic.items():
        if smallest[key] > limit:
            raise _budget_failure(space, budgets, smallest)

    config = {
        "space_name": space.name,
        "space_path": space_path,
        "budgets": budgets.as_dict(),
        "objective": objective,
        "objective_options": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in objective_options.items()
        },
        "pareto": pareto_metrics,
        "seed": seed,
        "memory_dtype": memory_dtype,
        "memory_schedule": memory_schedule,
        "device": device,
        "device_options": device_options or {},
        "top": top,
    }
    # A device that cannot be reached is bad input too: find out before anything is written.
    meter = _LatencyMeter(device, device_options or {}) if device is not None else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage_obj = open_storage(storage_url)
    directions = (
        (["maximize"] + [METRICS[m][2] for m in pareto_metrics[1:]]) if multi else ["maximize"]
    )
    study = _open_study(optuna, storage_obj, study_name, directions, config, resume or shared)
    existing = len(study.get_trials(deepcopy=False))
    # The same seed and storage give the same trials: a fresh study starts from ``seed``; a
    # resumed one from a seed fixed by how many trials it already has.
    sampler_seed = (seed + 7919 * worker + 104729 * existing) % 2**31
    study.sampler = _make_sampler(sampler_seed, multi)

    previous = _read_json(run_dir / RUN_FILE) if resume else {}
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
    target = int(previous.get("trials_target", 0)) if resume else (trials or 0)
    if trials is None:  # resume: the trials still missing to reach the first call's target
        trials = max(0, target - finished)
    run = _RunWriter(
        run_dir=run_dir,
        space=space,
        study=study,
        estimator=estimator,
        multi=multi,
        report_metrics=report_metrics,
        top=top,
        smallest=smallest,
        info={
            "command": command,
            "study_name": study_name,
            "storage": redact_url(storage_url),
            "seed": seed,
            "sampler_seed": sampler_seed,
            "worker": worker,
            "search_space": {
                "name": space.name,
                "path": space_path,
                "ranges": [dataclasses.asdict(r) for r in space.ranges],
            },
            "budgets": budgets.as_dict(),
            "memory": {"dtype": memory_dtype, "schedule": memory_schedule},
            "objective": estimator.describe(),
            "pareto": pareto_metrics or None,
            "device": device,
            "trials_target": max(target, finished + trials) if resume else trials,
            "created": previous.get("created") or _now(),
            "versions": _versions(),
            # Enough to resume; the storage URL is recorded without its password.
            "config": {
                **config,
                "storage": redact_url(storage) if shared else None,
                "study_name": study_name,
            },
        },
    )
    run.write(done=0)  # run.json exists from the start: --resume works after a kill

    started = time.monotonic()
    done = feasible_count = infeasible_count = 0
    best_row: dict[str, Any] | None = None
    interrupted: BaseException | None = None
    evaluator = _Evaluator(
        space, budgets, estimator, meter, memory_dtype, memory_schedule, pareto_metrics, worker
    )
    stop = _GracefulInterrupt()
    try:
        with stop:
            for _ in range(trials):
                if stop.requested or (
                    timeout_s is not None and time.monotonic() - started > timeout_s
                ):
                    break
                record = evaluator.run_one(study)
                done += 1
                if record["feasible"]:
                    feasible_count += 1
                    if best_row is None or record["objective"] > best_row["objective"]:
                        best_row = record
                elif record["infeasible"]:
                    infeasible_count += 1
                if progress is not None:
                    progress(Progress(done, trials, feasible_count, infeasible_count, best_row))
    except KeyboardInterrupt as exc:  # completed trials are in storage; write what we have
        interrupted = exc
    if stop.requested and interrupted is None:
        interrupted = KeyboardInterrupt()

    result = run.write(done=done)
    if interrupted is not None:
        raise interrupted
    if result.best.empty and result.info["counts"]["trials"] > 0:
        lat = None
        if meter is not None and budgets.latency_ms is not None:
            lat = meter(space.candidate(space.smallest()))
        raise _budget_failure(space, budgets, smallest, lat, ran=result.info["counts"]["trials"])
    return result


class _GracefulInterrupt:
    """Ctrl-C stops the search between trials: the first SIGINT lets the running trial finish
    (so it is recorded, and no storage write is cut in half: Optuna's journal file lock does
    not survive a KeyboardInterrupt inside it); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logging.getLogger("archkit.search").warning(
            "archkit: stopping after the running trial (Ctrl-C again to stop at once)"
        )


@dataclass
class _RunWriter:
    """Writes the run directory from the study's trials (at the start and at the end)."""

    run_dir: Path
    space: SearchSpace
    study: Any
    estimator: Estimator
    multi: bool
    report_metrics: list[str]
    top: int
    smallest: dict[str, Any]
    info: dict[str, Any]

    def write(self, done: int) -> SearchResult:
        frame = trials_frame(self.study.get_trials(deepcopy=False), self.space, self.report_metrics)
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
            "best": _first(best),
            "best_calibrated": best_calibrated(frame),
            "updated": _now(),
        }
        best = write_run(self.run_dir, self.space, frame, best, info, self.estimator.label)
        return SearchResult(run_dir=self.run_dir, trials=frame, best=best, info=info)


def _first(best: pd.DataFrame) -> dict[str, Any] | None:
    from archkit.search._results import records

    return records(best.head(1))[0] if len(best) else None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import optuna

    import archkit

    return {"archkit": archkit.__version__, "optuna": optuna.__version__}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _open_study(
    optuna: Any, storage: Any, name: str, directions: list[str], config: dict[str, Any], join: bool
) -> Any:
    from archkit.search._errors import StorageError

    try:
        study = optuna.create_study(
            study_name=name, storage=storage, directions=directions, load_if_exists=join
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise SearchInputError(
            "--study-name",
            f"study {name!r} already exists in this storage; use --resume or another name",
        ) from None
    except Exception as exc:  # noqa: BLE001 - storage back-ends raise many types
        raise StorageError(f"--storage: cannot create or load study {name!r}: {exc}") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise SearchInputError(
            "--study-name",
            f"study {name!r} exists with objectives "
            f"{[d.name.lower() for d in study.directions]}, "
            f"this search has {directions}",
        )
    fingerprint = _config_fingerprint(config)
    stored = study.user_attrs.get("archkit")
    if stored is None:
        study.set_user_attr("archkit", fingerprint)
    elif stored != json.loads(json.dumps(fingerprint)):
        raise SearchInputError(
            "--study-name",
            f"study {name!r} was created with other settings "
            f"({stored}); this search has {fingerprint}",
        )
    return study


class _Evaluator:
    """Runs one trial: draw, count, check budgets, (measure,) score, tell."""

    def __init__(
        self,
        space: SearchSpace,
        budgets: Budgets,
        estimator: Estimator,
        meter: _LatencyMeter | None,
        dtype: str,
        schedule: str,
        pareto_metrics: list[str],
        worker: int,
    ) -> None:
        self.space, self.budgets, self.estimator, self.meter = space, budgets, estimator, meter
        self.dtype, self.schedule = dtype, schedule
        self.pareto_metrics, self.worker = pareto_metrics, worker

    def run_one(self, study: Any) -> dict[str, Any]:
        from optuna.trial import TrialState

        trial = study.ask()
        record: dict[str, Any] = {
            "number": trial.number,
            "feasible": False,
            "infeasible": False,
            "objective": None,
        }
        try:
            params = self.space.suggest(trial)
            record.update(params)
            attrs: dict[str, Any] = {"candidate": params, "worker": self.worker}
            try:
                spec = self.space.candidate(params)
            except SpecError as exc:
                attrs["error"] = f"invalid candidate: {exc.reason}"
                self._set_attrs(trial, attrs)
                study.tell(trial, state=TrialState.FAIL)
                return record
            costs = count(spec)
            metrics = {
                "madds": costs.madds,
                "params": costs.params,
                "peak_activation_bytes": costs.peak_activation_bytes(self.dtype, self.schedule),
            }
            attrs.update(metrics)
            record.update(metrics)
            # Normalized excess over each budget: <= 0 is within budget (Optuna's convention).
            violations = {
                k: (metrics[k] - limit) / limit for k, limit in self.budgets.analytic.items()
            }
            analytic_ok = all(v <= 0 for v in violations.values())
            latency = None
            if analytic_ok and self.meter is not None:
                latency = self.meter(spec)
                attrs["latency_ms"] = latency
                record["latency_ms"] = latency
            if self.budgets.latency_ms is not None:
                # Not measured when an analytic budget already rules the candidate out.
                violations["latency_ms"] = (
                    0.0
                    if latency is None
                    else (latency - self.budgets.latency_ms) / self.budgets.latency_ms
                )
            for key, value in violations.items():
                trial.set_constraint(key, value)
            feasible = all(v <= 0 for v in violations.values())
            attrs["feasible"] = feasible
            attrs["violation"] = max([0.0, *violations.values()])
            if not feasible:
                self._set_attrs(trial, attrs)
                record["infeasible"] = True
                study.tell(trial, state=TrialState.PRUNED)
                return record
            estimate = self.estimator.estimate(spec, costs)
            attrs.update(
                objective=estimate.value, calibrated=estimate.calibrated, note=estimate.note
            )
            self._set_attrs(trial, attrs)
            values = [estimate.value]
            for metric in self.pareto_metrics[1:]:
                values.append(float({**metrics, "latency_ms": latency}[METRICS[metric][1]]))
            if not all(math.isfinite(v) for v in values):
                trial.set_user_attr(ATTRS_KEY, {**attrs, "error": f"non-finite objective {values}"})
                study.tell(trial, state=TrialState.FAIL)
                return record
            study.tell(trial, values if len(values) > 1 else values[0])
            record.update(feasible=True, objective=estimate.value, calibrated=estimate.calibrated)
            return record
        except BaseException as exc:
            # Ctrl-C or a bug mid-trial: end the trial as FAIL so no RUNNING trial is left.
            try:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])  # kept apart
                study.tell(trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - the trial may already be finished
                pass
            raise

    @staticmethod
    def _set_attrs(trial: Any, attrs: dict[str, Any]) -> None:
        # One user attribute per trial: each write is a storage round trip (a journal line or
        # a database row), and analytic-only searches are bound by them.
        trial.set_user_attr(ATTRS_KEY, attrs)


def resume_search(
    run_dir: str | Path,
    *,
    trials: int | None = None,
    worker: int = 0,
    storage: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    command: str | None = None,
    timeout_s: float | None = None,
    objective_options: dict[str, Any] | None = None,
) -> SearchResult:
    """Continue the search recorded in ``run_dir/run.json`` (after Ctrl-C, a kill, or to add
    trials). By default runs the trials still missing to reach the first call's ``trials``
    (finished trials count: COMPLETE and PRUNED; a trial RUNNING when its process was killed
    stays RUNNING and does not count).

    Raises:
        SearchInputError: ``run_dir`` holds no run.
    """
    info = _read_json(Path(run_dir) / RUN_FILE)
    config = info.get("config")
    if not config:
        raise SearchInputError(
            "--resume", f"{run_dir}: no run.json from archkit search (nothing to resume)"
        )
    if not config.get("space_path"):
        raise SearchInputError(
            "--resume",
            f"{run_dir}: the run was started from a search space "
            f"object, not a file; resume it from Python",
        )
    budgets = Budgets(**config["budgets"])
    options = {**config.get("objective_options", {}), **(objective_options or {})}
    if storage is None:
        storage = config.get("storage")
        if storage is not None and "***" in storage:
            raise SearchInputError(
                "--storage",
                f"{run_dir} used a storage URL with a password "
                f"({storage}); pass --storage URL again",
            )
    return run_search(
        config["space_path"],
        budgets=budgets,
        objective=config["objective"],
        objective_options=options,
        pareto=config.get("pareto") or None,
        trials=trials,
        seed=config["seed"],
        storage=storage,
        study_name=config["study_name"],
        run_dir=run_dir,
        device=config.get("device"),
        device_options=config.get("device_options") or None,
        memory_dtype=config["memory_dtype"],
        memory_schedule=config["memory_schedule"],
        top=config.get("top", 10),
        worker=worker,
        timeout_s=timeout_s,
        progress=progress,
        command=command,
        resume=True,
    )
