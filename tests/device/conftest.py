"""Real TVM RPC servers and trackers on 127.0.0.1 (random free ports) for the device tests.

Servers run as ``python -m tvm.exec.rpc_server`` subprocesses in their own process group, so a
test can kill one (and the per-session worker it forked) mid-measurement.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEVICE_ENV = (
    "ARCHKIT_DEVICE_HOST",
    "ARCHKIT_DEVICE_PORT",
    "ARCHKIT_DEVICE_KEY",
    "ARCHKIT_RPC_TRACKER",
    "ARCHKIT_DEVICE_EMULATED",
    "ARCHKIT_DEVICES_DIR",
)


def _load_emulated() -> object:
    """Import ``tests/device/emulated.py`` by path (works with or without package __init__s)."""
    import importlib.util

    path = Path(__file__).with_name("emulated.py")
    if not path.is_file():
        raise ImportError(f"{path} does not exist")
    spec = importlib.util.spec_from_file_location("archkit_tests_device_emulated", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


try:  # the colleague's emulated aarch64 board (qemu): fixture emulated_arm64_rpc -> (host, port)
    emulated_arm64_rpc = _load_emulated().emulated_arm64_rpc
except Exception as _err:  # noqa: BLE001 - pragma: no cover - only while that module is missing
    _EMULATED_IMPORT_ERROR = f"{type(_err).__name__}: {_err}"

    @pytest.fixture(scope="session")
    def emulated_arm64_rpc():  # noqa: D103
        pytest.skip(f"emulated aarch64 device unavailable: {_EMULATED_IMPORT_ERROR}")


#: A spec that compiles in seconds: stem, two bottlenecks, pool, classifier.
TINY = """
name: tiny
input: {resolution: 32, channels: 3}
num_classes: 10
layers:
  - {op: conv2d, c: 16, s: 2}
  - {op: bottleneck, t: 4, c: 16, n: 2, s: 1}
  - {op: avgpool}
  - {op: fc}
