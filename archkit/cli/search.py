"""``archkit search``: the best network a budget affords. Parses, calls :mod:`archkit.search`,
renders; the search itself lives in the library."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click

from archkit.cost import DTYPE_BYTES, SCHEDULES
from archkit.search import (
    ESTIMATORS,
    ArgumentError,
    Budgets,
    SearchBudgetError,
    SearchConfig,
    SearchInputError,
    SearchResult,
    records,
    resolve_space,
    resume_config,
    search,
)
from archkit.search._budget import format_bytes, format_count

__all__ = ["command", "FLAGS"]

#: The flag of each library argument an error may name.
FLAGS = {
    "budgets.madds": "--budget-madds",
    "budgets.params": "--budget-params",
    "budgets.peak_activation_bytes": "--budget-memory",
    "budgets.latency_ms": "--budget-latency",
    "device": "--device",
    "latency": "--latency",
    "latency_runtime": "--runtime",
    "verify": "--verify",
    "objective": "--objective",
    "objective_options.data": "--data",
    "pareto": "--pareto",
    "trials": "--trials",
    "seed": "--seed",
    "storage": "--storage",
    "study_name": "--study-name",
    "run_dir": "--run-dir",
    "resume": "--resume",
    "memory_dtype": "--memory-dtype",
    "memory_schedule": "--memory-schedule",
}


@click.command("search")
@click.argument("space", required=False)
@click.option("--budget-madds", metavar="N", help="Max multiply-adds, e.g. 150M, 1.5G.")
@click.option("--budget-params", metavar="N", help="Max parameters, e.g. 2M.")
@click.option(
    "--budget-memory",
    metavar="BYTES",
    help="Max peak activation memory, e.g. 512KB (KB = 1000 B, as the paper's "
    "Table 3), 1.5MB, 512KiB.",
)
@click.option(
    "--budget-latency", metavar="TIME", help="Max median latency, e.g. 30ms (needs --device)."
)
@click.option("--device", metavar="NAME", help="Device for latency (devices/NAME.yaml), e.g. rpi4.")
@click.option("--device-host", metavar="HOST", help="RPC host of the device.")
@click.option("--device-port", type=int, metavar="PORT", help="RPC port of the device.")
@click.option("--device-key", metavar="KEY", help="RPC tracker key of the device.")
@click.option("--device-tracker", metavar="HOST:PORT", help="RPC tracker address.")
@click.option(
    "--latency",
    type=click.Choice(["auto", "model", "measure"]),
    default="auto",
    show_default=True,
    help="model: predict with the device's latency model (archkit latency build) and measure "
    "only the winners; measure: compile and time every candidate; auto: model if one exists.",
)
@click.option(
    "--runtime",
    type=click.Choice(["tvm", "onnxruntime"]),
    default="tvm",
    show_default=True,
    help="Runtime of the latency model.",
)
@click.option(
    "--verify",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="With a latency model: measure this many winners end to end.",
)
@click.option(
    "--objective",
    type=click.Choice(list(ESTIMATORS)),
    default="published",
    show_default=True,
    help="Accuracy estimator.",
)
@click.option("--data", type=click.Path(), help="ImageFolder for --objective train.")
@click.option(
    "--epochs",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Training epochs per candidate (--objective train).",
)
@click.option(
    "--max-images", type=click.IntRange(1), help="Cap on images per split (--objective train)."
)
@click.option(
    "--pareto",
    metavar="METRICS",
    help="Multi-objective search, e.g. accuracy,madds (or params, memory, latency).",
)
@click.option(
    "--trials",
    type=click.IntRange(0),
    help="Trials this process runs [default: 100; with --resume: the missing ones].",
)
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option(
    "--storage",
    metavar="URL",
    help="Shared study storage, e.g. postgresql://user:pw@host/db [default: a journal "
    "file in the run directory].",
)
@click.option("--study-name", metavar="NAME", help="Study name [default: SPACE-OBJECTIVE-time].")
@click.option(
    "--run-dir", type=click.Path(file_okay=False), help="Output folder [default: runs/STUDY-NAME]."
)
@click.option(
    "--resume",
    "resume",
    type=click.Path(file_okay=False),
    metavar="RUN",
    help="Continue the search in run directory RUN.",
)
@click.option(
    "--worker",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Distinct number per concurrent worker of one study.",
)
@click.option(
    "--memory-dtype",
    type=click.Choice(list(DTYPE_BYTES)),
    default="fp32",
    show_default=True,
    help="Element size for peak activation memory.",
)
@click.option(
    "--memory-schedule",
    type=click.Choice(SCHEDULES),
    default="naive",
    show_default=True,
    help="naive: every tensor materialized; fused: Section 5.1.",
)
@click.option(
    "--top",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Results reported by a single-objective search.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Start no trial after this many seconds.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format of the best results.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr [default: when stderr is a terminal].",
)
def command(
    space: str | None,
    budget_madds: str | None,
    budget_params: str | None,
    budget_memory: str | None,
    budget_latency: str | None,
    device: str | None,
    device_host: str | None,
    device_port: int | None,
    device_key: str | None,
    device_tracker: str | None,
    latency: str,
    runtime: str,
    verify: int,
    objective: str,
    data: str | None,
    epochs: int,
    max_images: int | None,
    pareto: str | None,
    trials: int | None,
    seed: int,
    storage: str | None,
    study_name: str | None,
    run_dir: str | None,
    resume: str | None,
    worker: int,
    memory_dtype: str,
    memory_schedule: str,
    top: int,
    timeout_s: float | None,
    fmt: str,
    progress: bool | None,
) -> None:
    """Search width, resolution and expansion (SPACE: a search space file or name, default
    mobilenetv2) for the best network under the budgets.

    \b
    Examples:
      archkit search --budget-madds 150M
      archkit search search_spaces/mobilenetv1.yaml --budget-params 2M --budget-memory 512KB
      archkit search --pareto accuracy,madds --trials 200
      archkit search --resume runs/mobilenetv2-published-20250101-120000

    Exit status: 0 results found, 1 no candidate meets the budgets, 2 bad input.
    """
    argv = "archkit search " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    show_progress = sys.stderr.isatty() if progress is None else progress
    objective_options: dict[str, Any] = {}
    if objective == "train":
        objective_options = {"data": data, "epochs": epochs, "seed": seed, "max_images": max_images}
    elif data is not None:
        raise SearchInputError("--data", "only used with --objective train")
    # The library names its arguments (budgets.madds); this command's users know its flags.
    # Resuming, the run directory is the one given to --resume.
    flags = {**FLAGS, "run_dir": "--resume"} if resume is not None else FLAGS
    try:
        if resume is not None:
            if space is not None:
                raise SearchInputError(
                    "--resume", "takes the search space from the run; do not pass SPACE too"
                )
            config = resume_config(
                resume,
                trials=trials,
                worker=worker,
                storage=storage,
                command=argv,
                timeout_s=timeout_s,
            )
        else:
            # Every option is checked before the search space is even read.
            budgets = Budgets.parse(
                madds=budget_madds,
                params=budget_params,
                memory=budget_memory,
                latency=budget_latency,
            )
            device_options = {
                k: v
                for k, v in (
                    ("host", device_host),
                    ("port", device_port),
                    ("key", device_key),
                    ("tracker", device_tracker),
                )
                if v is not None
            }
            _, path = resolve_space(space)
            config = SearchConfig(
                path,
                budgets=budgets,
                objective=objective,
                objective_options=objective_options,
                pareto=pareto,
                trials=100 if trials is None else trials,
                seed=seed,
                storage=storage,
                study_name=study_name,
                run_dir=run_dir,
                device=device,
                device_options=device_options,
                latency=latency,
                latency_runtime=runtime,
                verify=verify,
                memory_dtype=memory_dtype,
                memory_schedule=memory_schedule,
                top=top,
                worker=worker,
                timeout_s=timeout_s,
                command=argv,
            )
        with _ProgressBar(show_progress) as bar:
            result = search(config, progress=bar.update)
    except (ArgumentError, SearchBudgetError) as exc:
        raise exc.renamed(flags) from None
    _render(result, fmt)


class _ProgressBar:
    """A rich progress bar on stderr with the best feasible result so far."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("search"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, event: Any) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task("", total=event.total)
        best = event.best
        text = f"infeasible {event.infeasible}"
        if best is not None:
            text += (
                f" | best {best['objective']:.2f} (w {best['width']:.3g}, r "
                f"{best['resolution']}, {format_count(best['madds'])} MAdds)"
            )
        self._progress.update(self._task, completed=event.done, description=text)


