"""``archkit search``: the best network a budget affords. Parses, calls :mod:`archkit.search`,
renders; the search itself lives in the library."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click
from click.core import ParameterSource

from archkit.cli._common import memory_options
from archkit.errors import ArchkitError
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
from archkit.search._config import parse_pareto
from archkit.search._interrupt import SearchInterrupted
from archkit.search._storage import mask_secrets

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
    "space": "SPACE",
    "device_options.host": "--host",
    "device_options.port": "--port",
    "device_options.key": "--key",
    "device_options.tracker": "--tracker",
    "objective_options.epochs": "--epochs",
    "objective_options.max_images": "--max-images",
}
#: The device connection options, named as `archkit profile` names them.
DEVICE_OPTIONS = ("host", "port", "key", "tracker")
#: Old names of the device connection options: hidden, still accepted, with a warning.
DEPRECATED_DEVICE_FLAGS = {f"device_{name}": f"--device-{name}" for name in DEVICE_OPTIONS}
#: Budget option -> (its Budgets.parse keyword, its Budgets field).
_BUDGETS = {
    "budget_madds": ("madds", "madds"),
    "budget_params": ("params", "params"),
    "budget_memory": ("memory", "peak_activation_bytes"),
    "budget_latency": ("latency", "latency_ms"),
}


def _int_option(flag: str, low: int, default: int | None, help: str, **extra: Any) -> Any:
    """An option taking a whole number >= ``low``."""
    shown = {"default": default, "show_default": True} if default is not None else {}
    return click.option(flag, type=click.IntRange(low), help=help, **shown, **extra)


def _choice_option(flag: str, choices: Any, default: str, help: str, *name: str) -> Any:
    return click.option(
        flag, *name, type=click.Choice(list(choices)), default=default, show_default=True, help=help
    )


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
@click.option("--host", metavar="HOST", help="RPC server host of the device (overrides the file).")
@click.option("--port", type=int, metavar="PORT", help="RPC server or tracker port.")
@click.option("--key", metavar="KEY", help="Tracker device key.")
@click.option("--tracker", metavar="HOST:PORT", help="Tracker as HOST:PORT (device farm).")
@click.option("--device-host", hidden=True)
@click.option("--device-port", type=int, hidden=True)
@click.option("--device-key", hidden=True)
@click.option("--device-tracker", hidden=True)
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
@_choice_option("--objective", ESTIMATORS, "published", "Accuracy estimator.")
@click.option("--data", type=click.Path(), help="ImageFolder for --objective train.")
@click.option(
    "--epochs",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Training epochs per candidate (--objective train).",
)
@_int_option("--max-images", 1, None, "Cap on images per split (--objective train).")
@click.option(
    "--pareto",
    metavar="METRICS",
    help="Multi-objective search, e.g. accuracy,madds (or params, memory, latency).",
)
@_int_option(
    "--trials", 0, None, "Trials this process runs [default: 100; with --resume: the missing ones]."
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 1),
    default=0,
    show_default=True,
    help="Seeds the sampler: the same seed and storage give the same trials.",
)
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
    help="Continue the search in run directory RUN (with --trials 0: refresh RUN's files from "
    "its storage, e.g. a shared worker's snapshot).",
)
@_int_option("--worker", 0, 0, "Distinct number per concurrent worker of one study.")
@memory_options
@_int_option("--top", 1, 10, "Results reported by a single-objective search.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Start no trial after this many seconds.",
)
@_choice_option(
    "--format", ["table", "json", "csv"], "table", "Output format of the best results.", "fmt"
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr [default: when stderr is a terminal].",
)
@click.pass_context
def command(ctx: click.Context, space: str | None, **options: Any) -> None:
    """Search width, resolution and expansion (SPACE: a search space file or name, default
    mobilenetv2) for the best network under the budgets.

    \b
    Examples:
      archkit search --budget-madds 150M
      archkit search search_spaces/mobilenetv1.yaml --budget-params 2M --budget-memory 512KB
      archkit search --pareto accuracy,madds --trials 200
      archkit search --resume runs/mobilenetv2-published-20250101-120000

    Exit status: 0 results found, 1 no candidate meets the budgets (or the storage failed
    mid-search), 2 bad input, 130 interrupted (the finished trials are saved).
    """
    o = _Options(options)
    argv = mask_secrets("archkit search " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
    show_progress = sys.stderr.isatty() if o.progress is None else o.progress
    device_options = _device_options(o)
    objective_options: dict[str, Any] = {}
    if o.objective == "train":
        objective_options = {
            "data": o.data,
            "epochs": o.epochs,
            "seed": o.seed,
            "max_images": o.max_images,
        }
    elif o.data is not None:
        raise SearchInputError("--data", "only used with --objective train")
    # The library names its arguments (budgets.madds); this command's users know its flags.
    # Resuming, the run directory is the one given to --resume.
    flags = {**FLAGS, "run_dir": "--resume"} if o.resume is not None else FLAGS
    try:
        # Every option is checked before the search space is even read.
        budgets = Budgets.parse(**{key: options[name] for name, (key, _) in _BUDGETS.items()})
        if o.resume is not None:
            config = resume_config(
                o.resume,
                trials=o.trials,
                worker=o.worker,
                storage=o.storage,
                command=argv,
                timeout_s=o.timeout_s,
                top=o.top if _given(ctx, "top") else None,
                device_options=device_options,
                same_as=_asked_for(ctx, space, budgets, o, device_options, objective_options),
            )
        else:
            if device_options and o.device is None:
                flags_given = ", ".join(f"--{name}" for name in device_options)
                raise SearchInputError(
                    f"--{next(iter(device_options))}",
                    f"only applies with --device NAME (add --device, or drop {flags_given})",
                )
            _, path = resolve_space(space)
            config = SearchConfig(
                path,
                budgets=budgets,
                objective=o.objective,
                objective_options=objective_options,
                pareto=o.pareto,
                trials=100 if o.trials is None else o.trials,
                seed=o.seed,
                storage=o.storage,
                study_name=o.study_name,
                run_dir=o.run_dir,
                device=o.device,
                device_options=device_options,
                latency=o.latency,
                latency_runtime=o.runtime,
                verify=o.verify,
                memory_dtype=o.dtype,
                memory_schedule=o.schedule,
                top=o.top,
                worker=o.worker,
                timeout_s=o.timeout_s,
                command=argv,
            )
        with _ProgressBar(show_progress) as bar:
            result = search(config, progress=bar.update)
    except (ArgumentError, SearchBudgetError) as exc:
        raise exc.renamed(flags) from None
    except SearchInterrupted as stop:
        counts = stop.result.info["counts"]
        raise Interrupted(
            f"interrupted: {counts['trials'] - counts['running']} finished trials are saved "
            f"({counts['this_call']} by this call) in {stop.result.run_dir}; continue with: "
            f"{stop.resume_command}"
        ) from None
    _render(result, o.fmt)


class Interrupted(ArchkitError):
    """Ctrl-C stopped the search after saving its trials (exit status 130, as a shell's)."""

    exit_code = 130


class _Options:
    """The command's options as attributes (``o.budget_madds``)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.__dict__.update(options)


def _device_options(o: _Options) -> dict[str, Any]:
    """--host/--port/--key/--tracker, from their deprecated --device-* names too."""
    chosen = {}
    for name in DEVICE_OPTIONS:
        value, old = getattr(o, name), getattr(o, f"device_{name}")
        if old is not None:
            flag = DEPRECATED_DEVICE_FLAGS[f"device_{name}"]
            click.echo(f"archkit: warning: {flag} is deprecated; use --{name}", err=True)
            if value is not None and value != old:
                raise SearchInputError(flag, f"contradicts --{name} {value}")
            value = old
        if value is not None:
            chosen[name] = value
    return chosen


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (
        ParameterSource.COMMANDLINE,
        ParameterSource.ENVIRONMENT,
    )


def _asked_for(
    ctx: click.Context,
    space: str | None,
    budgets: Budgets,
    o: _Options,
    device_options: dict[str, Any],
    objective_options: dict[str, Any],
) -> dict[str, Any]:
    """What the command line asks for that defines a search (the library checks that a resumed
    run was searched with it)."""
    asked: dict[str, Any] = {}
    if space is not None:
        asked["space"] = resolve_space(space)[1]
    limits = budgets.as_dict()
    # Options that define a search: given with --resume, each must be what the run had.
    for name, (_, key) in _BUDGETS.items():
        if _given(ctx, name):
            asked[f"budgets.{key}"] = limits[key]
    defining = {"objective": "objective", "seed": "seed", "dtype": "memory_dtype",
                "schedule": "memory_schedule", "device": "device", "study_name": "study_name"}
    for option, name in defining.items():
        if _given(ctx, option):
            asked[name] = getattr(o, option)
    if _given(ctx, "pareto"):
        asked["pareto"] = list(parse_pareto(o.pareto, need_device=True))
    for name in ("data", "epochs", "max_images"):
        if _given(ctx, name) and name in objective_options:
            asked[f"objective_options.{name}"] = objective_options[name]
    return asked


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
    from rich.table import Table

    objective = info["objective"]
    table = Table(title=f"Best of {info['counts']['trials']} trials: {objective['label']}")
    stage_cols = [c for c in best.columns if c.startswith(("expansion_", "repeats_"))]
    for name in (
        "#",
        "trial",
        "width",
        "resolution",
        "expansion",
        *stage_cols,
        "MAdds",
        "params",
        "peak memory",
        "latency",
        objective.get("unit") or _objective_header(objective),
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
            f"{row['resolution']} px",
            "-" if row["expansion"] is None else f"{row['expansion']:g}",
            *[("-" if row[c] is None else f"{row[c]:g}") for c in stage_cols],
            format_count(row["madds"]),
            format_count(row["params"]),
            format_bytes(row["peak_activation_bytes"]),
            "-" if row["latency_ms"] is None else f"{row['latency_ms']:.2f} ms",
            f"{row['objective']:.2f}{mark}",
        )
    console = _console(table)
    console.print(table)
    counts = info["counts"]
    lines = [
        f"trials {counts['trials']} (this call {counts['this_call']}): "
        f"{counts['feasible']} feasible, {counts['infeasible']} infeasible "
        f"(over a budget, never built), {counts['failed']} failed"
    ]
    if objective.get("name") == "published":
        lines.append(
            f"published model: leave-one-out error {objective['loo_mae_top1']:.2f} "
            f"top-1 points mean, {objective['loo_max_abs_error_top1']:.2f} max, over "
            f"{objective['calibration_points']} published checkpoints"
        )
    if flagged:
        lines.append(
            "* extrapolated: outside the estimator's calibration (the note column of "
            "best.csv says why); ranked after every calibrated candidate"
        )
    extrapolated, calibrated = info.get("best_extrapolated"), info.get("best_calibrated")
    if extrapolated and (not calibrated or extrapolated["objective"] > calibrated["objective"]):
        shape = [f"width {extrapolated['width']:.3f}", f"resolution {extrapolated['resolution']}"]
        if extrapolated.get("expansion") is not None:  # spaces without bottlenecks have none
            shape.append(f"expansion {extrapolated['expansion']:g}")
        lines.append(
            f"the estimate is higher outside the calibration, where it is not trusted: trial "
            f"{extrapolated['number']} ({', '.join(shape)}, "
            f"{format_count(extrapolated['madds'])} MAdds) estimates "
            f"{extrapolated['objective']:.2f}, extrapolated"
        )
    if info.get("snapshot"):
        lines.append(f"note: this run directory is {info['snapshot']['note']}")
    lines.append(
        f"run directory: {result.run_dir} (best.csv, best.json, winners/*.yaml, "
        f"trials.csv, run.json)"
    )
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
    _render_latency(console, info.get("latency"))
    if len(best):
        winner = result.run_dir / best["spec"].iloc[0]
        onnx = f"{winner.stem.split('_', 1)[-1]}.onnx"
        steps = [
            (f"archkit profile {winner}", "its costs (add --device NAME to time it)"),
            (
                f"archkit plot --run {result.run_dir} -o {result.run_dir}/pareto",
                "the trials against the published networks",
            ),
            (f"archkit export {winner} -o {onnx}", "the winner as an ONNX model"),
        ]
        width = max(len(c) for c, _ in steps)
        console.print("next steps:", soft_wrap=True, highlight=False)
        for cmd, why in steps:
            console.print(
                f"  {cmd:<{width}}  # {why}", soft_wrap=True, highlight=False, markup=False
            )


def _objective_header(objective: dict[str, Any]) -> str:
    label = str(objective.get("label") or "objective")
    return label.split(" (", 1)[0]  # "top-1 % (published-calibrated model)" -> "top-1 %"


def _console(table: Any) -> Any:
    """A console for stdout: a terminal's width, or (piped, redirected) as wide as the table,
    so nothing is cut at 80 columns."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        needed = Console(width=10_000).measure(table).maximum
        console = Console(width=max(80, needed), highlight=False)
    return console


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
