"""A search, orchestrated: one :class:`SearchConfig` in, a run directory out.

The parts live along Optuna's seams: the config (``_config``), the study and its storage
(``_study``, ``_storage``), the per-trial objective (``_objective``), the latency meter
(``_latency``), Ctrl-C (``_interrupt``) and the run directory (``_results``, ``_rundir``).
:func:`search` runs them; :func:`run_search` and :func:`resume_search` are its keyword forms.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archkit.cost import count
from archkit.search._budget import Budgets, format_bytes, format_count
from archkit.search._config import SearchConfig
from archkit.search._errors import SearchBudgetError, SearchInputError
from archkit.search._estimators import Estimator, make_estimator
from archkit.search._interrupt import GracefulInterrupt
from archkit.search._latency import LatencyMeter
from archkit.search._metrics import METRICS
from archkit.search._objective import Objective
from archkit.search._results import Progress, RunRecorder, SearchResult, now
from archkit.search._rundir import RUN_FILE, read_run_info
from archkit.search._space import SearchSpace, load_search_space
from archkit.search._storage import default_storage_url, redact_url
from archkit.search._study import make_sampler, open_study

__all__ = ["search", "run_search", "resume_search"]


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
) -> SearchBudgetError:
    cost = (
        f"{format_count(smallest['madds'])} MAdds, {format_count(smallest['params'])} params, "
        f"{format_bytes(smallest['peak_activation_bytes'])} peak activations"
    )
    if latency_ms is not None:
        cost += f", {latency_ms:.2f} ms"
    shown = {
        "madds": format_count,
        "params": format_count,
        "peak_activation_bytes": format_bytes,
        "latency_ms": lambda v: f"{v:g}ms",
    }
    limits = [
        f"{{budgets.{name}}} {shown[name](limit)}"
        for name, limit in budgets.as_dict().items()
        if limit is not None
    ]
    shown_params = ", ".join(f"{k} {v:g}" for k, v in smallest["params_of_candidate"].items())
    smallest_text = f"the smallest candidate ({shown_params}) costs {cost}"
    if ran is None:
        return SearchBudgetError(
            f"no candidate of search space {space.name!r} meets "
            f"{' and '.join(limits)}: {smallest_text}"
        )
    fits = all(smallest[k] <= v for k, v in budgets.analytic.items()) and (
        budgets.latency_ms is None or latency_ms is None or latency_ms <= budgets.latency_ms
    )
    hint = ", which fits: more {trials} may find others" if fits else ""
    return SearchBudgetError(
        f"none of the {ran} trials of search space {space.name!r} met "
        f"{' and '.join(limits)}; {smallest_text}{hint}"
    )


def _versions() -> dict[str, str]:
    import optuna

    import archkit

    return {"archkit": archkit.__version__, "optuna": optuna.__version__}


def search(
    config: SearchConfig,
    *,
    progress: Callable[[Progress], None] | None = None,
    estimator: Estimator | None = None,
) -> SearchResult:
    """Search ``config.space`` for the best candidates under ``config.budgets``; write the run
    directory.

    Args:
        config: the search (see :class:`SearchConfig`).
        progress: called after every trial of this process.
        estimator: a ready estimator (overrides ``config.objective`` and its options).

    Raises:
        SearchInputError, SearchSpaceError, StorageError: bad input, before any trial runs.
        SearchBudgetError: no candidate meets the budgets (after writing the run directory).
    """
    import optuna

    budgets = config.budgets
    space, space_path = config.space, None
    if not isinstance(space, SearchSpace):
        space_path = str(Path(space).resolve())
        space = load_search_space(space)
    multi = bool(config.pareto)
    report_metrics = list(config.pareto) or ["accuracy", "madds"]
    if estimator is None:
        estimator = make_estimator(config.objective, **config.objective_options)
    objective = estimator.name
    space = estimator.prepare(space)

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    study_name = config.study_name or f"{space.name}-{objective}-{stamp}"
    run_dir = Path(config.run_dir) if config.run_dir is not None else Path("runs") / study_name
    if not config.resume and (run_dir / RUN_FILE).exists() and config.storage is None:
        raise SearchInputError(
            "run_dir",
            f"{run_dir} already holds a run; continue it with "
            f"{{resume}} {run_dir} or choose another {{run_dir}}",
        )
    shared = config.storage is not None
    storage_url = config.storage or default_storage_url(run_dir)

    # Everything below needs no trial: a budget nobody can meet fails here, before any trial.
    smallest = _smallest_costs(space, config.memory_dtype, config.memory_schedule)
    for key, limit in budgets.analytic.items():
        if smallest[key] > limit:
            raise _budget_failure(space, budgets, smallest)

    recorded = {
        "space_name": space.name,
        "space_path": space_path,
        "budgets": budgets.as_dict(),
        "objective": objective,
        "objective_options": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in config.objective_options.items()
        },
        "pareto": list(config.pareto),
        "seed": config.seed,
        "memory_dtype": config.memory_dtype,
        "memory_schedule": config.memory_schedule,
        "device": config.device,
        "device_options": config.device_options,
        "latency": config.latency,
        "latency_runtime": config.latency_runtime,
        "verify": config.verify,
        "top": config.top,
    }
    # A device that cannot be reached is bad input too: find out before anything is written.
    meter = (
        LatencyMeter(config.device, config.device_options, config.latency,
                     config.latency_runtime)
        if config.device
        else None
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize"] + [METRICS[m].direction for m in config.pareto[1:]]
    study = open_study(storage_url, study_name, directions, recorded, join=config.resume or shared)
    existing = len(study.get_trials(deepcopy=False))
    # The same seed and storage give the same trials: a fresh study starts from ``seed``; a
    # resumed one from a seed fixed by how many trials it already has.
    sampler_seed = (config.seed + 7919 * config.worker + 104729 * existing) % 2**31
    study.sampler = make_sampler(sampler_seed)

    previous = read_run_info(run_dir) if config.resume else {}
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
    trials = config.trials
    target = int(previous.get("trials_target", 0)) if config.resume else (trials or 0)
    if trials is None:  # resume: the trials still missing to reach the first call's target
        trials = max(0, target - finished)
    run = RunRecorder(
        run_dir=run_dir,
        space=space,
        study=study,
        objective_label=estimator.label,
        multi=multi,
        report_metrics=report_metrics,
        top=config.top,
        smallest=smallest,
        info={
            "command": config.command,
            "study_name": study_name,
            "storage": redact_url(storage_url),
            "seed": config.seed,
            "sampler_seed": sampler_seed,
            "worker": config.worker,
            "search_space": {
                "name": space.name,
                "path": space_path,
                "ranges": [dataclasses.asdict(r) for r in space.ranges],
            },
            "budgets": budgets.as_dict(),
            "memory": {"dtype": config.memory_dtype, "schedule": config.memory_schedule},
            "objective": estimator.describe(),
            "pareto": list(config.pareto) or None,
            "device": config.device,
            "latency": meter.describe() if meter is not None else None,
            "trials_target": max(target, finished + trials) if config.resume else trials,
            "created": previous.get("created") or now(),
            "versions": _versions(),
            # Enough to resume; the storage URL is recorded without its password.
            "config": {
                **recorded,
                "storage": redact_url(config.storage) if shared else None,
                "study_name": study_name,
            },
        },
    )
    run.write(done=0)  # run.json exists from the start: resume works after a kill

    started = time.monotonic()
    done = feasible_count = infeasible_count = 0
    best_row: dict[str, Any] | None = None
    interrupted: BaseException | None = None
    objective_fn = Objective(space, config, estimator, meter)
    stop = GracefulInterrupt()
    try:
        with stop:
            for _ in range(trials):
                if stop.requested or (
                    config.timeout_s is not None and time.monotonic() - started > config.timeout_s
                ):
                    break
                record = objective_fn.run_one(study)
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
    if meter is not None and meter.model is not None and config.verify and not result.best.empty:
        # Predicted latencies ranked the candidates; the winners are measured for real.
        from archkit.spec import load_spec

        winners = [load_spec(result.run_dir / path)
                   for path in result.best["spec"].head(config.verify)]
        run.info["latency"] = {**meter.describe(), "winners": meter.verify(winners)}
        result = run.write(done=done)
    if result.best.empty and result.info["counts"]["trials"] > 0:
        lat = None
        if meter is not None and budgets.latency_ms is not None:
            lat = meter(space.candidate(space.smallest()))
        raise _budget_failure(space, budgets, smallest, lat, ran=result.info["counts"]["trials"])
    return result


def run_search(
    space: SearchSpace | str | Path,
    *,
    progress: Callable[[Progress], None] | None = None,
    estimator: Estimator | None = None,
    **config: Any,
) -> SearchResult:
    """``search(SearchConfig(space, **config))``: the keyword form of :func:`search`.

    Args:
        space: a :class:`SearchSpace` or the path of a search space file.
        progress: called after every trial of this process.
        estimator: a ready estimator (overrides ``objective`` and ``objective_options``).
        **config: the other fields of :class:`SearchConfig` (``budgets``, ``trials`` ...).
    """
    return search(SearchConfig(space, **config), progress=progress, estimator=estimator)


def resume_config(
    run_dir: str | Path,
    *,
    trials: int | None = None,
    worker: int = 0,
    storage: str | None = None,
    command: str | None = None,
    timeout_s: float | None = None,
    objective_options: dict[str, Any] | None = None,
) -> SearchConfig:
    """The :class:`SearchConfig` that continues the search recorded in ``run_dir/run.json``.

    Raises:
        SearchInputError: ``run_dir`` holds no run, or one that cannot be resumed as it is.
    """
    config = read_run_info(run_dir).get("config")
    if not config:
        raise SearchInputError(
            "run_dir", f"{run_dir}: no run.json from archkit search (nothing to resume)"
        )
    if not config.get("space_path"):
        raise SearchInputError(
            "run_dir",
            f"{run_dir}: the run was started from a search space "
            f"object, not a file; resume it from Python",
        )
    if storage is None:
        storage = config.get("storage")
        if storage is not None and "***" in storage:
            raise SearchInputError(
                "storage",
                f"{run_dir} used a storage URL with a password "
                f"({storage}); pass {{storage}} URL again",
            )
    return SearchConfig(
        config["space_path"],
        budgets=Budgets(**config["budgets"]),
        objective=config["objective"],
        objective_options={**config.get("objective_options", {}), **(objective_options or {})},
        pareto=config.get("pareto") or None,
        trials=trials,
        seed=config["seed"],
        storage=storage,
        study_name=config["study_name"],
        run_dir=run_dir,
        device=config.get("device"),
        device_options=config.get("device_options") or {},
        latency=config.get("latency", "measure"),
        latency_runtime=config.get("latency_runtime", "tvm"),
        verify=config.get("verify", 3),
        memory_dtype=config["memory_dtype"],
        memory_schedule=config["memory_schedule"],
        top=config.get("top", 10),
        worker=worker,
        timeout_s=timeout_s,
        command=command,
        resume=True,
    )


def resume_search(
    run_dir: str | Path,
    *,
    progress: Callable[[Progress], None] | None = None,
    **options: Any,
) -> SearchResult:
    """Continue the search recorded in ``run_dir/run.json`` (after Ctrl-C, a kill, or to add
    trials). By default runs the trials still missing to reach the first call's ``trials``
    (finished trials count: COMPLETE and PRUNED; a trial RUNNING when its process was killed
    stays RUNNING and does not count).

    Args:
        run_dir: the run directory.
        progress: called after every trial of this process.
        **options: ``trials``, ``worker``, ``storage``, ``command``, ``timeout_s``,
            ``objective_options`` (see :func:`resume_config`).

    Raises:
        SearchInputError: ``run_dir`` holds no run.
    """
    return search(resume_config(run_dir, **options), progress=progress)
