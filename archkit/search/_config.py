"""``SearchConfig``: everything one search is asked to do, checked once when it is made.

Errors name the config's own fields (``trials``, ``budgets.latency_ms``); the CLI shows them as
its flags (see :class:`~archkit.search.ArgumentError`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archkit.cost import DTYPE_BYTES, SCHEDULES
from archkit.search._budget import Budgets
from archkit.search._errors import SearchInputError
from archkit.search._metrics import PARETO_METRICS
from archkit.search._space import SearchSpace

__all__ = ["LATENCY_SOURCES", "SearchConfig", "parse_pareto"]

DEFAULT_TRIALS = 100
#: Where a candidate's latency comes from (see :class:`SearchConfig`).
LATENCY_SOURCES = ("auto", "model", "measure")


def parse_pareto(pareto: str | Sequence[str] | None, need_device: bool) -> tuple[str, ...]:
    """``"madds,accuracy"`` -> ``("accuracy", "madds")``: the objective first, then the costs."""
    if pareto is None or pareto == "" or pareto == [] or pareto == ():
        return ()
    names = [p.strip() for p in (pareto.split(",") if isinstance(pareto, str) else pareto)]
    for name in names:
        if name not in PARETO_METRICS:
            raise SearchInputError(
                "pareto", f"unknown metric {name!r} (known: {', '.join(PARETO_METRICS)})"
            )
    if len(names) < 2 or len(set(names)) != len(names):
        raise SearchInputError(
            "pareto",
            f"needs two or more distinct metrics such as accuracy,madds, got {','.join(names)!r}",
        )
    if "accuracy" not in names:
        raise SearchInputError("pareto", "must include accuracy (the objective)")
    names.remove("accuracy")
    if "latency" in names and not need_device:
        raise SearchInputError("pareto", "latency needs {device}")
    return ("accuracy", *names)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SearchConfig:
    """One search: what to explore, under which budgets, scored how, stored where.

    Attributes:
        space: a :class:`SearchSpace` or the path of a search space file.
        budgets: hard limits; a candidate over any of them is never reported.
        objective: ``published``, ``proxy`` or ``train`` (see :data:`ESTIMATORS`).
        objective_options: keyword arguments of the estimator (``train``: ``data``, ``epochs``
            ...).
        pareto: e.g. ``"accuracy,madds"``: a multi-objective search reporting the Pareto front;
            normalized to a tuple with accuracy first.
        trials: trials this call runs (each worker of a shared study runs its own ``trials``);
            None with ``resume``: the trials missing to reach the first call's target.
        seed: seeds the sampler; the same seed and storage give the same trials.
        storage: an RDB URL (``postgresql://...``) or ``journal:PATH``; default a journal file in
            the run directory.
        study_name: default ``<space>-<objective>-<UTC timestamp>``.
        run_dir: default ``runs/<study_name>``.
        device: a device name for latency (``budgets.latency_ms``, ``pareto`` with latency).
        device_options: ``host``, ``port``, ``key``, ``tracker`` for ``load_device``.
        latency: how a candidate's latency is found: ``model`` (the device's latency model,
            ``archkit latency build``: microseconds, no device; the winners are measured at the
            end), ``measure`` (compile and time every candidate on the device) or ``auto``
            (the model when one exists for the device and runtime, else measure).
        latency_runtime: the runtime of the latency model (``tvm`` or ``onnxruntime``).
        verify: with a latency model, how many winners are measured at the end.
        memory_dtype, memory_schedule: how peak activation memory is counted.
        top: how many best results a single-objective run reports.
        worker: a number distinct per concurrent worker (offsets its sampler seed).
        timeout_s: stop starting trials after this many seconds.
        command: the command line, recorded in run.json.
        resume: continue the study recorded in ``run_dir``.

    Raises:
        SearchInputError: a field is out of range (checked when the config is made).
    """

    space: SearchSpace | str | Path
    budgets: Budgets = field(default_factory=Budgets)
    objective: str = "published"
    objective_options: dict[str, Any] = field(default_factory=dict)
    pareto: str | Sequence[str] | None = None
    trials: int | None = DEFAULT_TRIALS
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    run_dir: str | Path | None = None
    device: str | None = None
    device_options: dict[str, Any] = field(default_factory=dict)
    latency: str = "auto"
    latency_runtime: str = "tvm"
    verify: int = 3
    memory_dtype: str = "fp32"
    memory_schedule: str = "naive"
    top: int = 10
    worker: int = 0
    timeout_s: float | None = None
    command: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize once, here
        set_(self, "budgets", self.budgets or Budgets())
        set_(self, "objective_options", dict(self.objective_options or {}))
        set_(self, "device_options", dict(self.device_options or {}))
        if self.trials is None and not self.resume:
            set_(self, "trials", DEFAULT_TRIALS)
        if self.trials is not None and (not _whole(self.trials) or self.trials < 0):
            raise SearchInputError("trials", f"must be a whole number >= 0, got {self.trials!r}")
        if not _whole(self.seed) or not 0 <= self.seed < 2**31:
            raise SearchInputError(
                "seed", f"must be a whole number in 0..2^31-1, got {self.seed!r}"
            )
        if self.memory_dtype not in DTYPE_BYTES:
            raise SearchInputError(
                "memory_dtype",
                f"must be one of {', '.join(DTYPE_BYTES)}, got {self.memory_dtype!r}",
            )
        if self.memory_schedule not in SCHEDULES:
            raise SearchInputError(
                "memory_schedule",
                f"must be one of {', '.join(SCHEDULES)}, got {self.memory_schedule!r}",
            )
        if self.latency not in LATENCY_SOURCES:
            raise SearchInputError(
                "latency", f"must be one of {', '.join(LATENCY_SOURCES)}, got {self.latency!r}"
            )
        if self.latency_runtime not in ("tvm", "onnxruntime"):
            raise SearchInputError(
                "latency_runtime", f"must be tvm or onnxruntime, got {self.latency_runtime!r}"
            )
        if not _whole(self.verify) or self.verify < 0:
            raise SearchInputError("verify", f"must be a whole number >= 0, got {self.verify!r}")
        if self.budgets.latency_ms is not None and self.device is None:
            raise SearchInputError("budgets.latency_ms", "needs {device} (e.g. {device} rpi4)")
        set_(self, "pareto", parse_pareto(self.pareto, self.device is not None))

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)
