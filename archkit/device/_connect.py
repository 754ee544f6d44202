"""Reaching a device: local runtime, a TVM RPC server, or a board handed out by a tracker.

Every network step runs under a deadline so a missing board gives a clear error in seconds,
never a hang; what answers instead of a TVM RPC server is named (``_handshake``).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from archkit.device import _handshake
from archkit.device._devices import DeviceProfile, server_help
from archkit.device._errors import DeviceError, MeasurementError
from archkit.device._threads import call_in_thread

__all__ = ["Remote", "check_reachable", "open_remote", "tracker_servers"]

GOVERNOR_PATH = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"


def _unreachable(device: DeviceProfile, what: str, found: str) -> DeviceError:
    conn = device.connection
    via = f", {device.tunnel}" if device.tunnel else ""
    return DeviceError(
        f"cannot use device {device.name!r} ({conn.describe()}{via}): {what}: {found}.\n"
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
        DeviceError: The tracker cannot be reached, or what answers is not a TVM RPC tracker
            (within the connect timeout).
    """
    total, free, _ = _tracker_keys(device)
    return total, free


#: Seconds a tracker is asked again before "no board with the key" (a board re-registering).
REGISTER_GRACE_S = 2.0


def _tracker_keys(device: DeviceProfile) -> tuple[int, int, dict[str, int]]:
    host, port = _require_address(device)
    try:
        summary = _handshake.tracker_summary(host, port, device.connect_timeout_s)
    except _handshake.ProbeError as err:
        raise _unreachable(device, f"the tracker at {host}:{port}", err.found) from None
    keys: dict[str, int] = {}
    for info in summary.get("server_info", []):
        name = str(info.get("key", "")).split(":", 1)[-1]
        keys[name] = keys.get(name, 0) + 1
    queue = summary.get("queue_info", {}).get(device.connection.key, {})
    # A board that has just registered can be in the key's queue before its info names the
    # key (the two reach the tracker as separate messages): count it either way.
    total = max(keys.get(device.connection.key or "", 0), int(queue.get("free", 0)))
    free = int(queue.get("free", total))
    if total:
        keys[device.connection.key or ""] = total
    return total, free, keys


def _probe_server(device: DeviceProfile) -> tuple[str, int]:
    """TVM's RPC handshake with the device's server; DeviceError saying what answered if not."""
    host, port = _require_address(device)
    try:
        _handshake.probe_rpc_server(
            host, port, device.connection.key or "", device.connect_timeout_s
        )
    except _handshake.ProbeError as err:
        found = err.found
        if device.tunnel and found.startswith("it accepted the connection and closed it"):
            board = device.tunnel.rsplit(" -> ", 1)[-1]
            found = (
                f"the SSH tunnel is up, but nothing answered on the board's end ({board}): "
                f"is `archkit serve --port {board.rsplit(':', 1)[-1]}` running on the board?"
            )
        raise _unreachable(device, f"the RPC server at {host}:{port}", found) from None
    return host, port


def _session_deadline(device: DeviceProfile) -> float:
    """Seconds to wait for ``rpc.connect`` once the handshake is known to work.

    TVM's own server serves one session at a time and forks a process per session, so a new
    session waits until the previous one (a probe, or another job) has ended; on a loaded host
    that takes seconds. Only a real TVM RPC server gets here, so waiting longer costs nothing
    in the failure cases, which the handshake probe has already caught.
    """
    return max(15.0, 3 * device.connect_timeout_s)


def _connect_session(device: DeviceProfile, host: str, port: int, session_timeout_s: float):
    from tvm import rpc

    try:
        return call_in_thread(
            lambda: rpc.connect(
                host, port, device.connection.key or "", session_timeout=session_timeout_s
            ),
            "RPC server",
            _session_deadline(device),
        )
    except (OSError, TimeoutError, RuntimeError) as err:
        # Say what answers there now, if it is not a TVM RPC server (any more).
        _probe_server(device)
        raise _unreachable(device, f"the RPC session with {host}:{port}", str(err)) from None


