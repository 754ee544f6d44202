"""Emulated aarch64 (Cortex-A72 / Raspberry Pi 4 class) TVM RPC device for tests.

An aarch64 Debian python3.11 with the aarch64 ``apache-tvm`` wheels runs under
``qemu-aarch64-static`` (user-mode emulation, no binfmt_misc needed) and serves TVM RPC on
127.0.0.1. Host-side code talks to it exactly like to a real board::

    remote = tvm.rpc.connect(dev.host, dev.port)

Numbers measured on it are EMULATED timings (qemu TCG on the host's CPU), useful only to check
that the measure path works -- never as device latency. See docs/emulated_device.md.

Use from a conftest.py::

    from tests.device.emulated import emulated_arm64_rpc  # noqa: F401  (pytest fixture)

Environment:
    ARCHKIT_SKIP_EMULATED=1        skip tests that need the fixture (instead of failing)
    ARCHKIT_EMULATED_CACHE=DIR     cache dir for scripts/emulated_arm64.sh (default .cache/arm64)
    ARCHKIT_EMULATED_TIMEOUT=SECS  server start-up timeout (default 180)
    ARCHKIT_EMULATED_SETUP_TIMEOUT=SECS  set-up script timeout (default 1800)

Run the server by hand (Ctrl-C stops it)::

    .venv/bin/python tests/device/emulated.py [--port 9090]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "emulated_arm64.sh"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "arm64"
READY_MARK = "ARCHKIT_RPC_READY"
# The board-side functions `archkit serve` registers (onnxruntime timing); self-contained.
BOARD_FUNCTIONS = REPO_ROOT / "archkit" / "device" / "_ort_remote.py"

# Runs INSIDE the emulator (aarch64 python3.11). A minimal TVM RPC server: same handshake as
# tvm.rpc.server._listen_loop (key "" / "client:"), same session environment
# (tvm.rpc.server._server_env: upload / load_module / workpath globals) and the same C++ loop
# (rpc.ServerLoop). Differences from tvm.rpc.Server, which cannot work under qemu-user without
# binfmt_misc because it re-execs sys.executable through PopenWorker:
#   * no PopenWorker: the listener runs in this process;
#   * each session is served in an os.fork()ed child (fork needs no exec), so a crashing
#     kernel or a hung session never takes the server down; "-timeout=N" from
#     rpc.connect(session_timeout=N) is enforced with SIGALRM in the child;
#   * sessions are concurrent (a leaked session cannot dead-lock the next test), unless
#     --serial (one at a time, like the upstream server) or --no-fork (in-process, serial).
_SERVER_SRC = r'''
import argparse, os, signal, socket, struct, sys, threading, time, traceback
T0 = time.time()
ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--parent-pid", type=int, default=0)
ap.add_argument("--serial", action="store_true")
ap.add_argument("--no-fork", action="store_true")
ap.add_argument("--register", default="", help="a module file whose register() adds globals")
args = ap.parse_args()

import tvm
from tvm.rpc import _ffi_api, base
from tvm.rpc.server import _parse_server_opt, _server_env
from tvm.support import utils

def log(msg):
    print("[emulated-rpc %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)

if args.parent_pid:
    def _watch_parent():
        while True:
            time.sleep(2)
            if os.getppid() != args.parent_pid:
                log("parent %d is gone; exiting" % args.parent_pid)
                os._exit(0)
    threading.Thread(target=_watch_parent, daemon=True).start()

if args.register:  # what `archkit serve` registers (archkit/device/_ort_remote.py), by path
    import importlib.util
    _spec = importlib.util.spec_from_file_location("archkit_board_functions", args.register)
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    _mod.register()  # sessions are os.fork()ed children: they inherit the registry
    log("registered %s (onnxruntime %s)" % (args.register, _mod.onnxruntime_version() or "missing"))

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind((args.host, args.port))
sock.listen(16)

def handshake(conn):
    """tvm.rpc.server._accept_conn without a tracker; returns the session options or None."""
    magic = struct.unpack("<i", base.recvall(conn, 4))[0]
    if magic != base.RPC_MAGIC:
        return None
    keylen = struct.unpack("<i", base.recvall(conn, 4))[0]
    key = base.recvall(conn, keylen).decode("utf-8").split()
    if not key or key[0] != "client:":
        conn.sendall(struct.pack("<i", base.RPC_CODE_MISMATCH))
        log("mismatched key %r" % (key,))
        return None
    conn.sendall(struct.pack("<i", base.RPC_CODE_SUCCESS))
    server_key = b"server:"
    conn.sendall(struct.pack("<i", len(server_key)))
    conn.sendall(server_key)
    return _parse_server_opt(key[1:])

def serve(conn, opts):
    work = utils.tempdir()
    os.chdir(work.path)
    _server_env(None, work)
    fd = conn.detach()  # ServerLoop owns (and closes) the fd
    timeout = opts.get("timeout")
    if timeout:
        def _expire():  # like tvm.rpc.server._serving: tell the client, then end the session
            time.sleep(timeout)
            try:
                _ffi_api.ReturnException(
                    fd, "RPCSessionTimeoutError: Your %ss session has expired, try to increase "
                    'the "session_timeout" value.' % timeout)
            finally:
                os._exit(3)
        threading.Thread(target=_expire, daemon=True).start()
        signal.alarm(int(timeout) + 5)  # backstop if the thread cannot get the GIL
    try:
        _ffi_api.ServerLoop(fd)
    finally:
        os.chdir("/")
        work.remove()

children = set()
ended_early = set()  # reaped (SIGCHLD) before the parent registered the pid
def reap(block=False):
    while True:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            children.discard(pid)
        else:
            ended_early.add(pid)
        code = os.waitstatus_to_exitcode(status)
        if code == 3:
            log("session process %d: session timeout expired" % pid)
        elif code < 0:
            log("session process %d killed by signal %d" % (pid, -code))
        elif code:
            log("session process %d exited with %d" % (pid, code))
        if block:
            return

def _term(signum, frame):
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)
signal.signal(signal.SIGTERM, _term)
if not args.serial:
    signal.signal(signal.SIGCHLD, lambda signum, frame: reap())  # no zombies between sessions

log("%s port=%d pid=%d tvm=%s import_s=%.1f" % (
    "ARCHKIT_RPC_READY", sock.getsockname()[1], os.getpid(), tvm.__version__, time.time() - T0))
while True:
    conn, addr = sock.accept()
    try:
        opts = handshake(conn)
    except Exception as exc:  # port probes that connect and close, garbage, ...
        log("no RPC handshake from %s:%d (%s; a port probe?)" % (addr[0], addr[1], exc))
        opts = None
    if opts is None:
        conn.close()
        continue
    log("session from %s:%d opts=%s" % (addr[0], addr[1], opts))
    if args.no_fork:
        try:
            serve(conn, {})
        except Exception:
            traceback.print_exc()
        log("session end")
        continue
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            sock.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            serve(conn, opts)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    conn.close()
    children.add(pid)
    if pid in ended_early:
        children.discard(pid)
        ended_early.discard(pid)
    if args.serial:
        reap(block=True)
'''


class EmulatedRPC(NamedTuple):
    """What the fixture yields; unpacks as ``host, port, emulated = dev``."""

    host: str
    port: int
    emulated: bool = True

    def connect(self, **kwargs):
        """``tvm.rpc.connect`` to this device."""
        from tvm import rpc

        return rpc.connect(self.host, self.port, **kwargs)


class EmulatedDeviceError(RuntimeError):
    pass


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def ensure_setup(cache_dir: Path | None = None, timeout: float | None = None) -> Path:
    """Run scripts/emulated_arm64.sh (idempotent); return the arm64 python wrapper path."""
    cache_dir = Path(cache_dir or os.environ.get("ARCHKIT_EMULATED_CACHE") or DEFAULT_CACHE)
    timeout = timeout or float(os.environ.get("ARCHKIT_EMULATED_SETUP_TIMEOUT", "1800"))
    env = dict(os.environ)
    env.setdefault("ARCHKIT_HOST_PYTHON", sys.executable)
    env.setdefault("ARCHKIT_EMULATED_WARM_VERIFY", "0")  # the server start imports tvm anyway
    try:
        proc = subprocess.run(
            ["bash", str(SETUP_SCRIPT), str(cache_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise EmulatedDeviceError(
            f"{SETUP_SCRIPT.name} timed out after {timeout:.0f}s:\n{_tail(out)}"
        ) from None
    if proc.returncode != 0:
        raise EmulatedDeviceError(
            f"{SETUP_SCRIPT.name} {cache_dir} failed (exit {proc.returncode}):\n"
            f"{_tail(proc.stdout)}"
        )
    for line in proc.stdout.splitlines():
        if line.startswith("ARCHKIT_ARM64_PYTHON="):
            return Path(line.split("=", 1)[1])
    raise EmulatedDeviceError(f"set-up printed no ARCHKIT_ARM64_PYTHON line:\n{_tail(proc.stdout)}")


class EmulatedArm64Server:
    """Start/stop the TVM RPC server under qemu-aarch64 on 127.0.0.1 (free port)."""

    def __init__(
        self,
        python: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float | None = None,
        log_path: Path | None = None,
        serial: bool = False,
    ):
        self.python = Path(python)
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.timeout = timeout or float(os.environ.get("ARCHKIT_EMULATED_TIMEOUT", "180"))
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        default_log = self.python.parent.parent / f"rpc_server{'-' + worker if worker else ''}.log"
        self.log_path = Path(log_path or default_log)
        self.serial = serial
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return "(no log)"

    def start(self) -> EmulatedRPC:
        t0 = time.monotonic()
        cmd = [
            str(self.python),
            "-u",
            "-c",
            _SERVER_SRC,
            "--host",
            self.host,
            "--port",
            str(self.requested_port),
            "--parent-pid",
            str(os.getpid()),
            "--register",
            str(BOARD_FUNCTIONS),
        ]
        if self.serial:
            cmd.append("--serial")
        env = dict(os.environ, TVM_USE_RUNTIME_LIB="1")  # runtime only, as on a real board
        for var in ("PYTHONPATH", "PYTHONHOME", "TVM_LIBRARY_PATH"):
            env.pop(var, None)  # the host's (x86) packages/libraries must not leak in
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd="/",
            )
        finally:
            log.close()
        deadline = t0 + self.timeout
        while self.port is None:
            if self.proc.poll() is not None:
                raise EmulatedDeviceError(
                    f"emulated RPC server exited with {self.proc.returncode} before listening; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmulatedDeviceError(
                    f"emulated RPC server not listening after {self.timeout:.0f}s "
                    f"(ARCHKIT_EMULATED_TIMEOUT); log {self.log_path}:\n{self.log_tail()}"
                )
            for line in self.log_tail(200).splitlines():
                if READY_MARK in line:
                    self.port = int(line.split("port=", 1)[1].split()[0])
                    break
            else:
                time.sleep(0.2)
        self._probe(deadline)
        self.startup_s = time.monotonic() - t0
        return EmulatedRPC(self.host, self.port, True)

    def _probe(self, deadline: float) -> None:
        """A full TVM RPC session (handshake + one remote call) proves it really serves."""
        from tvm import rpc

        last = None
        while time.monotonic() < deadline:
            try:
                sess = rpc.connect(self.host, self.port, session_timeout=60)
                # Round trips: a global of the server's session env, and the remote CPU.
                workpath = sess.get_function("tvm.rpc.server.workpath")("probe")
                ok = bool(workpath) and sess.cpu(0).exist
                del sess
                if ok:
                    return
                last = f"unexpected probe answer: workpath={workpath!r}"
            except Exception as exc:  # noqa: BLE001 - report whatever went wrong
                last = f"{type(exc).__name__}: {exc}"
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise EmulatedDeviceError(
            f"emulated RPC server on {self.host}:{self.port} did not answer an RPC session "
            f"({last}); log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def __enter__(self) -> EmulatedRPC:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def emulated_arm64_rpc(pytestconfig):
    """Session-wide emulated aarch64 TVM RPC device: yields EmulatedRPC(host, port, emulated=True).

    Fails (does not skip) when set-up or start-up fails, with the error tail, unless
    ARCHKIT_SKIP_EMULATED=1, which skips instead.
    """
    if os.environ.get("ARCHKIT_SKIP_EMULATED") == "1":
        pytest.skip("ARCHKIT_SKIP_EMULATED=1: emulated aarch64 RPC device disabled")
    error = None
    try:
        t0 = time.monotonic()
        python = ensure_setup()
        setup_s = time.monotonic() - t0
        server = EmulatedArm64Server(python)
        dev = server.start()
    except EmulatedDeviceError as exc:
        error = str(exc)
    if error is not None:  # outside `except`: no chained traceback in the report
        pytest.fail(
            "emulated aarch64 RPC device unavailable "
            f"(set ARCHKIT_SKIP_EMULATED=1 to skip instead):\n{error}",
            pytrace=False,
        )
    msg = (
        f"[emulated-arm64] EMULATED aarch64 TVM RPC device at {dev.host}:{dev.port} "
        f"(set-up {setup_s:.1f}s, server start {server.startup_s:.1f}s, log {server.log_path})"
    )
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # not under xdist workers
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(msg)
    else:
        sys.stderr.write(msg + "\n")
    try:
        yield dev
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Run the emulated aarch64 TVM RPC server.")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--serial", action="store_true", help="one session at a time")
    args = ap.parse_args(argv)
    python = ensure_setup(args.cache)
    server = EmulatedArm64Server(python, host=args.host, port=args.port, serial=args.serial)
    dev = server.start()
    print(
        f"EMULATED aarch64 TVM RPC server: tvm.rpc.connect({dev.host!r}, {dev.port}) "
        f"(log {server.log_path}); Ctrl-C to stop",
        flush=True,
    )
    try:
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
