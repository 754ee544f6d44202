"""MetaSchedule tuning on the device itself, with a persistent per-device database.

Tasks (fused layers) are extracted the same way ``compile_relax`` prepares the module, so the
records match when compiling. A task the database already has a record for (same layer shape,
same target) is not tuned again: every later network that shares layer shapes reuses them.
Candidates are cross-compiled here with the device's compiler and timed on the board through
MetaSchedule's ``RPCRunner`` (a tracker, or a direct connection to one RPC server). The budget
goes where the time is: split by each new layer's share of the untuned network's time
(``_allocate``: measured on this host for a ``local`` device, estimated from FLOPs for a board).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archkit.device._devices import DeviceProfile
from archkit.device._errors import MeasurementError

__all__ = ["TuningStats", "default_cache_dir", "database_dir", "tune"]

ENV_CACHE_DIR = "ARCHKIT_CACHE_DIR"
# One tuning job at a time per process: the database file and the 2 host cores are shared.
TUNE_LOCK = threading.Lock()


@dataclass(frozen=True)
class TuningStats:
    """What tuning did for one network.

    Attributes:
        trials_requested: Trial budget asked for (``--tune N``), for this network's new layers.
        trials_run: Candidates actually built and timed on the device in this run.
        tasks_total: Tunable layers (fused TIR functions) in the network.
        tasks_tuned: Layers tuned in this run (no record in the database before).
        tasks_reused: Layers whose records came from the database (no new trials).
        records_before: Records in the device database before this run.
        records_after: Records after.
        database: Folder of the device's JSON database.
        tune_s: Wall time spent tuning, seconds.
        allocation: How the budget was split over the new layers: ``even``, or ``measured`` /
            ``estimated`` shares of the network's time (see ``_allocate``).
        allocation_detail: What the shares are based on.
        trials_per_task: Trials given to each new layer (fused kernel name).
        share_per_task: Each new layer's share of the untuned network's time (or FLOPs).
    """

    trials_requested: int
    trials_run: int
    tasks_total: int
    tasks_tuned: int
    tasks_reused: int
    records_before: int
    records_after: int
    database: str
    tune_s: float
    allocation: str = "even"
    allocation_detail: str = ""
    trials_per_task: dict[str, int] = field(default_factory=dict)
    share_per_task: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def default_cache_dir() -> Path:
    """``$ARCHKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/archkit``, else ``~/.cache/archkit``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "archkit"


