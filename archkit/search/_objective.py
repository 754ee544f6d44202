"""The per-trial objective of a search (Optuna's ask-and-tell).

Each trial draws a candidate, counts it analytically (no model is built) and checks the analytic
budgets. Every budget is fed to Optuna as a constraint (``trial.set_constraint``, Optuna 5), so
the sampler learns where the feasible region is. A candidate over an analytic budget is never
built or scored: the trial ends PRUNED with ``feasible = False``. Only then is latency measured
(if asked) and the objective evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from archkit.cost import count
from archkit.errors import SpecError
from archkit.search._budget import Budgets
from archkit.search._config import SearchConfig
from archkit.search._estimators import Estimator
from archkit.search._latency import LatencyMeter
from archkit.search._metrics import METRICS
from archkit.search._rundir import ATTRS_KEY
from archkit.search._space import SearchSpace
from archkit.search._storage import mask_secrets

__all__ = ["Objective"]


class Objective:
    """The objective of a search, one ask-and-tell trial at a time: draw, count, check the
    budgets, (measure,) score, tell."""

    def __init__(
        self,
        space: SearchSpace,
        config: SearchConfig,
        estimator: Estimator,
        meter: LatencyMeter | None = None,
    ) -> None:
        self.space, self.estimator, self.meter = space, estimator, meter
        self.budgets: Budgets = config.budgets
        self.dtype, self.schedule = config.memory_dtype, config.memory_schedule
        self.pareto_metrics: Sequence[str] = config.pareto
        self.worker = config.worker

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
                record["trial"] = study.tell(trial, state=TrialState.FAIL)
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
                record["trial"] = study.tell(trial, state=TrialState.PRUNED)
                return record
            estimate = self.estimator.estimate(spec, costs)
            attrs.update(
                objective=estimate.value, calibrated=estimate.calibrated, note=estimate.note
            )
            if estimate.calibrated is False:
                # Outside the estimator's calibration: Optuna counts the trial as infeasible,
                # so the sampler learns where estimates can be trusted (it is still recorded,
                # feasible within the budgets, and reported after the calibrated ones).
                trial.set_constraint("calibration", 0.01)
            self._set_attrs(trial, attrs)
            values = [estimate.value]
            for metric in self.pareto_metrics[1:]:
                values.append(float({**metrics, "latency_ms": latency}[METRICS[metric].column]))
            if not all(math.isfinite(v) for v in values):
                trial.set_user_attr(ATTRS_KEY, {**attrs, "error": f"non-finite objective {values}"})
                record["trial"] = study.tell(trial, state=TrialState.FAIL)
                return record
            record["trial"] = study.tell(trial, values if len(values) > 1 else values[0])
            record.update(feasible=True, objective=estimate.value, calibrated=estimate.calibrated)
            return record
        except BaseException as exc:
            # Ctrl-C or a bug mid-trial: end the trial as FAIL so no RUNNING trial is left.
            try:
                error = mask_secrets(f"{type(exc).__name__}: {exc}")[:500]
                trial.set_user_attr("error", error)  # kept apart
                study.tell(trial, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - the trial may already be finished
                pass
            raise

    @staticmethod
    def _set_attrs(trial: Any, attrs: dict[str, Any]) -> None:
        # One user attribute per trial: each write is a storage round trip (a journal line or
        # a database row), and analytic-only searches are bound by them.
        trial.set_user_attr(ATTRS_KEY, attrs)
