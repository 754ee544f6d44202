"""``archkit profile --device``: compiled through TVM, checked against PyTorch, timed."""

from __future__ import annotations

import json
import os
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


def _profile(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "profile", str(spec), "--device", "host",
         "--repeats", "5", "--no-baselines", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc


def test_per_layer_json_has_measured_times_and_the_overhead(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    [doc] = json.loads(_profile(spec, "--per-layer", "--format", "json").stdout)
    profile = doc["profile"]
    assert profile["e2e_ms"] == doc["latency"]["median_ms"]
    assert "kernel_profile" not in doc["latency"]  # one place: doc["profile"]
    assert profile["overhead_ms"] == pytest.approx(profile["profiled_run_ms"] - profile["e2e_ms"])
    stage_ms = [s["measured_ms"] for s in doc["stages"]]
    assert sum(stage_ms) + profile["network_ms"] == pytest.approx(profile["rows_ms"])
    assert sum(layer["measured_us"] for layer in doc["layers"]) / 1e3 == pytest.approx(
        profile["nodes_ms"])
    for layer in doc["layers"]:
        if layer["prim"] == "conv":
            assert layer["measured_us"] > 0
            assert layer["ns_per_madd"] == pytest.approx(layer["measured_us"] * 1e3
                                                         / layer["madds"])


def test_per_layer_csv_carries_latency_and_measured_columns(tmp_path):
    import csv

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    proc = _profile(spec, "--per-layer", "--runtime", "onnxruntime", "--format", "csv")
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert {"latency_ms", "measured_us", "share", "ns_per_madd"} <= set(rows[0])
    assert len({row["latency_ms"] for row in rows}) == 1 and float(rows[0]["latency_ms"]) > 0
    assert rows[-1]["block"] == "network"  # the time no layer owns, so the rows add up
    assert sum(float(row["share"]) for row in rows) == pytest.approx(1.0)
    # Without --per-layer the network's latency is still there, on every stage row.
    stages = list(csv.DictReader(_profile(spec, "--runtime", "onnxruntime", "--format",
                                          "csv").stdout.splitlines()))
    assert all(float(row["latency_ms"]) > 0 for row in stages)
    assert "measured_ms" not in stages[0]


def test_per_layer_table_shows_time_per_madd_and_the_overhead(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = _profile(spec, "--per-layer").stdout
    for said in ("ns/MAdd", "measured per stage row", "network", "profiler overhead",
                 "per-row times sum to"):
        assert said in out, out
