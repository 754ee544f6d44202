"""``archkit profile --device``: compiled through TVM, checked against PyTorch, timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

tvm = pytest.importorskip("tvm")

ROOT = Path(__file__).resolve().parents[2]

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


def test_profile_on_the_host_device_reports_checked_latency(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "profile", str(spec), "--device", "host",
         "--repeats", "5", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    # Only archkit's own output: no exporter notices, no torch FutureWarning.
    for noise in ("Warning", "torchvision", "warn("):
        assert noise not in proc.stderr, proc.stderr
    [doc] = json.loads(proc.stdout)
    latency = doc["latency"]
    assert latency["label"] == "device" and not latency["emulated"]
    assert 0 < latency["min_ms"] <= latency["median_ms"] <= latency["p90_ms"]
    # Calibrated BatchNorm: the outputs are O(1), so this bound means the program is right.
    assert latency["max_abs_diff"] < 1e-3
    assert latency["metadata"]["tvm_version"] == tvm.__version__
    assert latency["host_baselines"]["onnxruntime_ms"] > 0


def test_unreachable_device_fails_fast_with_instructions(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "profile", str(ROOT / "specs/mobilenetv2.yaml"),
         "--device", "rpi4", "--host", "127.0.0.1", "--port", "9"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "tvm.exec.rpc_server" in proc.stderr


def test_runtime_and_ssh_options_are_checked_before_anything_runs():
    """--tune with --runtime onnxruntime, and --ssh with --tracker, are usage errors (exit 2)."""
    spec = str(ROOT / "specs/mobilenetv2.yaml")
    for extra, said in (
        (["--runtime", "onnxruntime", "--tune", "8"], "--tune tunes TVM"),
        (["--ssh", "pi@board", "--tracker", "127.0.0.1:9190"], "cannot be combined with a tracker"),
        (["--runtime", "tflite"], "Invalid value for '--runtime'"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "archkit.cli", "profile", spec, "--device", "rpi4", *extra],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, (extra, proc.stderr)
        assert said in proc.stderr and "Traceback" not in proc.stderr