def _check_session(device: DeviceProfile, session: Any, runtime: str, server: str,
                   kernels: bool = False) -> None:
    """One round trip in the session; for ``onnxruntime``, archkit's function must be there, and
    for per-kernel times (``kernels``) its profiling function."""
    from archkit.device import _ort_remote

    def remote_calls() -> str | None:
        session.get_function("tvm.rpc.server.workpath")("probe")
        if kernels:
            try:
                session.get_function(_ort_remote.PROFILE_TVM_FUNC)
            except (AttributeError, RuntimeError, ValueError):
                return "no profiler"
        if runtime != "onnxruntime":
            return None
        try:
            version = session.get_function(_ort_remote.VERSION_FUNC)
        except (AttributeError, RuntimeError, ValueError):
            return "missing"
        return str(version())

    try:
        found = call_in_thread(remote_calls, "RPC server", _session_deadline(device))
    except (OSError, TimeoutError, RuntimeError) as err:
        raise _unreachable(device, f"the RPC session with {server}", str(err)) from None
    if found == "no profiler":
        raise DeviceError(
            f"device {device.name!r}: per-layer times over RPC need `archkit serve` on the "
            f"board: the RPC server at {server} has no archkit profiling function (TVM's plain "
            "rpc_server, or an older archkit serve), and a profiling callback cannot be sent "
            "over RPC; start `archkit serve` on the board instead.\n" + server_help(device)
        )
    if found == "missing":
        raise DeviceError(
            f"device {device.name!r}: the RPC server at {server} has no archkit onnxruntime "
            "function (it is TVM's plain rpc_server, which serves the tvm runtime only); for "
            "--runtime onnxruntime start `archkit serve` on the board instead.\n"
            + server_help(device)
        )
    if found == "":
        raise DeviceError(
            f"device {device.name!r}: `archkit serve` runs at {server} but cannot import "
            "onnxruntime on the board; install it there: pip install 'archkit[runtime]'"
        )


def check_reachable(device: DeviceProfile, *, runtime: str = "tvm", kernels: bool = False) -> None:
    """Fail fast (seconds, before any compiling) with what was found and setup instructions.

    For an ``rpc`` device this is a real TVM RPC session: the handshake (a listener that is not
    a TVM RPC server is named: silent, HTTP, SSH, ...), one remote call, and for ``runtime=
    "onnxruntime"`` the check that archkit's onnxruntime function is registered there (``archkit
    serve``), for ``kernels`` (per-layer times) that its profiling function is. An ``ssh`` device
    is checked through a tunnel opened for the check. A tracker must answer its handshake and
    have a board with the key (its boards' functions are checked when a job gets one).

    Raises:
        DeviceError: No address configured, nothing listening, not a TVM RPC server/tracker,
            no board with the key, or (onnxruntime, kernels) not an ``archkit serve`` server.
    """
    if not device.is_remote:
        return
    if device.connection.ssh:
        from archkit.device._tunnel import ssh_tunnel

        with ssh_tunnel(device) as through:
            check_reachable(through, runtime=runtime, kernels=kernels)
        return
    host, port = _require_address(device)
    if device.connection.kind == "tracker":
        total, _, keys = _tracker_keys(device)
        # TVM's RPC server drops its tracker registration whenever a connection hangs up on it
        # before the RPC handshake (a port scan, a health check) and registers again a moment
        # later (0.1-0.2 s on this host): a board in that window is not a missing board.
        deadline = time.monotonic() + min(device.connect_timeout_s, REGISTER_GRACE_S)
        while total == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            total, _, keys = _tracker_keys(device)
        if total == 0:
            seen = ", ".join(f"{k!r} x{n}" for k, n in sorted(keys.items())) or "none"
            raise DeviceError(
                f"the tracker at {host}:{port} has no board registered with key "
                f"{device.connection.key!r} (boards registered there: {seen}).\n"
                + server_help(device)
            )
        return
    _probe_server(device)
    session = _connect_session(device, host, port, max(30.0, 4 * device.connect_timeout_s))
    try:
        _check_session(device, session, runtime, f"{host}:{port}", kernels)
    finally:
        del session


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

    def upload(self, path: str) -> str:
        """Upload a file into the session's work folder; return the name that board functions
        take for it (a local device: the path itself)."""
        if self.session is None:
            return path
        self.session.upload(path)
        return path.rsplit("/", 1)[-1]

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
        """Drop the session; the socket closes when the last reference to it goes.

        ``relax.VirtualMachine.get_outputs`` (TVM 0.27) leaves a self-referencing closure that
        holds the VM, and through it the remote module and the session, until the garbage
        collector runs; TVM's RPC server serves one session at a time, so the next one would
        wait for it. Collect now.
        """
        import gc

        self.session = None
        gc.collect()


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
            raise _unreachable(device, f"the tracker at {host}:{port}", str(err)) from None
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
    # The handshake was probed before compiling (check_reachable); connect directly, and probe
    # again only to say what answers if this fails.
    host, port = _require_address(device)
    session = _connect_session(device, host, port, device.session_timeout_s)
    return Remote(session, f"{host}:{port}")
