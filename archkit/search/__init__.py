"""Search: the best network a budget affords (Optuna studies over search spaces).

``run_search`` explores a :class:`SearchSpace` (width, resolution, expansion ratio, repeats) under
hard :class:`Budgets` (MAdds, parameters, peak activation memory, device latency) with a pluggable
accuracy estimator (:data:`ESTIMATORS`: ``published``, ``proxy``, ``train``), and writes a run
directory that :func:`load_run` reads back. Importing this package does not import optuna or
torch; they are imported when a search runs.
"""

from archkit.search._budget import Budgets, parse_count, parse_latency, parse_memory
from archkit.search._errors import SearchInputError, SearchSpaceError, StorageError
from archkit.search._estimators import (
    ESTIMATORS,
    Estimate,
    Estimator,
    make_estimator,
    published_calibration,
)
from archkit.search._results import BEST_COLUMNS, TRIAL_COLUMNS, load_run, pareto_mask
from archkit.search._run import PARETO_METRICS, Progress, SearchResult, resume_search, run_search
from archkit.search._space import Range, SearchSpace, Stage, load_search_space, parse_search_space
from archkit.search._specio import dump_spec

__all__ = [
    "BEST_COLUMNS",
    "Budgets",
    "ESTIMATORS",
    "Estimate",
    "Estimator",
    "PARETO_METRICS",
    "Progress",
    "Range",
    "SearchInputError",
    "SearchResult",
    "SearchSpace",
    "SearchSpaceError",
    "Stage",
    "StorageError",
    "TRIAL_COLUMNS",
    "dump_spec",
    "load_run",
    "load_search_space",
    "make_estimator",
    "pareto_mask",
    "parse_count",
    "parse_latency",
    "parse_memory",
    "parse_search_space",
    "published_calibration",
    "resume_search",
    "run_search",
]