"""


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class Proc:
    """A TVM server/tracker subprocess started by a test."""

    proc: subprocess.Popen
    port: int
    name: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Kill the process group this test started (server + its session workers)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # TVM sizes its pool to half the logical cores on x86; a loopback "board" uses them all.
    env.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    return env


def spawn_server(tracker: str | None = None, key: str = "loopback") -> Proc:
    """Launch ``python -m tvm.exec.rpc_server`` on 127.0.0.1 (optionally registered); no wait."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
        "--port", str(port), "--port-end", str(port + 1),
    ]  # fmt: skip
    if tracker:
        cmd += ["--tracker", tracker, "--key", key]
    proc = subprocess.Popen(
        cmd, start_new_session=True, env=_python_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return Proc(proc, port, "rpc_server")


def start_servers(n: int = 1, tracker: str | None = None, key: str = "loopback") -> list[Proc]:
    """Start ``n`` servers in parallel and wait until they listen (with ``tracker``: until all
    are registered there).

    A registered server is never probed with a bare connection: TVM's server drops its tracker
    registration when a connection hangs up on it before the RPC handshake, and registers again
    a moment later, so a test starting right after such a probe could find no board.
    """
    servers = [spawn_server(tracker, key) for _ in range(n)]
    try:
        if tracker:
            _wait_free(int(tracker.rsplit(":", 1)[1]), key, n, [s.proc for s in servers])
        else:
            for server in servers:
                _wait_listening(server.port, server.proc)
    except RuntimeError:
        for server in servers:
            server.kill()
        raise
    return servers


def start_server(tracker: str | None = None, key: str = "loopback") -> Proc:
    """Start one server and wait until it listens."""
    return start_servers(1, tracker, key)[0]


def start_tracker() -> Proc:
    """Start ``python -m tvm.exec.rpc_tracker`` on 127.0.0.1."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
        "--port", str(port), "--port-end", str(port + 1),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, start_new_session=True, env=_python_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tracker = Proc(proc, port, "rpc_tracker")
    try:
        _wait_listening(port, proc)
    except RuntimeError:
        tracker.kill()
        raise
    return tracker


def wait_registered(tracker: Proc, key: str, count: int, timeout_s: float = 60.0) -> None:
    """Wait until ``count`` servers with ``key`` are free at the tracker."""
    _wait_free(tracker.port, key, count, [], timeout_s)


def _wait_free(
    port: int, key: str, count: int, procs: list[subprocess.Popen], timeout_s: float = 60.0
) -> None:
    from tvm import rpc

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a server exited with {proc.returncode} before registering")
        summary = rpc.connect_tracker("127.0.0.1", port).summary()
        free = summary.get("queue_info", {}).get(key, {}).get("free", 0)
        if free >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} servers with key {key!r} did not register in {timeout_s} s")


@pytest.fixture(autouse=True)
def _no_device_env(monkeypatch):
    """The user's board settings must not leak into the tests."""
    for name in DEVICE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rpc_server() -> Iterator[Proc]:
    """One loopback TVM RPC server (x86, real timings)."""
    server = start_server()
    yield server
    server.kill()


@pytest.fixture
def farm() -> Iterator[tuple[Proc, list[Proc]]]:
    """A tracker with two loopback servers registered under key ``loopback``."""
    tracker = start_tracker()
    servers: list[Proc] = []
    try:
        servers = start_servers(2, tracker.address)
        wait_registered(tracker, "loopback", 2)
        yield tracker, servers
    finally:
        for s in servers:
            s.kill()
        tracker.kill()


def tiny_net(width: int = 8, blocks: int = 2, classes: int = 10, seed: int = 0):
    """A small MobileNetV2-like network: Conv-BN-ReLU6 stem, depthwise blocks, linear head."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def cbr(i: int, o: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
        return [
            nn.Conv2d(i, o, 3 if groups > 1 or i == 3 else 1, stride,
                      1 if groups > 1 or i == 3 else 0, groups=groups, bias=False),
            nn.BatchNorm2d(o),
            nn.ReLU6(),
        ]  # fmt: skip

    layers: list[nn.Module] = [*cbr(3, width, 2)]
    for _ in range(blocks):
        layers += [*cbr(width, width, 1, groups=width), *cbr(width, width)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    return randomize_batchnorms(nn.Sequential(*layers).eval(), bias=0.2)


def randomize_batchnorms(model, bias: float = 0.5):
    """``model`` with every BatchNorm's statistics and affine parameters drawn far from the
    identity (uniform, from torch's generator), so folding them is really tested."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-bias, bias)
    return model


@pytest.fixture
def tiny():
    """(model, input) of a tiny network at 32x32."""
    import torch

    return tiny_net(), torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def sshd(tmp_path) -> Iterator[object]:
    """A real OpenSSH server on 127.0.0.1 (tests/device/sshd.py), stopped afterwards."""
    from . import sshd as sshd_module

    server = sshd_module.start(tmp_path / "sshd")
    yield server
    server.stop()


@dataclass
class Served:
    """An ``archkit serve`` subprocess."""

    proc: subprocess.Popen
    port: int
    stderr: str

    def stop(self) -> None:
        """SIGTERM (archkit serve stops its server child), then the group as a backstop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


def start_archkit_serve(*args: str, timeout_s: float = 90.0) -> Served:
    """``python -m archkit.cli serve --port FREE ARGS``; wait for its ready line."""
    import selectors

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "archkit.cli", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_python_env(),
        start_new_session=True,
    )  # fmt: skip
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line.startswith("ARCHKIT_SERVE_READY"):
                bound = int(line.split("port=", 1)[1].split()[0])
                return Served(proc, bound, "")
            if not line and proc.poll() is not None:
                break
    err = proc.stderr.read() if proc.poll() is not None else ""
    Served(proc, port, "").stop()
    raise RuntimeError(f"archkit serve did not start (exit {proc.returncode}):\n{err[-2000:]}")


@pytest.fixture
def archkit_serve() -> Iterator[Served]:
    """``archkit serve`` on 127.0.0.1 (its default), stopped afterwards."""
    served = start_archkit_serve()
    yield served
    served.stop()
