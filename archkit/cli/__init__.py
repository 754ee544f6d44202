"""The ``archkit`` command. Subcommands live one per module and are imported only when run, so
``archkit --help`` imports neither torch, tvm, optuna nor plotly."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from archkit.errors import ArchkitError

__all__ = ["main", "cli"]

#: command name -> (module, help line). Each module defines ``command`` (a click command).
COMMANDS = {
    "profile": ("archkit.cli.profile", "Analytic costs (and device latency) of specs."),
    "search": ("archkit.cli.search", "Search width, resolution and expansion under budgets."),
    "latency": ("archkit.cli.latency", "Build, list and evaluate device latency models."),
    "report": ("archkit.cli.report", "Write the paper's tables and Pareto plots to reports/."),
    "plot": ("archkit.cli.plot", "Pareto plots of specs, families and search runs."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (module, _) in COMMANDS.items() if _exists(module))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _exists(COMMANDS[name][0]):
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archkit")
def cli() -> None:
    """archkit: hardware-aware neural architecture design (MobileNetV2-style specs).

    Exit status: 0 success, 1 the job ran and failed (no candidate meets a budget, a measurement
    failed), 2 bad input or usage.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map domain errors to exit codes in this one place."""
    try:
        cli.main(args=argv, prog_name="archkit", standalone_mode=False)
    except ArchkitError as exc:
        click.echo(f"archkit: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("archkit: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
