"""Domain errors and warnings. The CLI maps errors to exit codes, and shows warnings as one
``archkit: warning:`` line each, in one place (``archkit.cli.main``)."""

from __future__ import annotations

__all__ = [
    "ArchkitError",
    "ArchkitWarning",
    "BudgetError",
    "FileFormatError",
    "JobFailed",
    "SpecError",
    "SpecWarning",
]


class ArchkitError(Exception):
    """Base class of every error a user can act on (exit status 2 unless stated)."""

    exit_code = 2


class FileFormatError(ArchkitError):
    """A mistake in one of archkit's YAML files (a spec, a search space, a device profile).

    The message names the file, the row (index and operator) where the format has rows, and the
    field; it says what must hold and what was found, e.g.
    ``specs/x.yaml: row 3 (bottleneck): s: must be one of 1, 2, got 3``. The parts are kept as
    attributes (``source``, ``row``, ``op``, ``field``, ``reason``) for programs.
    """

    #: What the message names when it has no file (``None``: nothing).
    unnamed_source: str | None = None

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
        where = [source or self.unnamed_source]
        if row is not None:
            where.append(f"row {row}" + (f" ({op})" if op else ""))
        where.append(field)
        super().__init__(": ".join([part for part in where if part] + [message]))


class SpecError(FileFormatError):
    """A spec (or an override of it) is not a valid network.

    The message names the file, the row (index and operator) and the field, says what must hold
    and what was found, e.g. ``specs/x.yaml: row 3 (bottleneck): s: stride must be 1 or 2, got 3``.
    """

    unnamed_source = "<spec>"


class BudgetError(ArchkitError):
    """The job ran and found nothing that meets the budget (exit status 1)."""

    exit_code = 1


class JobFailed(ArchkitError):
    """The job ran and part of it failed, e.g. a latency measurement (exit status 1)."""

    exit_code = 1


class ArchkitWarning(UserWarning):
    """Base class of archkit's warnings: the input is valid, but probably not what was meant."""


class SpecWarning(ArchkitWarning):
    """A valid spec that is probably a mistake, e.g. a feature map that collapses to 1x1 long
    before the head (``archkit.ops._validate.collapse_warning``, docs/spec.md)."""
