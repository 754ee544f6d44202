"""The SSH tunnel path against a real OpenSSH server on loopback (tests/device/sshd.py): the
board's RPC server (`archkit serve`, bound to 127.0.0.1) is reached only through `ssh -L` that
archkit opens for the session and closes afterwards; authentication failures are one clear
message, exit status 2, no password prompt."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from archkit.device import DeviceError, check_reachable, load_device, measure_latency

from .conftest import REPO, _python_env, free_port, tiny_net

torch = pytest.importorskip("torch")
psutil = pytest.importorskip("psutil")


def _profile_file(tmp_path, sshd, board_port: int, **ssh_kw) -> str:
    path = tmp_path / "board.yaml"
    path.write_text(
        yaml.safe_dump({
            "name": "board",
            "target": "host",
            "threads": 2,
            "connection": {
                "kind": "rpc", "ssh": sshd.destination, "port": board_port,
                "ssh_options": sshd.ssh_options(**ssh_kw),
            },
        })
    )  # fmt: skip
    return str(path)


def _ssh_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("name") == "ssh" and any(marker in part for part in cmd):
            found.append(proc)
    return found


def test_tunnel_measures_tvm_and_closes(sshd, archkit_serve, tmp_path):
    dev = load_device(_profile_file(tmp_path, sshd, archkit_serve.port))
    assert dev.connection.ssh == sshd.destination and dev.connection.host is None
    model, x = tiny_net(width=8, blocks=1), torch.randn(1, 3, 32, 32)
    res = measure_latency(model, x, dev, repeats=3, name="tiny")
    assert res.max_abs_diff < 1e-4 and res.median_ms > 0
    tunnel = res.metadata["device"]["tunnel"]
    assert tunnel == f"ssh {sshd.destination} -> 127.0.0.1:{archkit_serve.port}"
    # The session went through sshd (the server binds the board's loopback only; archkit
    # talked to the tunnel's local end).
    assert "Accepted publickey for" in sshd.log()
    assert res.metadata["server"] != f"127.0.0.1:{archkit_serve.port}"
    # ... and the tunnel is gone afterwards.
    time.sleep(0.5)
    assert _ssh_processes(str(sshd.client_key)) == []


def test_cli_onnxruntime_through_the_tunnel(sshd, archkit_serve, tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\ninput: {resolution: 32, channels: 3}\nnum_classes: 10\nlayers:\n"
        "  - {op: conv2d, c: 16, s: 2}\n  - {op: bottleneck, t: 4, c: 16, n: 1, s: 1}\n"
        "  - {op: avgpool}\n  - {op: fc}\n"
    )
    device = _profile_file(tmp_path, sshd, archkit_serve.port)
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "profile", str(spec), "--device", device,
         "--runtime", "onnxruntime", "--repeats", "5", "--no-baselines", "--format", "json"],
        capture_output=True, text=True, cwd=REPO, env=_python_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (doc,) = json.loads(proc.stdout)  # always a list, one object per spec
    latency = doc["latency"]
    assert latency["metadata"]["runtime"] == "onnxruntime"
    assert latency["metadata"]["device"]["tunnel"].startswith(f"ssh {sshd.destination}")
    assert latency["max_abs_diff"] < 1e-3
    assert _ssh_processes(str(sshd.client_key)) == []


def _fails_fast(device: str, *extra: str) -> str:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "profile", str(REPO / "specs/mobilenetv2.yaml"),
         "--device", device, *extra],
        capture_output=True, text=True, cwd=REPO, env=_python_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 10
    assert "Traceback" not in proc.stderr
    return proc.stderr.splitlines()[0]


def test_key_not_authorized(sshd, tmp_path):
    from .sshd import _keygen

    stranger = tmp_path / "stranger"
    _keygen(stranger)
    first = _fails_fast(_profile_file(tmp_path, sshd, free_port(), key=stranger))
    assert f"the SSH tunnel to {sshd.destination} failed" in first
    assert "Permission denied (publickey)" in first
    assert "never asks for a password" in first


def test_unknown_host_key(sshd, tmp_path):
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    first = _fails_fast(_profile_file(tmp_path, sshd, free_port(), known_hosts=empty))
    assert "Host key verification failed" in first


def test_nothing_serving_on_the_board_side(sshd, tmp_path):
    """The tunnel comes up but nothing listens on the board's port: said so, before compiling."""
    dev = load_device(_profile_file(tmp_path, sshd, free_port()))
    t0 = time.monotonic()
    with pytest.raises(DeviceError) as info:
        check_reachable(dev)
    assert time.monotonic() - t0 < 10
    text = str(info.value)
    assert "the SSH tunnel is up, but nothing answered on the board's end" in text
    assert "is `archkit serve --port" in text
    assert _ssh_processes(str(sshd.client_key)) == []


def test_ssh_on_the_command_line_overrides_the_profile(tmp_path):
    dev = load_device("rpi4", ssh="pi@raspberrypi", port=9091)
    assert dev.connection.kind == "rpc" and dev.connection.ssh == "pi@raspberrypi"
    assert dev.connection.host is None and dev.connection.port == 9091
    assert "through an SSH tunnel" in dev.connection.describe()
    with pytest.raises(DeviceError, match="cannot be combined with a tracker"):
        load_device("rpi4", ssh="pi@raspberrypi", tracker="127.0.0.1:9190")
    with pytest.raises(DeviceError, match="must be an ssh destination"):
        load_device("rpi4", ssh="-oProxyCommand=evil")
