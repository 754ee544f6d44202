"""Options and helpers shared by the subcommands: one definition of each option that several
commands take, so the same thing has the same name everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from archkit.cost import DTYPE_BYTES, SCHEDULES
from archkit.errors import SpecError
from archkit.spec import Spec

__all__ = [
    "board_options",
    "human",
    "load_with_overrides",
    "memory_options",
    "output_dir_option",
    "override_options",
    "png_option",
    "spec_file",
    "specs_dir_option",
    "warn",
]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def override_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--width``, ``--resolution`` and ``--expansion``: variants without editing the file."""
    func = click.option(
        "--expansion", type=float, default=None,
        help="Replace every bottleneck expansion ratio t > 1 (an error on a spec without one).",
    )(func)
    func = click.option("--resolution", type=int, default=None, help="Input resolution.")(func)
    func = click.option("--width", type=float, default=None, help="Width multiplier.")(func)
    return func


def memory_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--dtype`` and ``--schedule``: how peak activation memory is counted (``--memory-dtype``
    and ``--memory-schedule`` are the same options, the names ``archkit search`` uses)."""
    func = click.option(
        "--schedule", "--memory-schedule", "schedule", type=click.Choice(SCHEDULES),
        default="naive", show_default=True,
        help="Peak activation memory: naive (every tensor materialized) or fused (Section 5.1).",
    )(func)
    func = click.option(
        "--dtype", "--memory-dtype", "dtype", type=click.Choice(list(DTYPE_BYTES)),
        default="fp32", show_default=True, help="Element type for activation memory.",
    )(func)
    return func


def board_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--host``, ``--port``, ``--key``, ``--tracker``, ``--ssh``: where the device's board is,
    over what the device file says (``archkit profile --device``, ``archkit latency build``)."""
    for option in reversed((
        click.option("--host", default=None,
                     help="RPC server host of the device (overrides the file)."),
        click.option("--port", type=int, default=None, help="RPC server or tracker port."),
        click.option("--key", default=None, help="Tracker device key."),
        click.option("--tracker", default=None, help="Tracker as HOST:PORT (device farm)."),
        click.option("--ssh", default=None,
                     help="Reach the board's RPC server through an SSH tunnel to USER@BOARD "
                          "(--host/--port: the server's address on the board, default "
                          "127.0.0.1:9090)."),
    )):
        func = option(func)
    return func


png_option: Decorator = click.option(
    "--png/--no-png", default=True, show_default=True,
    help="Also write the static PNG (needs Chromium: scripts/chromium.sh).",
)


def output_dir_option(default: str) -> Decorator:
    """``-o/--output-dir DIR``: every command that writes files writes them into a folder."""
    return click.option(
        "-o", "--output-dir", type=click.Path(file_okay=False), default=default,
        show_default=True, help="Folder to write into (created if missing).",
    )


specs_dir_option: Decorator = click.option(
    "--specs-dir", type=click.Path(file_okay=False), default=None,
    help="Where the family specs (mobilenetv1/v2.yaml, shufflenet_g3.yaml) live "
    "[default: the shipped ones].",
)


def spec_file(value: str | Path) -> Path:
    """The spec file a command-line argument names: a path, or the name of a shipped spec
    (``mobilenetv2``: ``./specs/mobilenetv2.yaml``, else the one archkit ships).

    Raises:
        SpecError: a bare name that is neither a file nor a shipped spec.
    """
    from archkit._data import resolve, shipped_names

    path = resolve("specs", value)
    if path is None:
        raise SpecError(
            f"no spec file or shipped spec named {str(value)!r} (shipped: "
            f"{', '.join(shipped_names('specs'))})",
            source=str(value),
        )
    return path


def load_with_overrides(
    path: str | Path,
    width: float | None,
    resolution: int | None,
    expansion: float | None,
    *,
    strict: bool = True,
) -> Spec:
    """Load a spec (a path or a shipped name) and apply the overrides.

    ``expansion`` on a network with no bottleneck expansion to replace would change nothing:
    an error when ``strict`` (one spec), else a warning (one of several specs).

    Raises:
        SpecError: the file is invalid, an override is, or the expansion has nothing to change.
    """
    from archkit import apply_overrides, load_spec

    spec = load_spec(spec_file(path))
    if expansion is not None and not any(row.has_expansion for row in spec.rows):
        reason = "this network has no bottleneck with an expansion ratio t > 1 to replace"
        if strict:
            raise SpecError(f"{reason}, so it would change nothing", source=spec.source,
                            field="--expansion")
        warn(f"{spec.source}: --expansion: {reason}; counted as written")
    return apply_overrides(spec, width=width, resolution=resolution, expansion=expansion)


def warn(message: str) -> None:
    """One line on stderr for an option that has no effect in this call."""
    click.echo(f"archkit: warning: {message}", err=True)


def human(value: float, unit: str = "") -> str:
    """``300774272`` -> ``300.77M``."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}{unit}"
    return f"{value:g}{unit}"
