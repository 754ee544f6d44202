"""Devices: the ``devices/*.yaml`` files decoded into frozen dataclasses (:class:`DeviceProfile`).

A device file says what to compile for (a TVM target in JSON-dict form), how to link for the board
(the cross compiler handed to ``export_library``), how many threads to run with and how to reach
the board: ``local`` (this machine, no RPC), ``rpc`` (host, port of a TVM RPC server, optionally
through an SSH tunnel: ``ssh: user@board``) or ``tracker`` (host, port of a TVM RPC tracker and the
key its boards registered with).

The file is read and checked the way every archkit file is (``archkit._schema``): a mistake is one
:class:`DeviceError` naming the file and the field.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from archkit import _schema as schema
from archkit._data import shipped_dir
from archkit.device._errors import DeviceError

__all__ = [
    "Connection",
    "DeviceProfile",
    "ENV_DEVICE_EMULATED",
    "ENV_DEVICE_HOST",
    "ENV_DEVICE_KEY",
    "ENV_DEVICE_PORT",
    "ENV_DEVICE_SSH",
    "ENV_DEVICES_DIR",
    "ENV_RPC_TRACKER",
    "available_devices",
    "devices_dir",
    "load_device",
    "server_help",
]

ENV_DEVICE_HOST = "ARCHKIT_DEVICE_HOST"
ENV_DEVICE_PORT = "ARCHKIT_DEVICE_PORT"
ENV_DEVICE_KEY = "ARCHKIT_DEVICE_KEY"
ENV_DEVICE_SSH = "ARCHKIT_DEVICE_SSH"
ENV_RPC_TRACKER = "ARCHKIT_RPC_TRACKER"
ENV_DEVICES_DIR = "ARCHKIT_DEVICES_DIR"
ENV_DEVICE_EMULATED = "ARCHKIT_DEVICE_EMULATED"

_KINDS = ("local", "rpc", "tracker")
_TOP_FIELDS = (
    "name",
    "description",
    "target",
    "cross_compiler",
    "cross_compiler_options",
    "threads",
    "connection",
    "emulated",
    "connect_timeout_s",
    "session_timeout_s",
)
_CONN_FIELDS = ("kind", "host", "port", "key", "ssh", "ssh_options")


@dataclass(frozen=True)
class Connection:
    """How to reach a device.

    Attributes:
        kind: ``local``, ``rpc`` or ``tracker``.
        host: RPC server host (``rpc``) or tracker host (``tracker``); None if not configured.
        port: RPC server port (``rpc``) or tracker port (``tracker``).
        key: Device key the boards registered with at the tracker (``tracker``); for ``rpc``
            an optional server key.
        ssh: ``user@board`` (any ssh destination, e.g. ``ssh://user@board:2222`` or a
            ``~/.ssh/config`` alias): reach the RPC server through an SSH tunnel; ``host`` and
            ``port`` are then as seen from the board (default ``127.0.0.1:9090``).
        ssh_options: Extra arguments for ``ssh`` (e.g. ``["-i", "~/.ssh/pi"]``).
    """

    kind: str = "local"
    host: str | None = None
    port: int | None = None
    key: str | None = None
    ssh: str | None = None
    ssh_options: tuple[str, ...] = ()

    def describe(self) -> str:
        """Short human form, e.g. ``rpc 192.168.1.7:9090``."""
        if self.kind == "local":
            return "local"
        where = f"{self.host or '<no host>'}:{self.port if self.port is not None else '<no port>'}"
        if self.kind == "tracker":
            return f"tracker {where} key={self.key}"
        if self.ssh:
            return f"rpc {where} on {self.ssh} through an SSH tunnel"
        return f"rpc {where}"


@dataclass(frozen=True)
class DeviceProfile:
    """One device: what to compile for, how to link, how many threads, how to reach it.

    Attributes:
        name: Device name (``rpi4``); also names the per-device tuning database.
        target: TVM target as a JSON dict (``{"kind": "llvm", "mtriple": ...}``), or the string
            ``"host"`` for "detect this machine's CPU" (resolved by :meth:`target_dict`).
        cross_compiler: Compiler used by ``export_library`` (e.g. ``aarch64-linux-gnu-gcc``);
            None uses the host's default compiler.
        cross_compiler_options: Extra options for the cross compiler (e.g. ``--sysroot=...``).
        threads: Number of runtime threads on the device.
        connection: How to reach it.
        description: Free text.
        emulated: True for an emulated board (qemu): its timings are labelled "emulated" and
            are never device latency.
        connect_timeout_s: Give up connecting after this many seconds (clear error, no hang).
        session_timeout_s: The RPC server drops a session that runs longer than this.
        source: File the profile was read from, if any.
        tunnel: Set on the profile that goes through an open SSH tunnel (what it forwards to).
    """

    name: str
    target: Any
    cross_compiler: str | None = None
    cross_compiler_options: tuple[str, ...] = ()
    threads: int = 1
    connection: Connection = field(default_factory=Connection)
    description: str = ""
    emulated: bool = False
    connect_timeout_s: float = 5.0
    session_timeout_s: float = 900.0
    source: str | None = None
    tunnel: str | None = None

    def __hash__(self) -> int:  # target is a dict; hash the stable parts only.
        return hash((self.name, self.connection, self.threads, self.source))

    @property
    def is_remote(self) -> bool:
        """True when the device is reached over RPC (``rpc`` or ``tracker``)."""
        return self.connection.kind != "local"

    def target_dict(self) -> dict[str, Any]:
        """The TVM target as a JSON dict, with ``"host"`` resolved to this machine's CPU.

        Imports tvm (only when the target is ``"host"``).
        """
        if self.target == "host":
            from tvm.target import codegen

            # No mtriple: LLVM's default is the host's (the wheel's own triple may name its
            # build toolchain, e.g. x86_64-conda-linux-gnu).
            return {
                "kind": "llvm",
                "mcpu": str(codegen.llvm_get_system_cpu()),
                "num-cores": self.threads,
            }
        return copy.deepcopy(dict(self.target))

    def with_connection(self, **changes: Any) -> DeviceProfile:
        """A copy with connection fields replaced (``kind``, ``host``, ``port``, ``key``, ...)."""
        return replace(self, connection=replace(self.connection, **changes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "target": self.target if isinstance(self.target, str) else dict(self.target),
            "cross_compiler": self.cross_compiler,
            "threads": self.threads,
            "connection": self.connection.describe(),
            "tunnel": self.tunnel,
            "emulated": self.emulated,
            "source": self.source,
        }


def devices_dir() -> Path:
    """Folder of the shipped profiles: ``$ARCHKIT_DEVICES_DIR``, else the repo's ``devices/``."""
    env = os.environ.get(ENV_DEVICES_DIR)
    if env:
        return Path(env)
    return shipped_dir("devices")


