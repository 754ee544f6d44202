"""The Pareto front: Optuna's own non-dominated sort, for trials and plot points alike."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pareto_front"]


def pareto_front(values: object, directions: Sequence[str]) -> np.ndarray:
    """True for the points no other point dominates.

    A point dominates another when it is at least as good on every objective and better on one
    (Optuna's definition, ``Study.best_trials``); identical points are all on the front. A point
    with a NaN objective is never on the front.

    Args:
        values: an (n, k) array of objective values (a DataFrame of k columns will do).
        directions: k of ``"minimize"`` / ``"maximize"``.
    """
    # Optuna's study code sorts trials with this function; it has no public array form.
    from optuna.study._multi_objective import _is_pareto_front

    points = np.asarray(values, dtype=float).reshape(-1, len(directions))
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    valid = ~np.isnan(points).any(axis=1)
    mask = np.zeros(len(points), dtype=bool)
    if valid.any():
        mask[valid] = _is_pareto_front(points[valid] * signs, assume_unique_lexsorted=False)
    return mask
