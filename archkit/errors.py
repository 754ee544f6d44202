"""Domain errors. The CLI maps them to exit codes in one place (``archkit.cli.main``)."""

from __future__ import annotations

__all__ = ["ArchkitError", "SpecError", "BudgetError", "JobFailed"]


class ArchkitError(Exception):
    """Base class of every error a user can act on (exit status 2 unless stated)."""

    exit_code = 2


class SpecError(ArchkitError):
    """A spec (or an override of it) is not a valid network.

    The message names the file, the row (index and operator) and the field, says what must hold
    and what was found, e.g. ``specs/x.yaml: row 3 (bottleneck): s: stride must be 1 or 2, got 3``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        op: str | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.op = op
        self.field = field
        self.reason = message
        where = [source or "<spec>"]
        if row is not None:
            where.append(f"row {row}" + (f" ({op})" if op else ""))
        if field is not None:
            where.append(field)
        super().__init__(": ".join([*where, message]))


class BudgetError(ArchkitError):
    """The job ran and found nothing that meets the budget (exit status 1)."""

    exit_code = 1


class JobFailed(ArchkitError):
    """The job ran and part of it failed, e.g. a latency measurement (exit status 1)."""

    exit_code = 1