def available_devices() -> list[str]:
    """Names of the shipped device profiles."""
    folder = devices_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def server_help(profile: DeviceProfile | None = None) -> str:
    """How to start the board side safely (``archkit serve``) and point archkit at it."""
    name = profile.name if profile else "<device>"
    key = (profile.connection.key if profile else None) or name
    return (
        "To measure on a board, install archkit's runtime extra there (same TVM version as "
        "here: `pip install 'archkit[runtime]'`) and start its RPC server, which listens on the "
        "board's 127.0.0.1 only:\n"
        "    archkit serve --port 9090\n"
        "then reach it through an SSH tunnel that archkit opens for the session (your ssh key, "
        "no password prompts):\n"
        f"    archkit profile SPEC --device {name} --ssh user@board --port 9090\n"
        f"    export {ENV_DEVICE_SSH}=user@board {ENV_DEVICE_PORT}=9090\n"
        "Anyone who can reach the RPC port can run any code on the board as the server's user: "
        "expose it (`archkit serve --host 0.0.0.0`, then --host <board-ip>) only on a network "
        "you trust entirely. TVM's plain `python3 -m tvm.exec.rpc_server --host 127.0.0.1` "
        "serves the tvm runtime too.\n"
        "For a farm of boards (on a trusted network), run a tracker and register every board:\n"
        "    python3 -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190       # any machine\n"
        f"    archkit serve --host 0.0.0.0 --tracker <tracker-ip>:9190 --key {key}  # each board\n"
        f"    export {ENV_RPC_TRACKER}=<tracker-ip>:9190 {ENV_DEVICE_KEY}={key}\n"
        "Check what the tracker sees with: "
        "python3 -m tvm.exec.query_rpc_tracker --host <tracker-ip> --port 9190"
    )


def _parse_port(value: Any, *, source: str, field_name: str) -> int:
    """A port from a file, an argument or an environment variable (text there)."""
    at = schema.Where(source, DeviceError)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise at.fail(f"port must be an integer, got {schema.show(value)}", field_name)
    try:
        port = int(value)
    except ValueError:
        raise at.fail(f"port must be an integer, got {schema.show(value)}", field_name) from None
    if not 0 < port < 65536:
        raise at.fail(f"port must be in 1..65535, got {port}", field_name)
    return port


