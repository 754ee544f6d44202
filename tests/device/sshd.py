"""A throwaway OpenSSH server on 127.0.0.1 for the SSH-tunnel tests.

Debian's ``openssh-server`` (installed by ``scripts/sshd.sh`` when missing) runs as ``sshd -D -e
-f CONFIG`` on a free loopback port with its own host key, an authorized key generated for the
test (key-based login of the current user, here root; no passwords) and everything else in a
temporary folder; the test stops it afterwards. The system's sshd service is never touched.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sshd.sh"


class SshdError(RuntimeError):
    pass


def install() -> Path:
    """Run scripts/sshd.sh (installs openssh-server/-client if missing); return sshd's path."""
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SshdError(f"{SCRIPT.name} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("ARCHKIT_SSHD="):
            return Path(line.split("=", 1)[1])
    raise SshdError(f"{SCRIPT.name} printed no ARCHKIT_SSHD line:\n{done.stdout}")


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "archkit-test", "-f", str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    """A running sshd and what a client needs to log in to it."""

    proc: subprocess.Popen
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    folder: Path

    @property
    def destination(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def ssh_options(self, key: Path | None = None, known_hosts: Path | None = None) -> list[str]:
        """Client arguments: this key, this known_hosts (strict checking), no user config."""
        return [
            "-F", "/dev/null", "-i", str(key or self.client_key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def log(self) -> str:
        try:
            return (self.folder / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start(folder: Path, timeout_s: float = 30.0) -> Sshd:
    """Start sshd on a free 127.0.0.1 port with keys and config in ``folder``."""
    sshd = install()
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_ed25519", folder / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    port = _free_port()
    host_pub = (folder / "host_ed25519.pub").read_text().split()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = folder / "sshd_config"
    config.write_text(
        "\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "StrictModes no", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "UsePAM no",
            "AllowTcpForwarding local", "AllowAgentForwarding no", "X11Forwarding no",
            "PermitTTY no", "LogLevel VERBOSE",
        ]) + "\n"
    )  # fmt: skip
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation folder
    log = open(folder / "sshd.log", "w")
    try:
        proc = subprocess.Popen(
            [str(sshd), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    finally:
        log.close()
    server = Sshd(proc, port, getpass.getuser(), client_key, known_hosts, folder)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SshdError(f"sshd exited with {proc.returncode}:\n{server.log()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(4) == b"SSH-":
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise SshdError(f"sshd not answering on 127.0.0.1:{port} after {timeout_s} s")
