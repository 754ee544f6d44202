"""An SSH tunnel to the board's loopback RPC port, open for one measuring session.

TVM's RPC server runs any library it is sent, so it should listen on the board's 127.0.0.1 only
(``archkit serve``'s default). With ``connection.ssh: user@board`` in the profile (or ``--ssh``)
archkit runs the system's ``ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:PORT user@board`` for the
session and closes it afterwards; authentication is ssh's own (keys, agent, ``~/.ssh/config``):
``BatchMode=yes``, so archkit never asks for or handles a password.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from archkit.device._devices import DeviceProfile
from archkit.device._errors import DeviceError

__all__ = ["ssh_tunnel"]


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ssh_failure(destination: str, log: Path, code: int | None) -> str:
    lines = [
        line.strip()
        for line in log.read_text(errors="replace").splitlines()
        if line.strip() and not line.startswith("Warning: Permanently added")
    ]
    said = "; ".join(lines[-3:]) or f"exit status {code}"
    hint = ""
    if "Permission denied" in said:
        hint = (
            " (archkit runs ssh with BatchMode=yes and never asks for a password: install your "
            "public key on the board, e.g. `ssh-copy-id " + destination + "`, or load it into "
            "ssh-agent)"
        )
    elif "Host key verification failed" in said:
        hint = f" (connect once by hand with `ssh {destination}` to check and accept its key)"
    return f"the SSH tunnel to {destination} failed: {said}{hint}"


@contextlib.contextmanager
def ssh_tunnel(device: DeviceProfile) -> Iterator[DeviceProfile]:
    """Open the device's SSH tunnel (if it has one) and yield the profile that goes through it.

    Without ``connection.ssh`` the device is yielded unchanged. Otherwise a local port on
    127.0.0.1 forwards to ``connection.host`` (default 127.0.0.1, as seen from the board) and
    ``connection.port`` on the board; the yielded profile points at that local port. The tunnel
    is closed when the block ends.

    Raises:
        DeviceError: No ``ssh`` program, the connection or the authentication failed, or the
            forward could not be set up (within ``connect_timeout_s`` and a few seconds).
    """
    conn = device.connection
    if not conn.ssh:
        yield device
        return
    if conn.kind != "rpc":
        raise DeviceError(
            f"an SSH tunnel reaches one board's RPC server (connection kind rpc), not a "
            f"{conn.kind}",
            source=device.source,
            field="connection.ssh",
        )
    ssh = shutil.which("ssh")
    if ssh is None:
        raise DeviceError(
            "the `ssh` program is not installed (Debian/Ubuntu: apt-get install openssh-client)",
            source=device.source,
            field="connection.ssh",
        )
    board_host = conn.host or "127.0.0.1"
    board_port = conn.port or 9090
    with tempfile.TemporaryDirectory(prefix="archkit-ssh-") as tmp:
        control = Path(tmp) / "control"
        log = Path(tmp) / "ssh.log"
        local_port = _free_local_port()
        base = [
            ssh, "-S", str(control), "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, math.ceil(device.connect_timeout_s))}",
            *conn.ssh_options,
        ]  # fmt: skip
        # -f: ssh goes to the background once authenticated and forwarding, so its exit status
        # says whether the tunnel is up; -M/-S: a control socket to close it by.
        command = [
            *base, "-f", "-N", "-M", "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
            "-L", f"127.0.0.1:{local_port}:{board_host}:{board_port}", conn.ssh,
        ]  # fmt: skip
        with open(log, "w") as err:
            try:
                done = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    timeout=device.connect_timeout_s + 5,
                )
                code: int | None = done.returncode
            except subprocess.TimeoutExpired:
                code = None
        if code != 0:
            _close(base, conn.ssh)
            raise DeviceError(
                _ssh_failure(conn.ssh, log, code)
                + (f" (no answer within {device.connect_timeout_s + 5:g} s)" if code is None
                   else "")
            )  # fmt: skip
        through = replace(
            device,
            connection=replace(conn, host="127.0.0.1", port=local_port, ssh=None, ssh_options=()),
            tunnel=f"ssh {conn.ssh} -> {board_host}:{board_port}",
        )
        try:
            yield through
        finally:
            _close(base, conn.ssh)


def _close(base: list[str], destination: str) -> None:
    """Ask the background ssh (through its control socket) to exit; it closes the forward."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [*base, "-O", "exit", destination],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
        )
