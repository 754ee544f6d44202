"""Errors of the device-latency part (``archkit.device``)."""

from __future__ import annotations

from archkit.errors import ArchkitError, FileFormatError

__all__ = ["DeviceError", "MeasurementError"]


class DeviceError(FileFormatError):
    """A device profile is invalid, or the device cannot be reached or used.

    The message names the file and the field for a bad profile (like a bad spec), and says how
    to start a TVM RPC server on the board and point archkit at it when the board cannot be
    reached.
    """


class MeasurementError(ArchkitError):
    """One measurement failed: outputs differ from PyTorch, or the board went away mid-run.

    Attributes:
        job: Name of the measured network (the first item of a ``measure_many`` job), if any.
        stage: What was running when it failed (``compile``, ``connect``, ``upload``,
            ``check``, ``timing``, ``tune``).
    """

    def __init__(self, message: str, *, job: str | None = None, stage: str | None = None):
        self.job = job
        self.stage = stage
        self.reason = message
        prefix = f"{job}: " if job else ""
        super().__init__(f"{prefix}{message}")

    def to_dict(self) -> dict:
        """JSON-able form, used beside successful results in tables and reports."""
        return {"name": self.job, "error": self.reason, "stage": self.stage}
