"""``archkit report``: regenerate the paper's tables and figures in ``reports/``."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["command"]

_PNG = click.option(
    "--png/--no-png",
    default=True,
    show_default=True,
    help="Also write the static PNG (needs Chromium: scripts/chromium.sh).",
)
_OUTPUT_DIR = click.option(
    "-o", "--output-dir", type=click.Path(file_okay=False), default="reports", show_default=True
)
_SPECS = click.option(
    "--specs-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where mobilenetv1/v2.yaml and shufflenet_g3.yaml live [default: ./specs].",
)


def _written(paths: list[Path]) -> None:
    for path in paths:
        click.echo(f"wrote {path}")


@click.group("report")
def command() -> None:
    """Write the paper's tables and figures, reproduced by archkit, to reports/."""


@command.command("paper-tables")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="reports/paper_tables.md",
    show_default=True,
)
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the markdown instead.")
@_SPECS
def paper_tables(output: str, to_stdout: bool, specs_dir: str | None) -> None:
    """Tables 2, 3 and 4 and TF-slim's tables: paper and archkit side by side."""
    from archkit.report import paper_tables_markdown, write_paper_tables

    if to_stdout:
        click.echo(paper_tables_markdown(specs_dir), nl=False)
        return
    _written([write_paper_tables(output, specs_dir)])


@command.command("figure5")
@_OUTPUT_DIR
@_PNG
@_SPECS
def figure5(output_dir: str, png: bool, specs_dir: str | None) -> None:
    """Figure 5: published top-1 vs MAdds (HTML and PNG)."""
    from archkit.report import write_figure5

    _written(write_figure5(output_dir, png=png, specs_dir=specs_dir))


@command.command("memory")
@_OUTPUT_DIR
@_PNG
@_SPECS
def memory(output_dir: str, png: bool, specs_dir: str | None) -> None:
    """Peak activation memory (fp16, fused schedule) vs MAdds of the families."""
    from archkit.report import write_memory_plot

    _written(write_memory_plot(output_dir, png=png, specs_dir=specs_dir))


@command.command("all")
@_OUTPUT_DIR
@_PNG
@_SPECS
def all_reports(output_dir: str, png: bool, specs_dir: str | None) -> None:
    """Regenerate every file in reports/."""
    from archkit.report import write_all

    _written(write_all(output_dir, png=png, specs_dir=specs_dir))
