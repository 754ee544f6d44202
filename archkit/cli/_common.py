"""Options and helpers shared by the subcommands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from archkit.spec import Spec, apply_overrides, load_spec

__all__ = ["override_options", "load_with_overrides", "human"]


def override_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--width``, ``--resolution`` and ``--expansion``: variants without editing the file."""
    func = click.option(
        "--expansion", type=float, default=None,
        help="Replace every bottleneck expansion ratio t > 1.",
    )(func)
    func = click.option("--resolution", type=int, default=None, help="Input resolution.")(func)
    func = click.option("--width", type=float, default=None, help="Width multiplier.")(func)
    return func


def load_with_overrides(
    path: str, width: float | None, resolution: int | None, expansion: float | None
) -> Spec:
    return apply_overrides(load_spec(path), width=width, resolution=resolution,
                           expansion=expansion)


def human(value: float, unit: str = "") -> str:
    """``300774272`` -> ``300.77M``."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}{unit}"
    return f"{value:g}{unit}"
