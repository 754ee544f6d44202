"""A search, orchestrated: one :class:`SearchConfig` in, a run directory out.

The parts live along Optuna's seams: the config (``_config``), the study and its storage
(``_study``, ``_storage``), the per-trial objective (``_objective``), the latency meter
(``_latency``), Ctrl-C (``_interrupt``) and the run directory (``_results``, ``_rundir``).
:func:`search` runs them; :func:`run_search` and :func:`resume_search` are its keyword forms.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archkit.cost import count
from archkit.errors import ArchkitError
from archkit.search._budget import Budgets, format_bytes, format_count
from archkit.search._config import SearchConfig
from archkit.search._errors import RunDirError, SearchBudgetError, SearchInputError, StorageError
from archkit.search._estimators import Estimator, make_estimator
from archkit.search._interrupt import GracefulInterrupt, SearchInterrupted
from archkit.search._latency import LatencyMeter
from archkit.search._metrics import METRICS
from archkit.search._objective import Objective
from archkit.search._results import Progress, RunRecorder, SearchResult, now
from archkit.search._rundir import RUN_FILE, read_run_info, write_run_config
from archkit.search._space import SearchSpace, load_search_space
from archkit.search._storage import (
    StorageLostError,
    default_storage_url,
    journal_path,
    mask_secrets,
    redact_url,
)
from archkit.search._study import make_sampler, open_study, stored_config

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
    resume_hint = resume_command(run_dir, config.storage)

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
    # Enough to resume; the storage URL is recorded without its password.
    resumable = {
        **recorded,
        "storage": redact_url(config.storage) if shared else None,
        "study_name": study_name,
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
    previous = read_run_info(run_dir) if config.resume else {}
    created = previous.get("created") or now()
    command = mask_secrets(config.command) if config.command else config.command
    wrote_config = _write_config_first(
        run_dir,
        {
            "command": command,
            "study_name": study_name,
            "storage": redact_url(storage_url),
            "created": created,
            "config": resumable,
        },
    )
    try:
        study = open_study(
            storage_url,
            study_name,
            directions,
            recorded,
            join=config.resume or shared,
            resumable=resumable,
        )
    except ArchkitError:  # bad input (a storage that cannot be opened ...): nothing started
        if wrote_config and not config.resume:
            (run_dir / RUN_FILE).unlink(missing_ok=True)  # so the corrected command may start
        raise
    try:
        existing = len(study.get_trials(deepcopy=False))
    except StorageLostError as exc:
        raise StorageError(f"cannot read study {study_name!r}: {exc.reason}") from None
    # The same seed and storage give the same trials: a fresh study starts from ``seed``; a
    # resumed one from a seed fixed by how many trials it already has.
    sampler_seed = (config.seed + 7919 * config.worker + 104729 * existing) % 2**31
    study.sampler = make_sampler(sampler_seed)

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
        journal=None if shared else journal_path(run_dir),
        snapshot_note=(
            f"a snapshot of the shared study {study_name!r} in {redact_url(storage_url)}, taken "
            f"when this worker last wrote it: trials other workers finished later are missing, "
            f"and RUNNING rows may be their trials in progress; refresh it with: "
            f"{resume_hint} --trials 0"
            if shared
            else None
        ),
        info={
            "command": command,
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
            "created": created,
            "versions": _versions(),
            "config": resumable,
        },
    )
    _write_or_explain(run, 0, resume_hint)  # a fresh run's files exist from the start

    started = time.monotonic()
    done = feasible_count = infeasible_count = 0
    best_row: dict[str, Any] | None = None
    interrupted: BaseException | None = None
    lost: StorageLostError | None = None
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
                run.remember(record.pop("trial", None))
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
    except StorageLostError as exc:
        lost = exc
    if stop.requested and interrupted is None:
        interrupted = KeyboardInterrupt()
    if lost is not None:
        raise _storage_lost(run, lost, done, resume_hint)

    result = _write_or_explain(run, done, resume_hint)
    if interrupted is not None:
        raise SearchInterrupted(result, resume_hint) from None
    if meter is not None and meter.model is not None and config.verify and not result.best.empty:
        # Predicted latencies ranked the candidates; the winners are measured for real.
        from archkit.spec import load_spec

        winners = [load_spec(result.run_dir / path)
                   for path in result.best["spec"].head(config.verify)]
        run.info["latency"] = {**meter.describe(), "winners": meter.verify(winners)}
        result = _write_or_explain(run, done, resume_hint)
    if result.best.empty and result.info["counts"]["trials"] > 0:
        lat = None
        if meter is not None and budgets.latency_ms is not None:
            lat = meter(space.candidate(space.smallest()))
        raise _budget_failure(space, budgets, smallest, lat, ran=result.info["counts"]["trials"])
    return result


def _write_config_first(run_dir: Path, info: dict[str, Any]) -> bool:
    """Write run.json before the study exists, so a kill at any later moment leaves a run that
    ``--resume`` continues (and a second start in the same folder is refused). False when
    run.json is there already.

    Raises:
        RunDirError: the run directory cannot be written (read-only, full): bad input.
    """
    if (run_dir / RUN_FILE).exists():
        return False
    try:
        write_run_config(run_dir, info)
    except OSError as exc:
        reason = _os_reason(exc)
        raise RunDirError(f"cannot write the run directory {run_dir}: {reason}") from None
    return True


def resume_command(run_dir: str | Path, storage: str | None) -> str:
    """The command that continues the run in ``run_dir`` (its storage URL without password)."""
    command = f"archkit search --resume {shlex.quote(str(run_dir))}"
    if storage is not None:
        command += f" --storage {shlex.quote(redact_url(storage))}"
    return command


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _finished_count(trials: Any) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


def _write_or_explain(run: RunRecorder, done: int, resume_hint: str) -> SearchResult:
    """Write the run directory; a storage or disk that fails is one :class:`StorageLostError`."""
    try:
        return run.write(done=done)
    except StorageLostError as exc:
        raise _storage_lost(run, exc, done, resume_hint) from None
    except OSError as exc:
        finished = _finished_count(run.known.values())
        raise StorageLostError(
            str(run.run_dir),
            _os_reason(exc),
            f"cannot write the run directory {run.run_dir} ({_os_reason(exc)}); its "
            f"{finished} finished trials are safe in the study storage and the files already "
            f"there are whole (an earlier state); once it is writable, refresh it with: "
            f"{resume_hint} --trials 0",
        ) from None


def _storage_lost(
    run: RunRecorder, lost: StorageLostError, done: int, resume_hint: str
) -> StorageLostError:
    """Write the run directory from what is known, and say what failed and what is safe."""
    note = (
        f"written from what this process knew when the study storage failed ({lost.where}: "
        f"{lost.reason}); trials finished elsewhere since its last read are missing"
    )
    try:
        trials: list[Any] | None = run.read_trials()  # a full disk still reads
        note = ""
    except StorageLostError:
        trials = list(run.known.values())
    finished = _finished_count(trials)
    try:
        run.write(done=done, trials=trials, lost=note)
        written = f"the run directory {run.run_dir} is written from them"
    except OSError as exc:
        written = (
            f"the run directory {run.run_dir} could not be written either ({_os_reason(exc)}): "
            f"its files are whole, from before"
        )
    return StorageLostError(
        lost.where,
        lost.reason,
        f"the study storage failed after {done} trials of this call: {lost.where}: "
        f"{lost.reason}. The {finished} finished trials are safe in it (a trial running at "
        f"that moment is lost) and {written}. Once the storage is back, resume with: "
        f"{resume_hint}" + (" (with the password in place of ***)" if "***" in resume_hint else ""),
    )


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


def _shown(key: str, value: Any) -> str:
    if value is None or value == [] or value == ():
        return "none"
    if key in ("budgets.madds", "budgets.params"):
        return format_count(value)
    if key == "budgets.peak_activation_bytes":
        return format_bytes(value)
    if key == "budgets.latency_ms":
        return f"{value:g}ms"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _recorded(config: dict[str, Any], key: str) -> Any:
    if key == "space":
        return config.get("space_path")
    head, _, tail = key.partition(".")
    value = config.get(head)
    return (value or {}).get(tail) if tail else value


def _same(key: str, recorded: Any, given: Any) -> bool:
    if key == "space":
        return recorded is not None and Path(recorded).resolve() == Path(given).resolve()
    if isinstance(given, tuple):
        given = list(given)
    if isinstance(given, Path):
        given = str(given)
    return recorded == given or (recorded in (None, []) and given in (None, [], ()))


def resume_config(
    run_dir: str | Path,
    *,
    trials: int | None = None,
    worker: int = 0,
    storage: str | None = None,
    command: str | None = None,
    timeout_s: float | None = None,
    objective_options: dict[str, Any] | None = None,
    top: int | None = None,
    device_options: dict[str, Any] | None = None,
    same_as: dict[str, Any] | None = None,
) -> SearchConfig:
    """The :class:`SearchConfig` that continues the search recorded in ``run_dir/run.json`` (or,
    without run.json, in the attributes of the one study of ``run_dir``'s journal).

    Args:
        device_options: how to reach the run's device this time (``host``, ``port`` ...: a
            board may have moved); they replace the recorded ones.
        same_as: what the caller asked for, by config field (``space``, ``objective``,
            ``budgets.madds`` ...): each must be what the run was searched with.

    Raises:
        SearchInputError: ``run_dir`` holds no run, one that cannot be resumed as it is, or
            one searched with settings other than ``same_as`` (each difference is named).
    """
    config = read_run_info(run_dir).get("config") or stored_config(
        default_storage_url(run_dir) if journal_path(run_dir).is_file() else None
    )
    if not config:
        raise SearchInputError(
            "run_dir", f"{run_dir}: no run.json from archkit search (nothing to resume)"
        )
    differences = [
        f"{{{key}}} {_shown(key, _recorded(config, key))} (given {_shown(key, value)})"
        for key, value in (same_as or {}).items()
        if not _same(key, _recorded(config, key), value)
    ]
    if differences:
        raise SearchInputError(
            "resume",
            f"{run_dir} was searched with {'; '.join(differences)}; resume without these "
            f"options, or start a new search in another run directory",
        )
    if device_options and not config.get("device"):
        raise SearchInputError(
            "device", f"{run_dir} was searched without a device: nothing to reach"
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
        device_options={**(config.get("device_options") or {}), **(device_options or {})},
        latency=config.get("latency", "measure"),
        latency_runtime=config.get("latency_runtime", "tvm"),
        verify=config.get("verify", 3),
        memory_dtype=config["memory_dtype"],
        memory_schedule=config["memory_schedule"],
        top=top if top is not None else config.get("top", 10),
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
            ``objective_options``, ``top``, ``same_as`` (see :func:`resume_config`).

    Raises:
        SearchInputError: ``run_dir`` holds no run.
    """
    return search(resume_config(run_dir, **options), progress=progress)
