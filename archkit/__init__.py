"""archkit: hardware-aware neural architecture design.

The data flow follows the folder names: ``spec -> ops -> build -> cost -> device -> search ->
report``. Importing archkit imports neither torch, tvm, optuna nor plotly, and none of its own
layers above ``spec`` until they are used.
"""

from typing import Any

from archkit.errors import ArchkitError, BudgetError, SpecError
from archkit.spec import Spec

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

#: Validated loading decodes (``archkit.spec``) and lowers (``archkit.ops``): it lives in ops.
_VALIDATED = ("apply_overrides", "load_spec", "parse_spec")


def __getattr__(name: str) -> Any:
    if name in _VALIDATED:
        from archkit.ops import _validate

        return getattr(_validate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
