"""Contract checks every accuracy estimator must pass (Optuna's ``optuna/testing`` pattern).

A new ``--objective`` registers in :data:`archkit.search.ESTIMATORS` and runs::

    from archkit.search.testing import check_estimator
    check_estimator(MyEstimator(...), space)

The checks need no pytest; they raise AssertionError with a message saying what broke.
"""

from __future__ import annotations

import math

from archkit.cost import count
from archkit.search._estimators import Estimate, Estimator
from archkit.search._space import SearchSpace

__all__ = ["check_estimator"]


def check_estimator(estimator: Estimator, space: SearchSpace, *, repeat: bool = True) -> None:
    """Check ``estimator`` on the cheapest and the most expensive candidate of ``space``.

    What must hold: it has a registered-looking name and a label; ``prepare`` returns a search
    space whose candidates are valid specs; ``estimate`` returns an :class:`Estimate` with a
    finite float value, ``calibrated`` True/False/None and a note exactly when extrapolating;
    the same candidate scores the same twice (estimators are deterministic); ``describe`` returns
    a JSON-able dict that names the estimator.
    """
    import json

    assert estimator.name and isinstance(estimator.name, str), "estimator needs a name"
    assert estimator.label, f"{estimator.name}: needs a label for tables"
    prepared = estimator.prepare(space)
    assert isinstance(prepared, SearchSpace), f"{estimator.name}: prepare must return a space"
    low = prepared.smallest()
    high = {r.name: r.extremes[1] for r in prepared.ranges}
    for params in (low, high):
        spec = prepared.candidate(params)
        result = estimator.estimate(spec, count(spec))
        assert isinstance(result, Estimate), f"{estimator.name}: estimate must return Estimate"
        assert isinstance(result.value, float), f"{estimator.name}: value must be a float"
        assert math.isfinite(result.value), f"{estimator.name}: value {result.value} not finite"
        assert result.calibrated in (True, False, None), f"{estimator.name}: calibrated"
        assert bool(result.note) == (result.calibrated is False), (
            f"{estimator.name}: a note exactly when extrapolating, got {result}"
        )
        if repeat:
            again = estimator.estimate(spec, count(spec))
            assert again.value == result.value, (
                f"{estimator.name}: not deterministic ({result.value} then {again.value})"
            )
    described = estimator.describe()
    assert described.get("name") == estimator.name, f"{estimator.name}: describe() name"
    json.dumps(described)
