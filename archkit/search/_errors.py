"""Errors of the search layer. All are :class:`~archkit.errors.ArchkitError` (exit status 2)
except :class:`~archkit.errors.BudgetError` (no candidate meets the budgets: exit status 1)."""

from __future__ import annotations

from archkit.errors import ArchkitError, SpecError

__all__ = ["SearchSpaceError", "SearchInputError", "StorageError"]


class SearchSpaceError(SpecError):
    """A search space file is unreadable or names bad ranges (same message shape as specs)."""


class SearchInputError(ArchkitError):
    """A bad option value (a budget, an objective, a run directory), named in the message."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"{option}: {message}")


class StorageError(ArchkitError):
    """The study storage cannot be opened or reached."""
