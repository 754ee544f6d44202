"""``archkit latency build|list|evaluate``: latency models built on the user's own device.

Parses, calls :mod:`archkit.device` (measuring, fitting, predicting) and
:func:`archkit.search.random_candidates` (the networks), renders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from archkit.cli._common import board_options
from archkit.device import RUNTIMES

__all__ = ["DEFAULT_SPACES", "command"]

#: The spaces a model is built from and evaluated on unless --space says otherwise.
DEFAULT_SPACES = ("mobilenetv2_stages", "mobilenetv2", "mobilenetv1")


def _spaces(values: tuple[str, ...]) -> list[Any]:
    from archkit.search import resolve_space

    return [resolve_space(v)[0] for v in (values or DEFAULT_SPACES)]


def _console():
    from rich.console import Console

    return Console(stderr=True)


@click.group("latency")
def command() -> None:
    """Latency models: measure networks on a device once, then predict any network of the
    search spaces in microseconds (archkit profile --predict, archkit search --device)."""


_runtime_option = click.option(
    "--runtime", type=click.Choice(RUNTIMES), default="onnxruntime", show_default=True,
    help="onnxruntime (in-process on this machine, or `archkit serve` on a board) or tvm "
         "(compiled as archkit profile --device compiles, with the device's tuning records "
         "where it has them; each group's libraries on every core before it is timed: see "
         "--compile-jobs).",
)


def _set_compile_jobs(ctx: click.Context, param: click.Parameter, jobs: int | None) -> None:
    # The library reads ARCHKIT_COMPILE_JOBS where it compiles (archkit.device._latency
    # ._compiling.compile_jobs); the option sets it for this command's process.
    if jobs is not None:
        os.environ["ARCHKIT_COMPILE_JOBS"] = str(jobs)


_compile_jobs_option = click.option(
    "--compile-jobs", type=click.IntRange(min=1), default=None, expose_value=False,
    callback=_set_compile_jobs, envvar="ARCHKIT_COMPILE_JOBS", show_envvar=True,
    metavar="N",
    help="TVM: worker processes that compile each group's libraries before it is timed "
         "(default: the cores, at most 8; 1 compiles in the measuring process). Each holds "
         "its own torch and TVM (about 0.75 GiB).",
)


_cache_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False), default=None,
    help="Cache root (default $ARCHKIT_CACHE_DIR or ~/.cache/archkit); models go to "
         "<cache>/latency/.",
)
_space_option = click.option(
    "--space", "spaces", multiple=True, metavar="FILE|NAME",
    help="Search space to draw networks from (repeatable; default: "
         + ", ".join(DEFAULT_SPACES) + ").",
)


@command.command("build")
@click.argument("device")
@_runtime_option
@_space_option
@click.option("--minutes", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
              help="Time budget; measuring stops in time to fit.")
@click.option("--networks", type=click.IntRange(min=1), default=None,
              help="Stop after this many new networks (default: as many as the time allows; "
                   "20 with --from).")
@click.option("--from", "from_device", metavar="DEVICE", default=None,
              help="Adapt DEVICE's model from a few networks measured here (timed end to end "
                   "and profiled, twice: the calmer of each is fitted): its kernel regressors "
                   "are boosted on, the correction refitted.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the network draws.")
# (archkit.search.DRAWS: not imported here, archkit.search imports pandas)
@click.option("--draw", type=click.Choice(("random", "sobol")), default="random",
              show_default=True,
              help="How networks are drawn from the spaces: random (as a search draws them), "
                   "or sobol (a space-filling design: few networks cover every parameter's "
                   "range; measured no better than random when adapting from 20 networks: "
                   "benchmarks/adapt_draws.py).")
@board_options
@_compile_jobs_option
@_cache_option
def build(device: str, runtime: str, spaces: tuple[str, ...], minutes: float,
          networks: int | None, from_device: str | None, seed: int, draw: str,
          host: str | None,
          port: int | None, tracker: str | None, key: str | None, ssh: str | None,
          cache_dir: str | None) -> None:
    """Measure random networks of the spaces on DEVICE and fit its latency model.

    Resumable: every measured network is appended to <cache>/latency/DEVICE-RUNTIME.jsonl as
    it comes; running the command again continues from there and refits on everything. On a
    board (it runs `archkit serve`) the board times and profiles every network; with a
    tracker, every board of the key measures at once.
    """
    from archkit.device import build_latency_model, load_device
    from archkit.search import random_candidates

    if from_device is not None and networks is None:
        networks = 20
    profile = load_device(device, host=host, port=port, key=key, tracker=tracker, ssh=ssh)
    result = build_latency_model(
        profile, random_candidates(_spaces(spaces), seed=seed, draw=draw), runtime=runtime,
        minutes=minutes, networks=networks, from_model=from_device, cache_dir=cache_dir,
    )
    console = _console()
    why = {"networks": "reached --networks", "minutes": "reached the --minutes budget",
           "candidates": "no more candidates",
           "failures": "every network of three groups in a row failed"}[result.stopped_by]
    kernels = f", {result.kernels:,} kernels" if result.kernels else ""
    console.print(
        f"[bold]{result.model.device}/{runtime}[/]: measured {result.new_networks} new networks "
        f"({why}); the model has {result.networks} networks{kernels}, "
        f"{result.minutes:.1f} min of measuring and fitting in all"
    )
    boards = result.model.built.get("boards") or []
    if len(boards) > 1:
        console.print(f"measured on {len(boards)} boards ({', '.join(boards)}); this run took "
                      f"{result.model.built['last_run']['wall_minutes']:.1f} min")
    for name, reason in result.failed:
        console.print(f"[yellow]failed[/] {name}: {reason}")
    passes = result.model.built.get("passes")
    if passes:
        console.print(f"{passes['networks']} of {result.networks} networks measured twice on "
                      f"one board: the first pass / the second, median "
                      f"{passes['median_first_over_second']:.3f}, "
                      f"{passes['within_10pct']:.0%} within +-10%; each fitted on its calmer "
                      "measurement")
    for warning in result.warnings:
        console.print(f"[yellow]warning[/]: {warning}", soft_wrap=True)
    fit = result.stats
    if "out_of_fold_within_10pct" in fit:
        console.print(
            f"fit on its own networks (out of fold): {fit['out_of_fold_within_10pct']:.0%} "
            f"within +-10%, {fit['out_of_fold_within_5pct']:.0%} within +-5%, mean error "
            f"{fit['out_of_fold_mean_error']:.1%}; check it on new networks with: archkit "
            f"latency evaluate {result.model.device} --runtime {runtime} --networks 100"
        )
    adapted = result.model.built.get("adapted_from")
    if adapted:
        console.print(f"adapted from {adapted['device']} (its {adapted['networks']} networks' "
                      f"kernel regressors) with {result.networks} networks measured here "
                      f"({result.kernels} kernels profiled)")
    click.echo(str(result.path))


@command.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@_cache_option
def list_models(fmt: str, cache_dir: str | None) -> None:
    """The stored latency models, one per (device, runtime)."""
    from archkit.device import list_latency_models

    models = list_latency_models(cache_dir)
    if fmt == "json":
        click.echo(json.dumps(models, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="latency models")
    for column in ("device", "runtime", "networks", "kernels", "build min", "from", "version",
                   "threads", "tuning", "created"):
        table.add_column(column)
    for m in models:
        table.add_row(m["device"], m["runtime"], str(m["networks"]), str(m["kernels"]),
                      f"{m['build_minutes']:.1f}" if m["build_minutes"] is not None else "",
                      m["adapted_from"] or "", m["runtime_version"], str(m["threads"]),
                      m["tuning"] or "", m["created"] or "")
    console = Console()
    if models:
        console.print(table)
    else:
        console.print("no latency models yet; build one with: archkit latency build host")


@command.command("evaluate")
@click.argument("device")
@_runtime_option
@_space_option
@click.option("--networks", type=click.IntRange(min=1), required=True,
              help="Held-out networks to measure (never ones the model was built from).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the network draws.")
@click.option("--output-dir", type=click.Path(file_okay=False), default="reports",
              show_default=True, help="Where the CSV and the scatter plot go.")
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier evaluation's files in --output-dir (without it, "
                   "existing ones are refused before anything is measured).")
@click.option("--png/--no-png", default=True, show_default=True,
              help="Also write the scatter plot as PNG (needs Chromium).")
@_compile_jobs_option
@_cache_option
def evaluate(device: str, runtime: str, spaces: tuple[str, ...], networks: int, seed: int,
             output_dir: str, overwrite: bool, png: bool, cache_dir: str | None) -> None:
    """Measure held-out networks twice on DEVICE: prediction error and the noise floor."""
    from archkit.device import evaluate_latency_model, load_device
    from archkit.report import draw_latency_scatter, latency_scatter_data, save
    from archkit.search import random_candidates

    # An evaluation measures for minutes: an earlier one's files are refused up front, not
    # replaced at the end (a reference evaluation in reports/ is easily run over).
    stem = Path(output_dir) / f"latency_{load_device(device).name}_{runtime}"
    earlier = [p for p in (stem.with_suffix(s) for s in (".csv", ".html", ".png"))
               if p.exists()]
    if earlier and not overwrite:
        raise click.UsageError(
            f"{earlier[0]} exists (an earlier evaluation's); nothing was measured. Write "
            "elsewhere with --output-dir DIR, or replace it with --overwrite")
    evaluation = evaluate_latency_model(
        device, random_candidates(_spaces(spaces), seed=seed), networks, runtime=runtime,
        cache_dir=cache_dir,
    )
    summary = evaluation.summary
    stem.parent.mkdir(parents=True, exist_ok=True)
    evaluation.frame().to_csv(stem.with_suffix(".csv"), index=False)
    written = save(draw_latency_scatter(latency_scatter_data(evaluation.rows, summary)), stem,
                   png=png)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['device']}/{runtime}: {summary['networks']} held-out networks")
    for column in ("", "within +-5%", "within +-10%", "mean error", "worst error"):
        table.add_column(column, justify="right")
    for label, key in (("prediction vs measured", "prediction"),
                       ("measured twice (noise floor)", "noise_floor"),
                       ("prediction vs the mean of both", "prediction_vs_mean")):
        s = summary[key]
        table.add_row(label, f"{s['within_5pct']:.1%}", f"{s['within_10pct']:.1%}",
                      f"{s['mean_error']:.1%}", f"{s['worst_error']:.1%}")
    Console().print(table)
    click.echo(f"wrote {stem.with_suffix('.csv')}, " + ", ".join(str(p) for p in written))