def _parse_tracker(value: str, *, source: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise DeviceError(f"tracker must be HOST:PORT, got {schema.show(value)}", source=source)
    return host, _parse_port(port, source=source, field_name="tracker")


def _parse_profile(data: Any, source: str, default_name: str) -> DeviceProfile:
    at = schema.Where(source, DeviceError)
    if not isinstance(data, dict):
        raise at.fail(f"the top level must be a mapping of keys, got {schema.kind(data)}")
    schema.check_keys(data, _TOP_FIELDS, at)
    name = schema.check_string(data.get("name", default_name), at, "name", non_empty=True)

    if "target" not in data:
        raise at.fail("is required (a TVM target as a JSON dict)", "target")
    target = data["target"]
    if isinstance(target, str):
        if target != "host":
            raise at.fail(
                "must be a JSON dict such as {kind: llvm, mtriple: aarch64-linux-gnu, "
                f"mcpu: cortex-a72}} or the word 'host', got {schema.show(target)}",
                "target",
            )
    elif isinstance(target, dict):
        if target.get("kind") != "llvm":
            raise at.fail(f"must be 'llvm' (CPU boards), got {schema.show(target.get('kind'))}",
                          "target.kind")
    else:
        raise at.fail(f"must be a mapping, got {schema.show(target)}", "target")

    cross = data.get("cross_compiler")
    if cross is not None:
        cross = schema.check_string(cross, at, "cross_compiler", non_empty=True)
    options = data.get("cross_compiler_options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise at.fail(f"must be a list of strings, got {schema.show(options)}",
                      "cross_compiler_options")

    threads = data.get("threads", "auto")
    if threads == "auto":
        threads = os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise at.fail(f"must be an integer from 1 to 1024 or 'auto', got {schema.show(threads)}",
                      "threads")
    if isinstance(target, dict) and "num-cores" not in target:
        target = {**target, "num-cores": threads}

    conn = schema.check_mapping(data.get("connection", {"kind": "local"}), at, "connection")
    schema.check_keys(conn, _CONN_FIELDS, at.inside("connection"))
    conn_kind = conn.get("kind", "local")
    if conn_kind not in _KINDS:
        raise at.fail(f"must be one of {', '.join(_KINDS)}, got {schema.show(conn_kind)}"
                      f"{schema.did_you_mean(conn_kind, _KINDS)}", "connection.kind")
    host = conn.get("host")
    if host is not None:
        host = schema.check_string(host, at, "connection.host")
    port = conn.get("port")
    if port is not None:
        port = _parse_port(port, source=source, field_name="connection.port")
    key = conn.get("key")
    if key is not None:
        key = str(key)
    ssh = conn.get("ssh")
    if ssh is not None and (not isinstance(ssh, str) or not ssh.strip() or ssh.startswith("-")):
        raise at.fail(f"must be an ssh destination such as pi@board, got {schema.show(ssh)}",
                      "connection.ssh")
    ssh_options = conn.get("ssh_options") or []
    if not isinstance(ssh_options, list) or not all(isinstance(o, str) for o in ssh_options):
        raise at.fail(f"must be a list of strings (ssh arguments), got {schema.show(ssh_options)}",
                      "connection.ssh_options")
    if ssh and conn_kind != "rpc":
        raise at.fail("an SSH tunnel reaches one board's RPC server: needs kind rpc, got "
                      f"{schema.show(conn_kind)}", "connection.ssh")

    emulated = schema.check_bool(data.get("emulated", False), at, "emulated")
    timeouts = {}
    for fname, default in (("connect_timeout_s", 5.0), ("session_timeout_s", 900.0)):
        value = data.get(fname, default)
        if not schema.is_number(value) or value <= 0:
            raise at.fail(f"must be a positive number, got {schema.show(value)}", fname)
        timeouts[fname] = float(value)

    return DeviceProfile(
        name=name,
        target=target,
        cross_compiler=cross,
        cross_compiler_options=tuple(options),
        threads=threads,
        connection=Connection(
            kind=conn_kind, host=host, port=port, key=key, ssh=ssh,
            ssh_options=tuple(os.path.expanduser(o) for o in ssh_options),
        ),
        description=schema.check_string(data.get("description", ""), at, "description"),
        emulated=emulated,
        source=source,
        **timeouts,
    )


def load_device(
    name_or_path: str | os.PathLike[str],
    *,
    host: str | None = None,
    port: int | None = None,
    key: str | None = None,
    tracker: str | None = None,
    emulated: bool | None = None,
    ssh: str | None = None,
) -> DeviceProfile:
    """Load a device profile by name (``rpi4``, from ``devices/``) or by file path.

    Connection settings override the file, so a user points ``rpi4`` at their own board or
    tracker without editing it. Precedence: keyword arguments, then environment variables
    (``ARCHKIT_DEVICE_HOST``, ``ARCHKIT_DEVICE_PORT``, ``ARCHKIT_DEVICE_KEY``,
    ``ARCHKIT_RPC_TRACKER=host:port``, ``ARCHKIT_DEVICE_SSH``), then the file. A tracker
    (argument or variable) makes the connection ``tracker`` (key: ``key``, else the file's key,
    else the device name); a host or an ``ssh`` destination without a tracker makes it ``rpc``.

    Args:
        name_or_path: Device name or path to a YAML profile.
        host: RPC server host.
        port: RPC server port (or tracker port with a ``tracker`` connection from the file).
        key: Tracker key of the boards (or RPC server key).
        tracker: Tracker address ``HOST:PORT``.
        emulated: Mark the device as emulated (qemu); its timings are then labelled
            "emulated", never device latency. Default: the file's ``emulated`` field, or
            ``ARCHKIT_DEVICE_EMULATED=1``.
        ssh: Reach the RPC server through an SSH tunnel to this destination (``user@board``);
            ``host``/``port`` are then the server's address on the board (default
            ``127.0.0.1:9090``).

    Returns:
        The profile (no connection is attempted here).

    Raises:
        DeviceError: Unknown device name, unreadable file, or a bad field (the message names
            the file and the field).
    """
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml") or os.sep in text or path.is_file()):
        path = devices_dir() / f"{text}.yaml"
        if not path.is_file():
            names = ", ".join(available_devices()) or "(none)"
            raise DeviceError(
                f"unknown device {text!r}{schema.did_you_mean(text, available_devices())}; known "
                f"devices: {names} (or give a path to a YAML file)"
            )
    source = str(path)
    at = schema.Where(source, DeviceError)
    data = schema.load_yaml(schema.read_text(path, at, "device file"), at)
    profile = _parse_profile(data, source, path.stem)

    env_source = "environment"
    host = host or os.environ.get(ENV_DEVICE_HOST) or None
    if port is None and os.environ.get(ENV_DEVICE_PORT):
        port = _parse_port(
            os.environ[ENV_DEVICE_PORT], source=env_source, field_name=ENV_DEVICE_PORT
        )
    elif port is not None:
        port = _parse_port(port, source="arguments", field_name="port")
    key = key or os.environ.get(ENV_DEVICE_KEY) or None
    tracker = tracker or os.environ.get(ENV_RPC_TRACKER) or None
    ssh = ssh or os.environ.get(ENV_DEVICE_SSH) or None
    if ssh is not None and (not ssh.strip() or ssh.startswith("-")):
        raise DeviceError(f"--ssh must be an ssh destination such as pi@board, got {ssh!r}")

    conn = profile.connection
    if tracker:
        if ssh:
            raise DeviceError(
                "--ssh reaches one board's RPC server; it cannot be combined with a tracker"
            )
        t_host, t_port = _parse_tracker(tracker, source=env_source)
        conn = Connection("tracker", t_host, t_port, key or conn.key or profile.name)
    elif host or port is not None or key or ssh:
        kind = "rpc" if conn.kind == "local" and (host or ssh) else conn.kind
        if ssh and kind == "tracker":
            kind = "rpc"  # an explicit tunnel to one board overrides the file's tracker
        conn = Connection(
            kind,
            # --ssh without --host: the server on the board's own loopback
            host or (None if ssh else conn.host),
            port if port is not None else conn.port,
            key or conn.key,
            ssh or conn.ssh,
            conn.ssh_options,
        )
        if conn.kind == "rpc" and conn.port is None:
            conn = replace(conn, port=9090)
    if emulated is None and os.environ.get(ENV_DEVICE_EMULATED):
        emulated = os.environ[ENV_DEVICE_EMULATED].lower() in ("1", "true", "yes")
    if emulated is None:
        emulated = profile.emulated
    return replace(profile, connection=conn, emulated=emulated)
