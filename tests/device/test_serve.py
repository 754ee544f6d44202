"""`archkit serve` started as a subprocess on 127.0.0.1, measured through with both runtimes:
TVM (compiled library uploaded over RPC) and onnxruntime (the .onnx file uploaded, archkit's
function called there), each checked against PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archkit.device import load_device, measure_onnxruntime

from .conftest import REPO, TINY, _python_env, start_archkit_serve, tiny_net

torch = pytest.importorskip("torch")
psutil = pytest.importorskip("psutil")



def _listening(pid: int) -> set[tuple[str, int]]:
    """Listening TCP addresses of a process and its children."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    found = set()
    for proc in procs:
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def test_serve_binds_loopback_by_default(archkit_serve):
    assert _listening(archkit_serve.proc.pid) == {("127.0.0.1", archkit_serve.port)}


def test_serve_warns_before_exposing_the_port():
    """Any non-loopback address gets the warning first (192.0.2.1, TEST-NET-1, is not ours, so
    nothing is exposed here: the bind fails after the warning)."""
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "serve", "--host", "192.0.2.1", "--port", "9090"],
        capture_output=True, text=True, cwd=REPO, env=_python_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "WARNING: listening on 192.0.2.1:9090" in proc.stderr
    assert "anyone who can reach this port can run any code on this machine" in proc.stderr
    assert "cannot listen on 192.0.2.1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_usage_errors_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "serve", "--key", "rpi4"],
        capture_output=True, text=True, cwd=REPO, env=_python_env(), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--key" in proc.stderr and "--tracker" in proc.stderr


def test_onnxruntime_through_serve_matches_pytorch(archkit_serve):
    dev = load_device("host", host="127.0.0.1", port=archkit_serve.port)
    model, x = tiny_net(width=8, blocks=2), torch.randn(1, 3, 32, 32)
    res = measure_onnxruntime(model, x, dev, repeats=5, name="tiny")
    with torch.no_grad():
        scale = float(model(x).abs().max())
    assert scale > 0.1  # non-trivial outputs: the check below means something
    assert res.max_abs_diff < 1e-4
    assert 0 < res.min_ms <= res.median_ms <= res.p90_ms <= res.max_ms
    meta = res.metadata
    assert meta["runtime"] == "onnxruntime" and meta["server"] == f"127.0.0.1:{archkit_serve.port}"
    import onnxruntime

    assert meta["onnxruntime_version"] == onnxruntime.__version__
    assert meta["providers"] == ["CPUExecutionProvider"]
    assert res.number >= 1 and res.repeats == 5


def test_profile_cli_both_runtimes_through_serve(archkit_serve, tmp_path):
    """`archkit profile --runtime tvm|onnxruntime` against the same `archkit serve`."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    docs = {}
    for runtime in ("tvm", "onnxruntime"):
        proc = subprocess.run(
            [sys.executable, "-m", "archkit.cli", "profile", str(spec), "--device", "host",
             "--host", "127.0.0.1", "--port", str(archkit_serve.port), "--runtime", runtime,
             "--repeats", "5", "--no-baselines", "--format", "json"],
            capture_output=True, text=True, cwd=REPO, env=_python_env(), timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        (doc,) = json.loads(proc.stdout)  # always a list, one object per spec
        docs[runtime] = doc["latency"]
    for runtime, latency in docs.items():
        assert latency["metadata"]["runtime"] == runtime
        assert latency["metadata"]["server"] == f"127.0.0.1:{archkit_serve.port}"
        assert latency["max_abs_diff"] < 1e-3 and latency["median_ms"] > 0


def test_serve_registered_with_a_tracker():
    """`archkit serve --tracker` registers the board; onnxruntime through the tracker."""
    from .conftest import start_tracker, wait_registered

    tracker = start_tracker()
    served = None
    try:
        served = start_archkit_serve("--tracker", tracker.address, "--key", "pi")
        wait_registered(tracker, "pi", 1)
        dev = load_device("host", tracker=tracker.address, key="pi")
        model, x = tiny_net(width=4, blocks=1), torch.randn(1, 3, 16, 16)
        res = measure_onnxruntime(model, x, dev, repeats=3)
        assert res.max_abs_diff < 1e-4 and res.metadata["runtime"] == "onnxruntime"
    finally:
        if served is not None:
            served.stop()
        tracker.kill()


def test_only_loopback_counts_as_safe():
    from archkit.cli.serve import _exposure_warning, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.7")
    text = _exposure_warning("0.0.0.0", 9090)
    assert "listening on 0.0.0.0:9090" in text and "run any code on this machine" in text
