"""The ``archkit`` command. Subcommands live one per module and are imported only when run, so
``archkit --help`` imports neither torch, tvm, optuna nor plotly."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

import click

from archkit.errors import ArchkitError, ArchkitWarning

__all__ = ["main", "cli"]

#: command name -> (module, help line). Each module defines ``command`` (a click command).
COMMANDS = {
    "profile": ("archkit.cli.profile", "Analytic costs (and device latency) of specs."),
    "search": ("archkit.cli.search", "Search width, resolution and expansion under budgets."),
    "latency": ("archkit.cli.latency", "Build, list and evaluate device latency models."),
    "report": ("archkit.cli.report", "Write the paper's tables and Pareto plots to reports/."),
    "plot": ("archkit.cli.plot", "Pareto plots of specs, families and search runs."),
    "compare": ("archkit.cli.compare", "Costs of specs side by side, per stage, with differences."),
    "export": ("archkit.cli.export", "Export a spec's PyTorch model to ONNX."),
    "devices": ("archkit.cli.devices", "The device profiles and how each board is reached."),
    "serve": ("archkit.cli.serve", "On a board: TVM RPC server for tvm and onnxruntime."),
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
    """Run the CLI; map domain errors to exit codes, and show archkit's warnings as one
    ``archkit: warning:`` line each, in this one place."""
    with warnings.catch_warnings():
        others = warnings.showwarning

        def show(message, category, *args, **kwargs) -> None:
            if issubclass(category, ArchkitWarning):
                click.echo(f"archkit: warning: {message}", err=True)
            else:
                others(message, category, *args, **kwargs)

        warnings.showwarning = show
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        # Without standalone mode click returns what the command returned (or an ``Exit``
        # code for ctx.exit): a command may end with an int exit status.
        status = cli.main(args=argv, prog_name="archkit", standalone_mode=False)
    except ArchkitError as exc:
        click.echo(f"archkit: error: {exc}", err=True)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        # An optional dependency (torch, tvm, optuna, plotly...) imported lazily below: name the
        # extra that installs it. Any other missing module is a bug and keeps its traceback.
        from archkit._imports import missing_dependency

        missing = missing_dependency(exc)
        if missing is None:
            raise
        click.echo(f"archkit: error: {missing}", err=True)
        return missing.exit_code
    except click.exceptions.Abort:
        click.echo("archkit: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
