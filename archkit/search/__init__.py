"""Search: the best network a budget affords (Optuna studies over search spaces).

:func:`search` runs one :class:`SearchConfig`: it explores a :class:`SearchSpace` (width,
resolution, expansion ratio, repeats) under hard :class:`Budgets` (MAdds, parameters, peak
activation memory, device latency) with a pluggable accuracy estimator (:data:`ESTIMATORS`:
``published``, ``proxy``, ``train``), and writes a run directory that :func:`load_run` reads back.
:data:`METRICS` names every metric once. Importing this package does not import optuna or torch;
they are imported when a search runs.
"""

from archkit.search._budget import Budgets, parse_count, parse_latency, parse_memory
from archkit.search._config import SearchConfig
from archkit.search._errors import (
    ArgumentError,
    RunDirError,
    SearchBudgetError,
    SearchInputError,
    SearchSpaceError,
    StorageError,
)
from archkit.search._estimators import (
    ESTIMATORS,
    Estimate,
    Estimator,
    make_estimator,
    published_calibration,
)
from archkit.search._metrics import METRICS, PARETO_METRICS, PLOT_METRICS, Metric
from archkit.search._pareto import pareto_front
from archkit.search._results import Progress, SearchResult, pareto_mask
from archkit.search._run import resume_config, resume_search, run_search, search
from archkit.search._rundir import (
    BEST_COLUMNS,
    TRIAL_COLUMNS,
    load_run,
    read_run_info,
    records,
    winner_names,
    winner_ranks,
)
from archkit.search._sample import DRAWS, Candidate, random_candidates
from archkit.search._space import (
    Range,
    SearchSpace,
    Stage,
    load_search_space,
    parse_search_space,
    resolve_space,
)

__all__ = [
    "ArgumentError",
    "BEST_COLUMNS",
    "Budgets",
    "Candidate",
    "DRAWS",
    "ESTIMATORS",
    "Estimate",
    "Estimator",
    "METRICS",
    "Metric",
    "PARETO_METRICS",
    "PLOT_METRICS",
    "Progress",
    "Range",
    "RunDirError",
    "SearchBudgetError",
    "SearchConfig",
    "SearchInputError",
    "SearchResult",
    "SearchSpace",
    "SearchSpaceError",
    "Stage",
    "StorageError",
    "TRIAL_COLUMNS",
    "load_run",
    "load_search_space",
    "make_estimator",
    "pareto_front",
    "pareto_mask",
    "parse_count",
    "parse_latency",
    "parse_memory",
    "parse_search_space",
    "published_calibration",
    "random_candidates",
    "read_run_info",
    "records",
    "resolve_space",
    "resume_config",
    "resume_search",
    "run_search",
    "search",
    "winner_names",
    "winner_ranks",
]
