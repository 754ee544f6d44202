"""Optional dependencies: which extra installs each one, and one message when it is missing.

archkit's core (specs, analytic costs, the CLI) needs only pyyaml, click, rich, pandas and numpy.
Everything heavier is imported lazily where it is used and belongs to an extra of
``pyproject.toml``. Like Optuna's ``optuna/_imports.py``, :func:`try_import` turns a missing
module into an error that says what to install; :func:`missing_dependency` does the same for a
``ModuleNotFoundError`` raised anywhere below the CLI, which is how ``archkit.cli.main`` reports
it (one line, exit status 2) without every import site having to wrap itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from archkit.errors import ArchkitError

__all__ = ["EXTRAS", "MissingDependency", "missing_dependency", "try_import"]

#: Top-level module -> the extra of ``pyproject.toml`` that installs it.
EXTRAS: dict[str, str] = {
    "torch": "torch",
    "onnx": "torch",
    "onnxruntime": "torch",
    "onnxscript": "torch",
    "tvm": "tvm",
    "tvm_ffi": "tvm",
    "psutil": "tvm",
    "xgboost": "tvm",
    "tornado": "tvm",
    "cloudpickle": "tvm",
    "optuna": "search",
    "sqlalchemy": "search",
    "psycopg2": "search",
    "PIL": "search",
    "plotly": "report",
    "kaleido": "report",
}

class MissingDependency(ArchkitError):
    """An optional dependency is not installed (exit status 2: install the extra, run again)."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this needs {module}, which is not installed: pip install 'archkit[{extra}]' "
            "(or 'archkit[all]')"
        )


def missing_dependency(exc: BaseException) -> MissingDependency | None:
    """The :class:`MissingDependency` an ``ImportError`` means, or None when the missing module
    is not an optional dependency (then it is a bug and keeps its traceback)."""
    name = getattr(exc, "name", None)
    if not isinstance(exc, ModuleNotFoundError) or not name:
        return None
    top = name.split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    # The package is there but lacks a submodule: another version, not a missing extra.
    if top != name and importlib.util.find_spec(top) is not None:
        return None
    return MissingDependency(top, extra)


@contextlib.contextmanager
def try_import() -> Iterator[None]:
    """Import optional modules inside ``with try_import():``; a missing one raises
    :class:`MissingDependency` naming the extra to install.

    Example::

        with try_import():
            import optuna
    """
    try:
        yield
    except ImportError as exc:
        missing = missing_dependency(exc)
        if missing is None:
            raise
        raise missing from None
