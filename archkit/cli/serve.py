"""``archkit serve``: run on the board; TVM's RPC server with archkit's board-side functions
(onnxruntime timing, TVM per-call profiling for ``--per-layer``).

Needs only archkit's small runtime extra on the board (``pip install 'archkit[runtime]'``: tvm,
onnxruntime, numpy; no torch). Binds 127.0.0.1 unless told otherwise: the host reaches it
through an SSH tunnel (``archkit profile ... --ssh user@board``).
"""

from __future__ import annotations

import getpass
import ipaddress
import signal
import sys

import click

__all__ = ["command", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _exposure_warning(host: str, port: int) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        user = "this server's user"
    return (
        f"archkit serve: WARNING: listening on {host}:{port}. TVM's RPC server loads and runs any "
        "library it is sent, without authentication or encryption: anyone who can reach this "
        f"port can run any code on this machine as {user!r} and read or change whatever that "
        "user can. Expose it only on a network you trust entirely (a lab network of boards with "
        "no other users); otherwise keep the default --host 127.0.0.1 and measure through "
        "`--ssh user@board` from the host."
    )


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets everyone who can reach the "
                   "port run code here (a warning says so).")
@click.option("--port", type=click.IntRange(1, 65535), default=9090, show_default=True,
              help="First port to try.")
@click.option("--port-end", type=click.IntRange(2, 65536), default=None,
              help="Try ports up to this one (exclusive) [default: PORT + 100].")
@click.option("--tracker", default=None, help="Register with this TVM RPC tracker (HOST:PORT).")
@click.option("--key", default=None, help="Device key to register with at the tracker.")
@click.option("--custom-addr", default=None,
              help="Address the tracker hands out for this board (default: as the tracker sees "
                   "it).")
def command(host: str, port: int, port_end: int | None, tracker: str | None, key: str | None,
            custom_addr: str | None) -> None:
    """Serve TVM RPC on this board, with archkit's onnxruntime timing function and TVM profiler
    registered.

    Both runtimes share this one transport: `archkit profile --device DEV --runtime tvm` uploads
    compiled libraries, `--runtime onnxruntime` uploads the .onnx file and calls the function;
    `--per-layer` runs the profiled runs here (a profiling callback cannot cross RPC).
    Stop with Ctrl-C.
    """
    from archkit.errors import ArchkitError

    tracker_addr = None
    if tracker:
        t_host, sep, t_port = tracker.rpartition(":")
        if not sep or not t_host or not t_port.isdigit():
            raise click.BadParameter(f"must be HOST:PORT, got {tracker!r}", param_hint="--tracker")
        tracker_addr = (t_host, int(t_port))
        if not key:
            raise click.BadParameter("a tracker needs the device key the boards register with",
                                     param_hint="--key")
    elif key:
        raise click.BadParameter("--key names the device at a tracker: give --tracker too",
                                 param_hint="--key")
    port_end = port_end or min(65536, port + 100)
    if port_end <= port:
        raise click.BadParameter(f"must be above --port {port}", param_hint="--port-end")
    if not is_loopback(host):
        click.echo(_exposure_warning(host, port), err=True)
    elif tracker_addr and not is_loopback(tracker_addr[0]):
        click.echo(
            f"archkit serve: note: listening on {host} only, so the tracker's clients on other "
            "machines cannot reach this board (fine for a tracker on the board itself).",
            err=True,
        )

    try:
        from tvm import rpc
    except ImportError as err:
        raise ArchkitError(
            f"archkit serve needs TVM on this board: pip install 'archkit[runtime]' ({err})"
        ) from None
    from archkit.device import _ort_remote

    ort_version = _ort_remote.onnxruntime_version()
    try:
        server = rpc.Server(
            host, port, port_end, tracker_addr=tracker_addr, key=key or "",
            custom_addr=custom_addr, silent=True,
            server_init_callback=_ort_remote.register_in_server,
        )  # fmt: skip
    except (OSError, ValueError, RuntimeError) as err:
        # The server starts in a worker process; its error arrives with the worker's traceback.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ArchkitError(f"archkit serve: cannot listen on {host}:{port}..{port_end - 1}: "
                           f"{lines[-1] if lines else type(err).__name__}") from None
    import tvm

    runtimes = "tvm, onnxruntime " + ort_version if ort_version else (
        "tvm only (onnxruntime is not installed: pip install 'archkit[runtime]')"
    )
    where = f" registered with tracker {tracker} as {key!r}" if tracker_addr else ""
    click.echo(
        f"archkit serve: TVM {tvm.__version__} RPC server on {host}:{server.port}{where}; "
        f"runtimes: {runtimes}. Ctrl-C stops it.",
        err=True,
    )
    # A line for programs (tests, scripts) on stdout.
    click.echo(f"ARCHKIT_SERVE_READY host={host} port={server.port}")
    sys.stdout.flush()
    # The server runs in a child process that outlives this one unless terminated: turn
    # SIGTERM/SIGHUP into a normal exit so the `finally` below stops it.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        server.proc.join()
    except KeyboardInterrupt:
        click.echo("archkit serve: stopped", err=True)
    finally:
        server.terminate()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)
