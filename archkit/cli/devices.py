"""``archkit devices``: the shipped device profiles and how each one is reached."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["command"]


@click.command("devices")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="table for people; json for programs.")
def command(fmt: str) -> None:
    """List the device profiles (devices/NAME.yaml, or $ARCHKIT_DEVICES_DIR): the TVM target,
    threads, and how archkit reaches each board (with ARCHKIT_DEVICE_HOST/PORT/KEY and
    ARCHKIT_RPC_TRACKER applied). Use one with `archkit profile SPEC --device NAME`.
    """
    from pathlib import Path

    from archkit.device import available_devices, load_device

    profiles = [load_device(name) for name in available_devices()]
    if fmt == "json":
        click.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)
    folder = Path(profiles[0].source).parent if profiles and profiles[0].source else "?"
    table = Table(title=f"Device profiles in {folder}")
    for column in ("name", "description", "target", "threads", "reached by"):
        table.add_column(column, overflow="fold")
    for p in profiles:
        table.add_row(p.name, p.description + (" (emulated)" if p.emulated else ""),
                      _target(p.target), str(p.threads), _reach(p))
    console.print(table)
    console.print(
        "A board runs a TVM RPC server (python3 -m tvm.exec.rpc_server --host 0.0.0.0 --port "
        "9090); point archkit at it with --host/--port (or a tracker with --tracker HOST:PORT "
        "--key KEY), or the ARCHKIT_DEVICE_HOST/ARCHKIT_DEVICE_PORT variables. "
        "See docs/device.md."
    )


def _target(target: object) -> str:
    if not isinstance(target, dict):
        return f"{target} (this machine's CPU)"
    parts = [str(target.get("kind", "?"))]
    parts += [str(target[k]) for k in ("mtriple", "mcpu") if target.get(k)]
    return " ".join(parts)


def _reach(profile) -> str:
    conn = profile.connection
    if conn.kind == "local":
        return "this machine (no RPC)"
    text = conn.describe()
    if conn.host is None:
        text += " (give --host, or ARCHKIT_DEVICE_HOST)"
    return text
