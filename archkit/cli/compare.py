"""``archkit compare``: the analytic costs of several specs side by side, in total and per stage,
with each one's difference from the first (the baseline)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from archkit._json import json_default
from archkit.cli._common import human, load_with_overrides, memory_options, override_options
from archkit.cost import CONVENTIONS

__all__ = ["command", "comparison"]

#: The totals compared, with how a table prints them.
_TOTALS = (
    ("madds", "MAdds", ""),
    ("params", "params", ""),
    ("peak_activation_bytes", "peak memory", "B"),
)
#: The per-stage numbers compared.
_STAGE = (("madds", "MAdds", ""), ("params", "params", ""), ("peak_live_bytes", "peak live", "B"))


@click.command("compare")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC SPEC...")
@override_options
@memory_options
@click.option("--convention", type=click.Choice(CONVENTIONS), default="pytorch",
              show_default=True, help="Parameter counting convention (see docs/costs.md).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table for people; json or csv for programs.")
def command(specs: tuple[str, ...], width: float | None, resolution: int | None,
            expansion: float | None, dtype: str, schedule: str, convention: str,
            fmt: str) -> None:
    """Compare the costs of SPECs (files or shipped names): totals and each stage (spec row)
    side by side, and every spec's difference from the first one.

    --width, --resolution and --expansion apply to every spec; a variant of one spec is written
    SPEC@width=0.5,resolution=160 (the keys of those options). Stages are matched by their row
    number.

    \b
    Examples:
      archkit compare mobilenetv2 mobilenetv1 shufflenet_g3
      archkit compare mobilenetv2 mobilenetv2@width=0.5,resolution=160 --format csv
    """
    if len(specs) < 2:
        raise click.UsageError("give at least two specs to compare")
    from archkit.cost import cost_table

    tables = []
    for arg in specs:
        path, own = _variant(arg)
        overrides = {"width": width, "resolution": resolution, "expansion": expansion, **own}
        tables.append(cost_table(load_with_overrides(path, **overrides, strict=False),
                                 dtype=dtype, convention=convention))
    names = [t.spec.name for t in tables]
    labels = [arg if "@" in arg or names.count(t.spec.name) > 1 else t.spec.name
              for arg, t in zip(specs, tables, strict=True)]
    result = comparison(tables, schedule, labels)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, default=json_default))
    elif fmt == "csv":
        _print_csv(result)
    else:
        _print_tables(result, dtype, schedule)


_OVERRIDES = {"width": float, "resolution": int, "expansion": float}


def _variant(arg: str) -> tuple[str, dict[str, Any]]:
    """``mobilenetv2@width=0.5,resolution=160`` -> ``("mobilenetv2", {"width": 0.5, ...})``."""
    path, sep, text = arg.rpartition("@")
    if not sep:
        return arg, {}
    overrides: dict[str, Any] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in _OVERRIDES:
            raise click.BadParameter(
                f"{arg!r}: after @ give key=value pairs of {', '.join(_OVERRIDES)}, got "
                f"{item!r}", param_hint="SPEC")
        try:
            overrides[key.strip()] = _OVERRIDES[key.strip()](value)
        except ValueError:
            raise click.BadParameter(f"{arg!r}: {key.strip()} must be a number, got {value!r}",
                                     param_hint="SPEC") from None
    return path, overrides


def comparison(tables: list, schedule: str = "naive",
               labels: list[str] | None = None) -> dict[str, Any]:
    """The comparison of :class:`~archkit.cost.CostTable` s: ``totals`` (one entry per spec) and
    ``stages`` (one entry per row number, one value per spec, None where a spec has no such
    row), each number with ``<name>_difference`` from the first spec. ``labels`` name the specs
    (default: their names)."""
    labels = labels or [t.spec.name for t in tables]
    totals = []
    for label, t in zip(labels, tables, strict=True):
        entry = {
            "spec": label,
            "source": t.spec.source,
            "width": t.spec.width,
            "resolution": t.spec.resolution,
            "dtype": t.dtype,
            "schedule": schedule,
            "madds": t.madds,
            "params": t.params,
            "peak_activation_bytes": t.peak_activation_bytes(schedule),
        }
        totals.append(entry)
    for entry in totals:
        for key, _, _ in _TOTALS:
            entry[f"{key}_difference"] = entry[key] - totals[0][key]
    stages = []
    for index in range(max(len(t.stage_records) for t in tables)):
        rows = [t.stage_records[index] if index < len(t.stage_records) else None
                for t in tables]
        first = rows[0]
        per_spec = []
        for label, row in zip(labels, rows, strict=True):
            item: dict[str, Any] = {"spec": label}
            if row is None:
                item.update(op=None, output=None, **{key: None for key, _, _ in _STAGE})
            else:
                item.update(op=row["op"], output=row["output"],
                            **{key: row[key] for key, _, _ in _STAGE})
            for key, _, _ in _STAGE:
                both = row is not None and first is not None
                item[f"{key}_difference"] = row[key] - first[key] if both else None
            per_spec.append(item)
        stages.append({"stage": index, "specs": per_spec})
    return {"baseline": labels[0], "totals": totals, "stages": stages}


def _print_csv(result: dict[str, Any]) -> None:
    import csv

    rows = [{"stage": "total", "op": "", "output": "", **t} for t in result["totals"]]
    rows += [{"stage": s["stage"], **item} for s in result["stages"] for item in s["specs"]]
    fields = ["stage", "spec", "op", "output", "madds", "madds_difference", "params",
              "params_difference", "peak_activation_bytes", "peak_activation_bytes_difference",
              "peak_live_bytes", "peak_live_bytes_difference"]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row.get(k) is None else row.get(k) for k in fields}
                     for row in rows)


def _signed(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "="
    return ("+" if value > 0 else "-") + human(abs(value), unit)


def _print_tables(result: dict[str, Any], dtype: str, schedule: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=200)
    baseline = result["baseline"]
    table = Table(title=f"Totals (differences from {baseline}; memory {dtype}, {schedule})")
    table.add_column("spec")
    table.add_column("width x res", justify="right")
    for _, label, _ in _TOTALS:
        table.add_column(label, justify="right")
        table.add_column("diff", justify="right")
    for t in result["totals"]:
        cells = [t["spec"], f"{t['width']:g} x {t['resolution']}"]
        for key, _, unit in _TOTALS:
            cells += [human(t[key], unit), _signed(t[f"{key}_difference"], unit)]
        table.add_row(*cells)
    console.print(table)

    names = [item["spec"] for item in result["stages"][0]["specs"]]
    table = Table(title=f"Per stage (spec row): MAdds, params (differences from {baseline})")
    table.add_column("row", justify="right")
    for i, name in enumerate(names):
        table.add_column(f"{name}", overflow="fold")
        table.add_column("MAdds", justify="right")
        table.add_column("params", justify="right")
        if i:
            table.add_column("diff MAdds", justify="right")
    for stage in result["stages"]:
        cells = [str(stage["stage"])]
        for i, item in enumerate(stage["specs"]):
            if item["op"] is None:
                cells += ["-", "-", "-"]
            else:
                cells += [f"{item['op']} {item['output']}", human(item["madds"]),
                          f"{item['params']:,}"]
            if i:
                cells.append(_signed(item["madds_difference"], ""))
        table.add_row(*cells)
    console.print(table)
