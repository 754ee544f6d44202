"""``archkit latency list`` and ``archkit profile --predict`` as a user runs them, on a model
fitted to synthetic per-kernel times (no measurement: these check the plumbing, not accuracy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archkit import apply_overrides, load_spec
from archkit.device import TimingProtocol, load_device
from archkit.device._latency._conditions import current_conditions
from archkit.device._latency._kernels import kernel_rows, network_fingerprint
from archkit.device._latency._model import fit_model
from archkit.device._latency._store import model_path, write_model_json
from archkit.ops import lower

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "mobilenetv2.yaml"


def _synthetic_records() -> list[dict]:
    records = []
    base = load_spec(SPEC)
    for i, (width, resolution) in enumerate([(w, r) for w in (0.35, 0.5, 0.75, 1.0)
                                             for r in (96, 128, 160, 192, 224)]):
        network = lower(apply_overrides(base, width=width, resolution=resolution))
        kernels = list(kernel_rows(network))
        # 1 us per 100k MAdds plus 3 us per kernel; 0.2 ms of per-run overhead.
        times = {f"{b}:{n}": f[9] / 1e5 + 3.0 for b, n, _, f in kernels}
        records.append({
            "name": f"net{i}", "fingerprint": network_fingerprint(network),
            "kernels": [[b, n, k, list(f)] for b, n, k, f in kernels], "kernels_us": times,
            "e2e_ms": sum(times.values()) / 1e3 + 0.2,
        })
    return records


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    conditions = current_conditions(load_device("host"), "onnxruntime")
    # A short protocol: `latency evaluate` times its networks with the model's.
    fast = TimingProtocol(warmup_runs=2, repeats=3, min_repeat_ms=2.0, interleave=3,
                          profile_runs=3, probe_pause_s=0.0)
    model, stats = fit_model(_synthetic_records(), conditions, fast,
                             {"networks": 20, "kernels": 0, "created": "now"})
    assert stats["out_of_fold_within_10pct"] == 1.0  # an exact sum is learned as one
    write_model_json(model_path("host", "onnxruntime", folder), model.to_json())
    return folder


def run(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHKIT_CACHE_DIR": str(cache), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "archkit.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env=env)


def test_latency_list(cache):
    proc = run(cache, "latency", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)
    assert (entry["device"], entry["runtime"], entry["networks"]) == ("host", "onnxruntime", 20)
    table = run(cache, "latency", "list")
    assert table.returncode == 0 and "onnxruntime" in table.stdout


def test_profile_predict_json_has_total_and_stage_predictions(cache):
    proc = run(cache, "profile", str(SPEC), "--device", "host", "--runtime", "onnxruntime",
               "--predict", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    [doc] = json.loads(proc.stdout)  # one document per spec
    stages = [s["predicted_ms"] for s in doc["stages"]]
    assert all(ms is not None for ms in stages)
    assert doc["predicted_latency_ms"] == pytest.approx(
        sum(stages) + doc["latency"]["predicted_overhead_ms"])
    assert "latency_ms" not in doc  # --predict alone measures nothing
    # The synthetic device: MobileNetV2 1.0/224's MAdds / 100k us plus 3 us per kernel + 0.2 ms.
    network = lower(load_spec(SPEC))
    expected = sum(f[9] / 1e5 + 3.0 for *_, f in kernel_rows(network)) / 1e3 + 0.2
    # The linear baseline extrapolates: 1.0/224 is the largest network measured.
    assert doc["predicted_latency_ms"] == pytest.approx(expected, rel=0.01)


def test_profile_predict_without_model_is_exit_2(cache):
    proc = run(cache, "profile", str(SPEC), "--device", "host", "--predict")  # runtime tvm
    assert proc.returncode == 2
    assert "archkit latency build host --runtime tvm" in proc.stderr


def test_predict_needs_device(cache):
    proc = run(cache, "profile", str(SPEC), "--predict")
    assert proc.returncode == 2 and "--device" in proc.stderr


def test_profile_predict_csv_carries_the_predictions(cache):
    import csv

    proc = run(cache, "profile", str(SPEC), "--device", "host", "--runtime", "onnxruntime",
               "--predict", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    [doc] = json.loads(run(cache, "profile", str(SPEC), "--device", "host", "--runtime",
                           "onnxruntime", "--predict", "--format", "json").stdout)
    assert [float(r["predicted_ms"]) for r in rows] == pytest.approx(
        [s["predicted_ms"] for s in doc["stages"]])
    assert [float(r["predicted_latency_ms"]) for r in rows] == pytest.approx(
        [doc["predicted_latency_ms"]] * len(rows))
    assert "latency_ms" not in rows[0]  # --predict alone measures nothing


def test_compile_jobs_option_sets_the_workers(monkeypatch):
    """``--compile-jobs N`` is what the library's compile_jobs() then reads (ARCHKIT_COMPILE_JOBS,
    also the option's environment variable); a count below 1 is a usage error naming both."""
    from archkit.cli.latency import build, evaluate
    from archkit.device._latency._compiling import compile_jobs

    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "1")  # (restored after the test)
    for command, args in ((build, ["host"]), (evaluate, ["host", "--networks", "1"])):
        command.make_context(command.name, [*args, "--compile-jobs", "3"])
        assert compile_jobs() == 3
        monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "1")
    out = run(Path("."), "latency", "evaluate", "host", "--networks", "1", "--compile-jobs", "0")
    assert out.returncode == 2 and "--compile-jobs" in out.stderr
    env_out = subprocess.run([sys.executable, "-m", "archkit.cli", "latency", "build", "host"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120,
                             env={**os.environ, "ARCHKIT_COMPILE_JOBS": "x"})
    assert env_out.returncode == 2 and "ARCHKIT_COMPILE_JOBS" in env_out.stderr


def test_draw_option_offers_the_library_draws():
    """``latency build --draw`` lists its choices inline (archkit.search imports pandas, which
    the CLI keeps out of its import): they are archkit.search.DRAWS, and another is refused."""
    from archkit.cli.latency import build
    from archkit.search import DRAWS

    [option] = [p for p in build.params if p.name == "draw"]
    assert tuple(option.type.choices) == DRAWS and option.default == "random"
    out = run(Path("."), "latency", "build", "host", "--draw", "halton")
    assert out.returncode == 2 and "--draw" in out.stderr


def test_latency_evaluate_prints_the_prediction_the_noise_floor_and_the_mean_of_both(
        cache, tmp_path):
    space = tmp_path / "small.yaml"  # small networks: quick to time
    space.write_text(
        "name: small\nbase:\n  name: small\n  input: {resolution: 32, channels: 3}\n"
        "  num_classes: 10\n  width: 1.0\n  layers:\n    - {op: conv2d, c: 16, s: 2}\n"
        "    - {op: bottleneck, t: 6, c: 16, n: 2, s: 2}\n    - {op: conv2d, c: 64, kernel: 1}\n"
        "    - {op: avgpool}\n    - {op: fc}\nwidth: {low: 0.5, high: 1.0}\n"
        "resolution: {low: 32, high: 64, step: 16}\n")
    out = run(cache, "latency", "evaluate", "host", "--networks", "2", "--seed", "3",
              "--space", str(space), "--output-dir", str(tmp_path), "--no-png")
    assert out.returncode == 0, out.stderr[-2000:]
    for label in ("prediction vs measured", "measured twice (noise floor)",
                  "prediction vs the mean of both"):
        assert label in out.stdout
    import pandas as pd

    rows = pd.read_csv(tmp_path / "latency_host_onnxruntime.csv")
    mean = (rows["measured_ms"] + rows["measured_again_ms"]) / 2
    assert rows["error_vs_mean"].tolist() == pytest.approx(
        ((rows["predicted_ms"] - mean).abs() / mean).tolist())

    # Run again into the same folder: the earlier evaluation's files are refused before
    # anything is measured (the CSV is left as it was), naming the file and both ways out.
    csv = tmp_path / "latency_host_onnxruntime.csv"
    before = csv.read_bytes()
    again = run(cache, "latency", "evaluate", "host", "--networks", "2", "--seed", "4",
                "--space", str(space), "--output-dir", str(tmp_path), "--no-png")
    assert again.returncode == 2
    assert str(csv) in again.stderr and "nothing was measured" in again.stderr
    assert "--output-dir" in again.stderr and "--overwrite" in again.stderr
    assert "measuring" not in again.stderr and csv.read_bytes() == before
    replaced = run(cache, "latency", "evaluate", "host", "--networks", "1", "--seed", "4",
                   "--space", str(space), "--output-dir", str(tmp_path), "--no-png",
                   "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert len(pd.read_csv(csv)) == 1
