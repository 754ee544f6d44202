"""Budgets: hard limits a reported candidate must meet, parsed from strings with units.

Units (case-sensitive where case matters):

- MAdds and parameters are counts: ``150M`` = 150e6, ``1.5G`` = 1.5e9, ``300K`` = 300e3; a bare
  number is an exact count.
- Memory (peak activations) is bytes and needs a unit: ``B``, ``KB`` = 1000 B, ``MB`` = 1e6 B,
  ``GB`` = 1e9 B, and ``KiB``/``MiB``/``GiB`` for powers of 1024. KB is 1000 bytes because that is
  how the paper's Table 3 counts "Kb": MobileNetV2's 16 x 112 x 112 fp16 tensor (401,408 bytes)
  is listed as 400K and MobileNetV1's 64 x 112 x 112 one (1,605,632 bytes) as 1600K.
- Latency needs a unit: ``ms``, ``s`` or ``us``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from archkit.search._errors import SearchInputError

__all__ = [
    "Budgets",
    "parse_count",
    "parse_memory",
    "parse_latency",
    "format_count",
    "format_bytes",
]

_COUNT_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MEMORY_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}
_LATENCY_UNITS = {"MS": 1.0, "S": 1000.0, "US": 1e-3}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class Budgets:
    """Hard limits; ``None`` means no limit on that quantity.

    Attributes:
        madds: multiply-adds per image.
        params: parameters (PyTorch convention: BatchNorm weight and bias included).
        peak_activation_bytes: peak activation memory under ``memory_dtype`` and
            ``memory_schedule`` (see :meth:`archkit.cost.Costs.peak_activation_bytes`).
        latency_ms: median device latency (measured, so checked after the analytic budgets).
    """

    madds: int | None = None
    params: int | None = None
    peak_activation_bytes: int | None = None
    latency_ms: float | None = None

    @property
    def analytic(self) -> dict[str, float]:
        """The budgets checked from the spec alone (no model is built)."""
        out = {
            "madds": self.madds,
            "params": self.params,
            "peak_activation_bytes": self.peak_activation_bytes,
        }
        return {k: v for k, v in out.items() if v is not None}

    def as_dict(self) -> dict[str, float | None]:
        return {
            "madds": self.madds,
            "params": self.params,
            "peak_activation_bytes": self.peak_activation_bytes,
            "latency_ms": self.latency_ms,
        }

    def __bool__(self) -> bool:
        return any(v is not None for v in self.as_dict().values())

    @classmethod
    def parse(
        cls,
        *,
        madds: str | None = None,
        params: str | None = None,
        memory: str | None = None,
        latency: str | None = None,
    ) -> Budgets:
        """Parse budget strings with units (``"150M"``, ``"512KB"``, ``"30ms"``); each error names
        its field (``budgets.madds`` ...)."""
        return cls(
            madds=None if madds is None else parse_count(madds, "budgets.madds"),
            params=None if params is None else parse_count(params, "budgets.params"),
            peak_activation_bytes=None
            if memory is None
            else parse_memory(memory, "budgets.peak_activation_bytes"),
            latency_ms=None if latency is None else parse_latency(latency, "budgets.latency_ms"),
        )


def _split(text: str | float | int, option: str) -> tuple[float, str]:
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = _NUMBER.match(str(text))
        if not match:
            raise SearchInputError(
                option, f"expected a number with a unit such as 150M, got {text!r}"
            )
        value, unit = float(match.group(1)), match.group(2)
    if not math.isfinite(value):
        raise SearchInputError(option, f"must be a finite number, got {text!r}")
    if value <= 0:
        raise SearchInputError(option, f"must be positive, got {text!r}")
    return value, unit


def parse_count(text: str | int, option: str = "budgets.madds") -> int:
    """``150M`` -> 150_000_000. Units K, M, G, T (powers of 1000); none = an exact count."""
    value, unit = _split(text, option)
    if unit.upper() not in _COUNT_UNITS or (unit and unit != unit.upper() and unit != "k"):
        raise SearchInputError(
            option, f"unknown unit {unit!r} in {text!r} (use K, M, G or T, e.g. 150M)"
        )
    return int(round(value * _COUNT_UNITS[unit.upper()]))


def parse_memory(text: str | int, option: str = "budgets.peak_activation_bytes") -> int:
    """``512KB`` -> 512_000 bytes, ``1.5MB`` -> 1_500_000, ``512KiB`` -> 524_288."""
    value, unit = _split(text, option)
    if not unit:
        raise SearchInputError(option, f"needs a unit (B, KB, MB, GB, KiB, MiB, GiB), got {text!r}")
    if unit.upper() not in _MEMORY_UNITS:
        raise SearchInputError(
            option,
            f"unknown unit {unit!r} in {text!r} (use B, KB = 1000 B, "
            f"MB, GB, or KiB = 1024 B, MiB, GiB)",
        )
    return int(round(value * _MEMORY_UNITS[unit.upper()]))


def parse_latency(text: str | float, option: str = "budgets.latency_ms") -> float:
    """``30ms`` -> 30.0 (milliseconds); ``0.03s`` -> 30.0; ``500us`` -> 0.5."""
    value, unit = _split(text, option)
    if not unit:
        raise SearchInputError(option, f"needs a unit (ms, s or us), got {text!r}")
    if unit.upper() not in _LATENCY_UNITS:
        raise SearchInputError(option, f"unknown unit {unit!r} in {text!r} (use ms, s or us)")
    return value * _LATENCY_UNITS[unit.upper()]


def format_count(value: float | None) -> str:
    """150_000_000 -> '150.00M'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:g}"


def format_bytes(value: float | None) -> str:
    """512_000 -> '512.0KB' (KB = 1000 bytes, as the budgets)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:g}B"
