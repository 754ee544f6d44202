"""`archkit profile --device` fails before compiling, in under 10 s, with exit status 2 and one
message that says what answered: real listeners on 127.0.0.1 (nothing, an HTTP server, a silent
socket, an SSH-like banner), a real TVM tracker without boards, TVM's plain RPC server asked for
onnxruntime."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from .conftest import REPO, _python_env, free_port

TIME_LIMIT_S = 10.0


def _profile(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "profile", str(REPO / "specs/mobilenetv2.yaml"),
         "--device", "rpi4", *args],
        capture_output=True, text=True, cwd=REPO, env=_python_env(), timeout=120,
    )  # fmt: skip
    return proc, time.monotonic() - t0


def _assert_one_message(proc: subprocess.CompletedProcess, elapsed: float, found: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.1f} s"
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # nothing measured, nothing printed as a result
    first = proc.stderr.splitlines()[0]
    assert first.startswith("archkit: error: cannot use device 'rpi4'") or first.startswith(
        "archkit: error: the tracker"
    ), first
    assert found in first, first
    return first


@pytest.fixture
def http_server() -> Iterator[int]:
    """Python's own HTTP server on a free loopback port, in a thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # noqa: ANN002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_socket() -> Iterator[int]:
    """A listener that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    sock.close()


def test_closed_port():
    proc, elapsed = _profile("--host", "127.0.0.1", "--port", str(free_port()))
    _assert_one_message(proc, elapsed, "nothing listens there (connection refused)")
    assert "archkit serve" in proc.stderr  # the setup help follows the one-line message


def test_http_server(http_server):
    proc, elapsed = _profile("--host", "127.0.0.1", "--port", str(http_server))
    first = _assert_one_message(proc, elapsed, "an HTTP server")
    assert "HTTP/1.0 200 OK" in first


def test_silent_socket(silent_socket):
    proc, elapsed = _profile("--host", "127.0.0.1", "--port", str(silent_socket))
    _assert_one_message(proc, elapsed, "said nothing within 5 s")


def test_listener_with_a_banner_is_named():
    """A server that speaks first (SSH, SMTP, ...) is identified by its banner."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)

        def banner() -> None:
            conn, _ = sock.accept()
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            time.sleep(3)
            conn.close()

        threading.Thread(target=banner, daemon=True).start()
        proc, elapsed = _profile("--host", "127.0.0.1", "--port", str(sock.getsockname()[1]))
    _assert_one_message(proc, elapsed, "an SSH server ('SSH-2.0-OpenSSH_9.2p1 Debian-2')")


def test_tracker_without_boards():
    from .conftest import start_tracker

    tracker = start_tracker()
    try:
        proc, elapsed = _profile("--tracker", tracker.address, "--key", "rpi4")
    finally:
        tracker.kill()
    first = _assert_one_message(proc, elapsed, "has no board registered with key 'rpi4'")
    assert "boards registered there: none" in first


def test_tracker_address_that_is_an_http_server(http_server):
    proc, elapsed = _profile("--tracker", f"127.0.0.1:{http_server}")
    _assert_one_message(proc, elapsed, "an HTTP server")


def test_plain_rpc_server_cannot_serve_onnxruntime(rpc_server):
    """TVM's own rpc_server serves --runtime tvm; for onnxruntime it says to run archkit serve."""
    proc, elapsed = _profile("--host", "127.0.0.1", "--port", str(rpc_server.port),
                             "--runtime", "onnxruntime")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert elapsed < TIME_LIMIT_S
    first = proc.stderr.splitlines()[0]
    assert "has no archkit onnxruntime function" in first
    assert "start `archkit serve` on the board" in first