def database_dir(device: DeviceProfile, target: dict[str, Any], cache_dir: Path | None) -> Path:
    """Folder of the device's tuning database: one per device name and exact target."""
    digest = hashlib.sha1(json.dumps(target, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cache_dir or default_cache_dir()) / "tuning" / f"{device.name}-{digest}"


def _cpu_tensor_intrinsics() -> None:
    """Register only the CPU tensor intrinsics before MetaSchedule imports all of them.

    ``TuneContext`` runs ``import tvm.s_tir.tensor_intrin``, which registers the intrinsics of
    every target; the CUDA/ROCm/Hexagon ones take ~35 s of CPU on a 2-core host and CPU boards
    never use them. A package stub with the real ``__path__`` makes that import a no-op and
    loads just the CPU modules (x86, Arm, RISC-V).
    """
    import importlib
    import importlib.util
    import sys
    import types

    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return
    stub = types.ModuleType(name, "CPU tensor intrinsics only (archkit.device)")
    stub.__path__ = list(spec.submodule_search_locations)
    stub.__spec__ = spec
    sys.modules[name] = stub
    try:
        for sub in ("x86", "arm_cpu", "riscv_cpu"):
            setattr(stub, sub, importlib.import_module(f"{name}.{sub}"))
    except Exception:  # noqa: BLE001 - fall back to TVM's full import
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def _drop_meta_schedule_log_handlers() -> None:
    """Close MetaSchedule's per-task log files and drop handlers it cannot re-configure.

    Every tuning run adds a FileHandler per task (open files pile up over many networks), and
    ``create_loggers`` fails on any unnamed handler found on its logger (e.g. added by a test
    harness or a previous run).
    """
    prefix = "tvm.s_tir.meta_schedule"
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if not (name == prefix or name.startswith(prefix + ".")):
            continue
        if not isinstance(lg, logging.Logger):
            continue
        for handler in list(lg.handlers):
            if isinstance(handler, logging.FileHandler) or handler.get_name() is None:
                lg.removeHandler(handler)
                handler.close()


def _search_strategy(per_task: int) -> Any:
    """Evolutionary search sized to the budget (TVM's default population of 512 costs tens of
    seconds of host CPU per round on 2 cores, wasted when a layer gets a handful of trials)."""
    from tvm.s_tir import meta_schedule as ms

    population = int(min(512, max(32, 8 * per_task)))
    return ms.search_strategy.EvolutionarySearch(
        population_size=population,
        init_min_unmeasured=min(50, population // 2),
        genetic_num_iters=4 if per_task >= 32 else 2,
    )


def _prepare(mod: Any, target: Any) -> Any:
    """The same preparation ``compile_relax`` applies before ``MetaScheduleApplyDatabase``."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline

    try:
        dispatch = pipeline.library_dispatch_passes(target)
    except (ValueError, AttributeError):
        dispatch = []
    seq = tvm.transform.Sequential(
        [
            *dispatch,
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )
    with target, tvm.transform.PassContext(opt_level=3):
        return seq(mod)


def _runner(device: DeviceProfile) -> Any:
    from tvm.s_tir import meta_schedule as ms

    from archkit.device._connect import tracker_servers

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20)
    conn = device.connection
    if conn.kind == "local":
        # The runner's worker processes size TVM's thread pool from TVM_NUM_THREADS (default:
        # half the logical cores on x86); time candidates with the device's thread count.
        os.environ.setdefault("TVM_NUM_THREADS", str(device.threads))
        return ms.runner.LocalRunner(timeout_sec=60, evaluator_config=evaluator)
    from archkit.device import _workers

    if conn.kind == "tracker":
        total, _ = tracker_servers(device)
        config = ms.runner.RPCConfig(
            tracker_host=conn.host,
            tracker_port=conn.port,
            tracker_key=conn.key,
            session_timeout_sec=120,
        )
        return ms.runner.RPCRunner(
            rpc_config=config, evaluator_config=evaluator, max_workers=max(1, total)
        )
    config = ms.runner.RPCConfig(
        tracker_host=conn.host,
        tracker_port=conn.port,
        tracker_key=conn.key or "archkit-direct",
        session_timeout_sec=120,
    )
    return ms.runner.RPCRunner(
        rpc_config=config,
        evaluator_config=evaluator,
        f_create_session=_workers.direct_session,
        max_workers=1,
    )


def _progress_callback(on_trials: Any) -> Any:
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class _Progress(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):  # noqa: ANN001, E501
            ok = sum(1 for r in runner_results if r.error_msg is None)
            on_trials(int(task_id), len(runner_results), ok)

    return _Progress()


def tune(
    mod: Any,
    device: DeviceProfile,
    target: dict[str, Any],
    trials: int,
    cache_dir: Path | None = None,
    *,
    progress: bool = True,
    allocation: str = "share",
    retune: bool = False,
) -> tuple[Any, TuningStats]:
    """Tune the network's not-yet-tuned layers on the device; return the database and stats.

    ``trials`` is the budget for this network's new layers. With ``allocation="share"`` it is
    split by each layer's share of the network's time (measured untuned on this host for a
    ``local`` device, estimated from FLOPs for a board; a quarter of it evenly, see
    ``_allocate``); with ``"even"`` evenly (each layer at least one trial). Layers that already
    have a record for this target in the device database get no new trials.

    Args:
        mod: Relax IRModule (BatchNorm folded, weights bound).
        device: Where candidates are timed.
        target: TVM target dict.
        trials: Trial budget (``--tune N``); 0 only opens the database.
        cache_dir: Root of the cache (default :func:`default_cache_dir`).
        progress: Show a rich progress bar.
        allocation: ``share`` (default) or ``even``.
        retune: Give trials to every layer, also those with records (MetaSchedule's search
            starts from the database's best; compiling takes the best record per layer): more
            tuning for a network already tuned, e.g. a latency-vs-tuning-time curve.

    Raises:
        MeasurementError: Tuning failed (stage ``tune``).
    """
    import cloudpickle
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import (
        extract_tasks,
        extracted_tasks_to_tune_contexts,
    )

    from archkit.device import _allocate, _workers

    if allocation not in ("share", "even"):
        raise ValueError(f"allocation must be 'share' or 'even', got {allocation!r}")
    cloudpickle.register_pickle_by_value(_workers)
    tgt = tvm.target.Target(target)
    db_dir = database_dir(device, target, cache_dir)
    db_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with TUNE_LOCK:
        database = ms.database.JSONDatabase(work_dir=str(db_dir))
        records_before = len(database)
        from archkit.device._compile import COMPILE_LOCK

        with COMPILE_LOCK:
            prepared = _prepare(mod, tgt)
            tasks = extract_tasks(prepared, tgt)
        new_tasks = [
            t
            for t in tasks
            if retune or database.query_tuning_record(t.dispatched[0], tgt, "main") is None
        ]
        stats = dict(
            trials_requested=trials,
            trials_run=0,
            tasks_total=len(tasks),
            tasks_tuned=len(new_tasks) if trials > 0 else 0,
            tasks_reused=len(tasks) - len(new_tasks),
            records_before=records_before,
            database=str(db_dir),
        )
        if trials > 0 and new_tasks:
            if allocation == "even":
                per_task = max(1, math.ceil(trials / len(new_tasks)))
                budget = {t.task_name: per_task for t in new_tasks}
                stats["allocation_detail"] = "the same number of trials for every new layer"
            else:
                with COMPILE_LOCK:
                    if device.connection.kind == "local":
                        shares = _allocate.measured_shares(prepared, tasks, tgt)
                    else:
                        shares = _allocate.estimated_shares(tasks)
                new_names = {t.task_name for t in new_tasks}
                budget = _allocate.allocate_trials(
                    {k: v for k, v in shares.shares.items() if k in new_names}, trials
                )
                stats["allocation_detail"] = shares.detail
                stats["share_per_task"] = {
                    k: round(v, 4) for k, v in shares.shares.items() if k in new_names
                }
            stats["allocation"] = "even" if allocation == "even" else shares.method
            groups = _allocate.budget_groups(budget)
            stats["trials_per_task"] = {name: n for n, names in groups for name in names}
            stats["tasks_tuned"] = len(stats["trials_per_task"])
            by_name = {t.task_name: t for t in new_tasks}
            counted = {"trials": 0}
            logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
            bar, bar_task = None, None
            if progress:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                bar = Progress(
                    TextColumn(f"[bold]tuning on {device.name}[/] {{task.description}}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    transient=False,
                    console=Console(stderr=True),  # stdout carries --format json/csv
                )
                bar_task = bar.add_task(
                    f"{len(new_tasks)} new layers, {len(tasks) - len(new_tasks)} reused",
                    total=sum(n * len(names) for n, names in groups),
                )

            def on_trials(task_id: int, n: int, ok: int) -> None:
                counted["trials"] += n
                if bar is not None:
                    bar.update(bar_task, advance=n)

            _cpu_tensor_intrinsics()
            _drop_meta_schedule_log_handlers()
            builder = ms.builder.LocalBuilder(
                f_build=_workers.build_candidate,
                f_export=_export_fn(device),
                max_workers=os.cpu_count() or 1,
                timeout_sec=120,
            )
            runner = _runner(device)
            try:
                if bar is not None:
                    bar.start()
                # One tune_tasks call per budget group: MetaSchedule caps all tasks of a call
                # at the same number of trials. Records go to the same database.
                for per_task, names in groups:
                    contexts, weights = extracted_tasks_to_tune_contexts(
                        extracted_tasks=[by_name[n] for n in names],
                        work_dir=str(db_dir),
                        strategy=_search_strategy(per_task),
                        seed=0,
                    )
                    ms.tune.tune_tasks(
                        tasks=contexts,
                        task_weights=weights,
                        work_dir=str(db_dir),
                        max_trials_global=per_task * len(names),
                        max_trials_per_task=per_task,
                        num_trials_per_iter=min(64, per_task),
                        builder=builder,
                        runner=runner,
                        database=database,
                        measure_callbacks=[
                            *ms.measure_callback.MeasureCallback.create("default"),
                            _progress_callback(on_trials),
                        ],
                    )
            except Exception as err:
                raise MeasurementError(
                    f"tuning on {device.name} failed: {type(err).__name__}: {err}", stage="tune"
                ) from err
            finally:
                if bar is not None:
                    bar.stop()
                _drop_meta_schedule_log_handlers()
            stats["trials_run"] = counted["trials"]
        stats["records_after"] = len(database)
    return database, TuningStats(**stats, tune_s=round(time.perf_counter() - start, 2))


def _export_fn(device: DeviceProfile) -> Any:
    import functools

    from archkit.device import _workers

    return functools.partial(
        _workers.export_shared,
        compiler=device.cross_compiler,
        options=list(device.cross_compiler_options) or None,
    )
