"""Errors of the search layer. All are :class:`~archkit.errors.ArchkitError` (exit status 2)
except :class:`SearchBudgetError` (no candidate meets the budgets: exit status 1).

Errors name the library's arguments (``budgets.madds``, ``run_dir``); a message that mentions
another argument writes it as ``{name}``. :meth:`ArgumentError.renamed` renders the same error
with other names, which is how the CLI shows its own flags (``--budget-madds``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from archkit.errors import ArchkitError, BudgetError, SpecError

__all__ = [
    "ArgumentError",
    "RunDirError",
    "SearchBudgetError",
    "SearchInputError",
    "SearchSpaceError",
    "StorageError",
]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")


def _render(template: str, names: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: names.get(m[1], m[1]), template)


class SearchSpaceError(SpecError):
    """A search space file is unreadable or names bad ranges (same message shape as specs)."""


class ArgumentError(ArchkitError):
    """A bad argument, named in the message (``option: reason``)."""

    def __init__(self, option: str, message: str, names: Mapping[str, str] | None = None) -> None:
        self.option = option
        self.template = message
        self.reason = _render(message, names or {})
        super().__init__(f"{(names or {}).get(option, option)}: {self.reason}")

    def renamed(self, names: Mapping[str, str]) -> ArgumentError:
        """The same error, naming each argument as ``names`` maps it (CLI flags)."""
        return type(self)(self.option, self.template, names)


class SearchInputError(ArgumentError):
    """A bad argument value (a budget, an objective, a run directory), named in the message."""


class StorageError(ArgumentError):
    """The study storage cannot be opened or reached."""

    def __init__(self, message: str, names: Mapping[str, str] | None = None) -> None:
        super().__init__("storage", message, names)

    def renamed(self, names: Mapping[str, str]) -> StorageError:
        return StorageError(self.template, names)


class RunDirError(ArchkitError):
    """A run directory holds no run, or a file of it is malformed."""


class SearchBudgetError(BudgetError):
    """No candidate meets the budgets; the message names each budget as ``{budgets.<field>}``."""

    def __init__(self, message: str, names: Mapping[str, str] | None = None) -> None:
        self.template = message
        super().__init__(_render(message, names or {}))

    def renamed(self, names: Mapping[str, str]) -> SearchBudgetError:
        return SearchBudgetError(self.template, names)
