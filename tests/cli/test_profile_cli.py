"""The ``archkit`` command as a user runs it: exit codes, formats, lazy imports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from archkit import apply_overrides, load_spec
from archkit.cost import count

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
ARCHKIT = [sys.executable, "-m", "archkit.cli"]


def run(*args: str, check_rc: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*ARCHKIT, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


def test_help_imports_no_heavy_modules():
    code = (
        "import sys\n"
        "from archkit.cli import main\n"
        "rc = main(['--help'])\n"
        "heavy = [m for m in ('torch', 'tvm', 'optuna', 'plotly', 'pandas') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []"


def test_help_lists_profile():
    assert "profile" in run("--help").stdout


def test_json_totals_match_library_and_overrides():
    proc = run("profile", str(SPECS / "mobilenetv2.yaml"), "--width", "0.75", "--resolution",
               "160", "--format", "json", "--dtype", "fp16")
    [doc] = json.loads(proc.stdout)  # always a list, one object per spec
    spec = apply_overrides(load_spec(SPECS / "mobilenetv2.yaml"), width=0.75, resolution=160)
    costs = count(spec)
    assert doc["totals"]["madds"] == costs.madds
    assert doc["totals"]["params"] == costs.params
    assert doc["totals"]["peak_activation_bytes"] == costs.peak_activation_bytes("fp16")
    assert sum(row["madds"] for row in doc["stages"]) == costs.madds


def test_csv_per_layer_has_the_same_numbers_as_json():
    path = str(SPECS / "shufflenet_g3.yaml")
    csv = pd.read_csv(io.StringIO(run("profile", path, "--per-layer", "--format", "csv").stdout))
    [doc] = json.loads(run("profile", path, "--per-layer", "--format", "json").stdout)
    assert int(csv["madds"].sum()) == doc["totals"]["madds"]
    assert int(csv["params"].sum()) == doc["totals"]["params"]
    assert len(csv) == len(doc["layers"])


def test_tf_slim_convention_reproduces_published_mobilenetv2_params():
    # TF-slim README: MobileNetV2 1.0 has 3.47 M parameters (1001 classes, no BatchNorm).
    [doc] = json.loads(run("profile", str(SPECS / "mobilenetv2.yaml"), "--convention", "tf-slim",
                           "--format", "json").stdout)
    assert round(doc["totals"]["params"] / 1e6, 2) == 3.47


def test_table_output_for_several_specs():
    out = run("profile", *(str(p) for p in sorted(SPECS.glob("*.yaml")))).stdout
    for name in ("mobilenetv2", "mobilenetv1", "shufflenet_g3"):
        assert name in out
    assert "total" in out


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("layers: [{op: bottleneck, t: 6, c: 24, s: 3}]",
         "row 0 (bottleneck): s: must be one of 1, 2"),
        ("layers: [{op: conv2d, c: 32}, {op: warp, c: 8}]", "row 1: op: unknown operator 'warp'"),
        ("layers: [{op: conv2d, c: 32, colour: red}]", "row 0 (conv2d): colour: unknown key"),
        ("layers: [{op: conv2d, c: -4}]", "row 0 (conv2d): c: must be at least 1"),
        ("layers: [{op: conv2d, c: 30, groups: 4}]", "row 0 (conv2d): groups"),
        ("layers: [{op: conv2d, c: 8", "not valid YAML"),
        ("!!python/object/apply:os.system ['echo pwned']", "not valid YAML"),
    ],
)
def test_bad_spec_exits_2_with_a_located_message(tmp_path, text, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    proc = run("profile", str(bad), check_rc=2)
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr
    assert needle in proc.stderr
    assert "pwned" not in proc.stdout + proc.stderr


def test_missing_file_and_bad_override_exit_2(tmp_path):
    proc = run("profile", str(tmp_path / "nope.yaml"), check_rc=2)
    assert "cannot read the spec" in proc.stderr
    proc = run("profile", str(SPECS / "mobilenetv2.yaml"), "--width", "-1", check_rc=2)
    assert "--width" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("profile", str(SPECS / "mobilenetv2.yaml"), "--dtype", "fp64", check_rc=2)
    assert "Traceback" not in proc.stderr
