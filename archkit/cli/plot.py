"""``archkit plot``: Pareto plots of specs, reference families and search runs."""

from __future__ import annotations

import json

import click

from archkit.cli._common import memory_options, png_option, spec_file, specs_dir_option
from archkit.search import PLOT_METRICS

__all__ = ["command"]

_FAMILIES = ("mobilenetv2", "mobilenetv1", "shufflenet_g3")


@click.command("plot")
@click.option(
    "--y",
    "metric",
    type=click.Choice(PLOT_METRICS),
    default="accuracy",
    show_default=True,
    help="What to plot against MAdds: published top-1, latency (from --latency or "
    "the run), peak activation memory, params, or the run's objective.",
)
@click.option(
    "--family",
    "families",
    multiple=True,
    type=click.Choice(_FAMILIES),
    help="Reference families to draw (repeatable) [default: all three].",
)
@click.option("--no-families", is_flag=True, help="Draw no reference family.")
@click.option("--spec", "specs", multiple=True, metavar="SPEC",
              help="A spec (file or shipped name) to draw as one named point (repeatable).")
@click.option("--run", type=click.Path(file_okay=False), default=None,
              help="A search run directory (runs/<name>/ with trials.csv): its trials, front, "
              "budgets and winner.")
@click.option("--latency", "latency_csv", type=click.Path(dir_okay=False), default=None,
              help="CSV of measured latencies: family (or name), width, resolution, latency_ms.")
@memory_options
@click.option("-o", "--output", default=None,
              help="Output path without extension: writes OUTPUT.html and OUTPUT.png "
              "[default: plots/<y>_vs_madds, or <run>/pareto_<y> with --run].")
@png_option
@click.option("--plotlyjs", type=click.Choice(["directory", "inline", "cdn"]),
              default="directory", show_default=True,
              help="How the HTML gets plotly.js: a shared file next to it, inlined, or a CDN.")
@click.option("--format", "fmt", type=click.Choice(["files", "csv", "json"]), default="files",
              show_default=True, help="files: write the plot; csv/json: print the plot data "
              "instead.")
@specs_dir_option
def command(
    metric: str,
    families: tuple[str, ...],
    no_families: bool,
    specs: tuple[str, ...],
    run: str | None,
    latency_csv: str | None,
    dtype: str,
    schedule: str,
    output: str | None,
    png: bool,
    plotlyjs: str,
    fmt: str,
    specs_dir: str | None,
) -> None:
    """Plot METRIC against MAdds for reference families, specs and a search run.

    Hover over a point in the HTML to see its spec and numbers. Families are drawn with their
    published models (accuracy: TF-slim checkpoints, ShuffleNet and NasNet-A as quoted by the
    paper); a run's trials are drawn with the search's own Pareto front.
    """
    from pathlib import Path

    from archkit.report import draw, pareto_data, save

    chosen = () if no_families else (families or _FAMILIES)
    data = pareto_data(
        metric,
        families=chosen,
        specs=tuple(spec_file(s) for s in specs),
        run=run,
        latency_csv=latency_csv,
        dtype=dtype,
        schedule=schedule,
        specs_dir=specs_dir,
    )
    if fmt == "csv":
        click.echo(data.frame.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        records = json.loads(data.frame.to_json(orient="records"))
        click.echo(
            json.dumps(
                {
                    "title": data.title,
                    "x": data.x_title,
                    "y": data.y_title,
                    "notes": list(data.notes),
                    "points": records,
                },
                indent=2,
            )
        )
        return
    if output is None:
        output = (
            str(Path(run) / f"pareto_{metric}") if run is not None else f"plots/{metric}_vs_madds"
        )
    for path in save(draw(data), output, png=png, plotlyjs=plotlyjs):
        click.echo(f"wrote {path}")
