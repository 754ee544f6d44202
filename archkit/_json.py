"""The JSON form of archkit's results: one encoder and one table-to-records rule for every writer
(the CLI's ``--format json``, the run directory's run.json)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["json_default", "records"]


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy/pandas scalars and paths; anything else is a bug."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with None for missing values (the JSON form of a table)."""
    return [
        {k: None if _missing(v) else _plain(v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _missing(value: Any) -> bool:
    import pandas as pd

    try:
        return value is pd.NA or value is None or (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False
