"""archkit: hardware-aware neural architecture design.

The data flow follows the folder names: ``spec -> ops -> build -> cost -> device -> search ->
report``. Importing archkit imports neither torch, tvm, optuna nor plotly.
"""

from archkit.errors import ArchkitError, BudgetError, SpecError
from archkit.spec import Spec, apply_overrides, load_spec, parse_spec

__version__ = "0.1.0"

__all__ = [
    "ArchkitError",
    "BudgetError",
    "Spec",
    "SpecError",
    "apply_overrides",
    "load_spec",
    "parse_spec",
]
