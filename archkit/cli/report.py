"""``archkit report``: regenerate the paper's tables and figures in ``reports/``.

Every subcommand writes into a folder (``-o/--output-dir``, default ``reports``), as ``archkit
plot -o`` and ``archkit search --run-dir`` name where files go, never a single file."""

from __future__ import annotations

from pathlib import Path

import click

from archkit.cli._common import output_dir_option, png_option, specs_dir_option

__all__ = ["command"]

_OUTPUT_DIR = output_dir_option("reports")


def _written(paths: list[Path]) -> None:
    for path in paths:
        click.echo(f"wrote {path}")


@click.group("report")
def command() -> None:
    """Write the paper's tables and figures, reproduced by archkit, to reports/."""


@command.command("paper-tables")
@_OUTPUT_DIR
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the markdown instead.")
@specs_dir_option
def paper_tables(output_dir: str, to_stdout: bool, specs_dir: str | None) -> None:
    """Tables 2, 3 and 4 and TF-slim's tables, paper and archkit side by side
    (OUTPUT_DIR/paper_tables.md)."""
    from archkit.report import paper_tables_markdown, write_paper_tables

    if to_stdout:
        click.echo(paper_tables_markdown(specs_dir), nl=False)
        return
    _written([write_paper_tables(Path(output_dir) / "paper_tables.md", specs_dir)])


#: The subcommands that write plots: name -> (the archkit.report writer, help).
_PLOTS = {
    "figure5": ("write_figure5", "Figure 5: published top-1 vs MAdds (HTML and PNG)."),
    "memory": (
        "write_memory_plot",
        "Peak activation memory (fp16, fused schedule) vs MAdds of the families.",
    ),
    "all": ("write_all", "Regenerate every file in reports/."),
}


def _plot_command(name: str, writer: str, help_text: str) -> click.Command:
    @_OUTPUT_DIR
    @png_option
    @specs_dir_option
    def run(output_dir: str, png: bool, specs_dir: str | None) -> None:
        import archkit.report

        _written(getattr(archkit.report, writer)(output_dir, png=png, specs_dir=specs_dir))

    return click.command(name, help=help_text)(run)


for _name, (_writer, _help) in _PLOTS.items():
    command.add_command(_plot_command(_name, _writer, _help))
