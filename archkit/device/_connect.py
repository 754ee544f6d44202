"""Reaching a device: local runtime, a TVM RPC server, or a board handed out by a tracker.

Every network step runs under a deadline so a missing board gives a clear error in seconds,
never a hang.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from archkit.device._devices import DeviceProfile, server_help
from archkit.device._errors import DeviceError, MeasurementError
from archkit.device._threads import call_in_thread

__all__ = ["Remote", "check_reachable", "open_remote", "tracker_servers"]

GOVERNOR_PATH = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"


def _tcp_probe(host: str, port: int, timeout_s: float) -> None:
    with socket.create_connection((host, port), timeout=timeout_s):
        pass


def _unreachable(device: DeviceProfile, what: str, err: BaseException) -> DeviceError:
    conn = device.connection
    return DeviceError(
        f"cannot reach device {device.name!r} ({conn.describe()}): {what}: {err}\n"
        + server_help(device)
    )


def _require_address(device: DeviceProfile) -> tuple[str, int]:
    conn = device.connection
    if not conn.host or conn.port is None:
        raise DeviceError(
            f"device {device.name!r} has no {conn.kind} address configured "
            f"(connection: {conn.describe()}).\n" + server_help(device)
        )
    return conn.host, conn.port


def tracker_servers(device: DeviceProfile) -> tuple[int, int]:
    """(total, free) servers registered at the device's tracker under its key.

    Raises:
        DeviceError: The tracker cannot be reached within the connect timeout.
    """
    from tvm import rpc

    host, port = _require_address(device)
    timeout = device.connect_timeout_s
    try:
        call_in_thread(lambda: _tcp_probe(host, port, timeout), "tracker", timeout + 1)
        tracker = call_in_thread(lambda: rpc.connect_tracker(host, port), "tracker", timeout)
        summary = call_in_thread(tracker.summary, "tracker summary", timeout)
    except (OSError, TimeoutError, RuntimeError) as err:
        raise _unreachable(device, "tracker", err) from None
    total = free = 0
    for info in summary.get("server_info", []):
        if info["key"].split(":", 1)[-1] == device.connection.key:
            total += 1
    queue = summary.get("queue_info", {}).get(device.connection.key, {})
    free = int(queue.get("free", total))
    return total, free


def check_reachable(device: DeviceProfile) -> None:
    """Fail fast (a few seconds) with setup instructions when the device is not there.

    Raises:
        DeviceError: No address configured, nothing listening, or (tracker) no board with the key.
    """
    if not device.is_remote:
        return
    host, port = _require_address(device)
    if device.connection.kind == "tracker":
        total, _ = tracker_servers(device)
        if total == 0:
            raise DeviceError(
                f"the tracker at {host}:{port} has no board registered with key "
                f"{device.connection.key!r}.\n" + server_help(device)
            )
        return
    timeout = device.connect_timeout_s
    try:
        call_in_thread(lambda: _tcp_probe(host, port, timeout), "RPC server", timeout + 1)
    except (OSError, TimeoutError) as err:
        raise _unreachable(device, "RPC server", err) from None


@dataclass
class Remote:
    """An open connection to the device (or the local runtime).

    Attributes:
        session: The ``tvm.rpc.RPCSession``, or None for a local device.
        server: ``host:port`` of the RPC server that serves this session (``local`` if none).
    """

    session: Any
    server: str

    def device(self) -> Any:
        """The TVM CPU device on the board."""
        import tvm

        return self.session.cpu() if self.session is not None else tvm.cpu()

    def load_module(self, lib_path: str) -> Any:
        """Upload (over RPC) and load a shared library."""
        import tvm

        if self.session is None:
            return tvm.runtime.load_module(lib_path)
        self.session.upload(lib_path)
        return self.session.load_module(lib_path.rsplit("/", 1)[-1])

    def get_function(self, name: str) -> Any:
        """A global function on the board (runtime registry)."""
        import tvm

        if self.session is None:
            return tvm.get_global_func(name)
        return self.session.get_function(name)

    def governor(self) -> str | None:
        """The CPU frequency governor of cpu0 on a Linux board, or None if not readable."""
        try:
            if self.session is None:
                with open(GOVERNOR_PATH) as f:
                    return f.read().strip() or None
            # The RPC server resolves paths against its work dir; an absolute path stays as is.
            return bytes(self.session.download(GOVERNOR_PATH)).decode().strip() or None
        except Exception:  # noqa: BLE001 - "when readable"
            return None

    def close(self) -> None:
        """Drop the session (the server ends it when the last reference goes)."""
        self.session = None


def _request_from_tracker(device: DeviceProfile) -> Remote:
    """Ask the tracker for a free board of the key; wait while all are busy."""
    from tvm import rpc
    from tvm.rpc import base

    host, port = _require_address(device)
    key = device.connection.key
    timeout = device.connect_timeout_s
    last_err: BaseException | None = None
    for _ in range(5):
        try:
            sock = call_in_thread(
                lambda: socket.create_connection((host, port), timeout=timeout),
                "tracker",
                timeout + 1,
            )
        except (OSError, TimeoutError) as err:
            raise _unreachable(device, "tracker", err) from None
        try:
            sock.settimeout(timeout)
            magic = base.RPC_TRACKER_MAGIC
            sock.sendall(magic.to_bytes(4, "little", signed=True))
            answer = int.from_bytes(base.recvall(sock, 4), "little", signed=True)
            if answer != magic:
                raise DeviceError(f"{host}:{port} is not a TVM RPC tracker")
            # Waiting for a free board may take as long as the other jobs take.
            sock.settimeout(device.session_timeout_s)
            base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", 1])
            value = base.recvjson(sock)
            if value[0] != base.TrackerCode.SUCCESS:
                raise RuntimeError(f"tracker answered {value!r}")
            url, srv_port, match_key = value[1]
        except (OSError, RuntimeError) as err:
            last_err = err
            continue
        finally:
            sock.close()
        try:
            session = call_in_thread(
                lambda u=url, p=srv_port, k=match_key: rpc.connect(
                    u, p, k, session_timeout=device.session_timeout_s
                ),
                f"RPC server {url}:{srv_port}",
                timeout,
            )
        except (OSError, TimeoutError, RuntimeError) as err:
            last_err = err  # the board went away after the tracker handed it out: ask again
            continue
        return Remote(session, f"{url}:{srv_port}")
    raise MeasurementError(
        f"could not get a working board with key {key!r} from the tracker at {host}:{port}: "
        f"{last_err}",
        stage="connect",
    )


def open_remote(device: DeviceProfile) -> Remote:
    """Open a session on the device (local: no session).

    Raises:
        DeviceError: The device cannot be reached (with instructions), within a few seconds.
        MeasurementError: A tracker handed out boards that all failed.
    """
    if not device.is_remote:
        return Remote(None, "local")
    if device.connection.kind == "tracker":
        return _request_from_tracker(device)
    from tvm import rpc

    check_reachable(device)
    host, port = _require_address(device)
    try:
        session = call_in_thread(
            lambda: rpc.connect(
                host,
                port,
                device.connection.key or "",
                session_timeout=device.session_timeout_s,
            ),
            "RPC server",
            device.connect_timeout_s,
        )
    except (OSError, TimeoutError, RuntimeError) as err:
        raise _unreachable(device, "RPC handshake", err) from None
    return Remote(session, f"{host}:{port}")
