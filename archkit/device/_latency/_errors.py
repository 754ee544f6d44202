"""The latency model's error."""

from __future__ import annotations

from archkit.errors import ArchkitError

__all__ = ["LatencyModelError"]


class LatencyModelError(ArchkitError):
    """No usable latency model: none built, built under other conditions, or asked about a
    kernel it never measured. The message says what differs and the command that rebuilds it."""