def _render(result: SearchResult, fmt: str) -> None:
    info, best = result.info, result.best
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "run_dir": str(result.run_dir),
                    "counts": info["counts"],
                    "objective": info["objective"],
                    "budgets": info["budgets"],
                    "latency": info.get("latency"),
                    "results": records(best),
                },
                indent=2,
            )
        )
        return
    if fmt == "csv":
        click.echo(best.to_csv(index=False), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    objective = info["objective"]
    table = Table(title=f"Best of {info['counts']['trials']} trials: {objective['label']}")
    stage_cols = [c for c in best.columns if c.startswith(("expansion_", "repeats_"))]
    for name in (
        "#",
        "trial",
        "width",
        "res",
        "t",
        *stage_cols,
        "MAdds",
        "params",
        "memory",
        "latency",
        "objective",
    ):
        table.add_column(name, justify="right", no_wrap=True)
    flagged = False
    for row in records(best):
        mark = ""
        if row.get("calibrated") is False:
            mark, flagged = "*", True
        table.add_row(
            str(row["rank"]),
            str(row["number"]),
            f"{row['width']:.3f}",
            str(row["resolution"]),
            "-" if row["expansion"] is None else f"{row['expansion']:g}",
            *[("-" if row[c] is None else f"{row[c]:g}") for c in stage_cols],
            format_count(row["madds"]),
            format_count(row["params"]),
            format_bytes(row["peak_activation_bytes"]),
            "-" if row["latency_ms"] is None else f"{row['latency_ms']:.2f} ms",
            f"{row['objective']:.2f}{mark}",
        )
    console.print(table)
    counts = info["counts"]
    console.print(
        f"trials {counts['trials']} (this call {counts['this_call']}): "
        f"{counts['feasible']} feasible, {counts['infeasible']} infeasible "
        f"(over a budget, never built), {counts['failed']} failed"
    )
    if objective.get("name") == "published":
        console.print(
            f"published model: leave-one-out error {objective['loo_mae_top1']:.2f} "
            f"top-1 points mean, {objective['loo_max_abs_error_top1']:.2f} max, over "
            f"{objective['calibration_points']} published checkpoints"
        )
    if flagged:
        console.print(
            "* extrapolated: outside the estimator's calibration (the note column of "
            "best.csv says why)"
        )
        cal = info.get("best_calibrated")
        if cal:
            console.print(
                f"best calibrated candidate: trial {cal['number']}, width "
                f"{cal['width']:.3f}, resolution {cal['resolution']}, "
                f"{format_count(cal['madds'])} MAdds: {cal['objective']:.2f}"
            )
    _render_latency(console, info.get("latency"))
    console.print(
        f"run directory: {result.run_dir} (best.csv, best.json, winners/*.yaml, "
        f"trials.csv, run.json)"
    )


def _render_latency(console: Any, latency: dict[str, Any] | None) -> None:
    """Where the latencies came from and, with a model, the winners measured for real."""
    if not latency:
        return
    if latency["source"] == "measure":
        console.print(f"latency: measured on {latency['device']} for every candidate (TVM)"
                      + (f"; {latency['note']}" if latency.get("note") else ""))
        return
    model = latency["model"]
    console.print(
        f"latency: predicted by the {latency['device']}/{latency['runtime']} latency model "
        f"({model['networks']} measured networks, built {model['created']}); the winners "
        "measured end to end:"
    )
    for i, w in enumerate(latency.get("winners", []), 1):
        if "failed" in w:
            console.print(f"  #{i} {w['spec']}: predicted {w['predicted_ms']:.3f} ms, "
                          f"measurement failed: {w['failed']}")
        else:
            console.print(f"  #{i} {w['spec']}: predicted {w['predicted_ms']:.3f} ms, measured "
                          f"{w['measured_ms']:.3f} ms ({w['error']:+.1%})")
