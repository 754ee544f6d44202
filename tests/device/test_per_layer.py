"""Measured time per layer (``measure_specs(..., profile_runs=N)``, ``archkit profile --device DEV
--per-layer``): TVM's instrumented VM and onnxruntime's profiler, in this process and on a board
through ``archkit serve`` on 127.0.0.1; TVM's plain rpc_server is refused before compiling.

The per-row times must add up to the uninstrumented whole-network median within the profiler's
overhead as measured in the same run (plus the timing noise of that median, also measured)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archkit import apply_overrides, load_spec
from archkit.cost import cost_table
from archkit.device import DeviceError, KernelProfile, check_reachable, load_device, measure_specs

from .conftest import REPO, TINY, _python_env

pytest.importorskip("torch")
pytest.importorskip("tvm")


RUNS = 10


def _small_mobilenetv2():
    """MobileNetV2 0.35 at 32x32: every row of the paper's table (strides, residual adds, the
    wide last conv) in a network that compiles in seconds; its last rows run on 1x1 maps,
    where a conv's bias has the shape of its output (not to be taken for a residual add)."""
    return apply_overrides(load_spec(REPO / "specs" / "mobilenetv2.yaml"), width=0.35,
                           resolution=32)


def _tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return load_spec(path)


def _check_per_layer(measured) -> KernelProfile:
    """Every measured key is a layer of the spec, every conv with MAdds got time, and the rows
    add up to the whole-network time within the measured profiler overhead."""
    assert not measured.failed, measured.result
    result = measured.result
    profile = result.kernel_profile
    assert profile is not None and profile.runs == RUNS
    layers = cost_table(measured.spec).layer_records
    layer_us, stage_ms = profile.per_layer(layers)  # raises on a key naming no layer
    for row, us in zip(layers, layer_us, strict=True):
        if row["prim"] == "conv" and row["madds"] > 0:
            assert us > 0, f"no time for conv layer {row['block']}:{row['node']}"
    assert set(stage_ms) == {row["stage"] for row in layers}
    assert sum(stage_ms.values()) + profile.network_ms == pytest.approx(profile.rows_ms)
    # The overhead figures come from this very measurement: the e2e median is the result's.
    assert profile.e2e_ms == result.median_ms
    assert profile.overhead_ms == pytest.approx(profile.profiled_run_ms - result.median_ms)
    # A profiled run spends time outside its timed kernels (the profiler itself, dispatch).
    assert profile.outside_kernels_ms > 0
    # Noise: two medians of the same network taken at different moments differ by up to the
    # spread of its timed repeats (p90 - fastest), measured here on this (shared) machine.
    noise_ms = result.p90_ms - result.min_ms
    assert abs(profile.rows_ms - result.median_ms) <= abs(profile.overhead_ms) + noise_ms, (
        profile.to_dict(), result.to_dict())
    json.dumps(measured.to_dict())
    return profile


@pytest.mark.filterwarnings("ignore:.*feature map is 1x1")
def test_tvm_per_layer_on_the_host():
    [measured] = measure_specs([_small_mobilenetv2()], load_device("host"), repeats=10,
                               baselines=False, progress=False, profile_runs=RUNS)
    profile = _check_per_layer(measured)
    assert profile.source == "tvm set_instrument"
    assert profile.network_ms > 0  # the VM's builtins (allocation, shape checks) own no layer


def test_tvm_per_layer_of_a_tuned_build(tmp_path):
    """A tuned build fuses each conv with its bias and clip (``fused_conv2d*`` calls): the time
    still goes to the layers, not to the network (it all went there before this was known)."""
    [measured] = measure_specs([_tiny(tmp_path)], load_device("host"), repeats=10,
                               tune_trials=4, cache_dir=tmp_path / "cache", baselines=False,
                               progress=False, profile_runs=RUNS)
    assert measured.result.metadata["tuning"]["state"] == "tuned"
    profile = _check_per_layer(measured)
    assert profile.nodes_ms > profile.network_ms, profile.to_dict()


@pytest.mark.filterwarnings("ignore:.*feature map is 1x1")
def test_onnxruntime_per_layer_on_the_host():
    [measured] = measure_specs([_small_mobilenetv2()], load_device("host"), repeats=10,
                               baselines=False, progress=False, runtime="onnxruntime",
                               profile_runs=RUNS)
    profile = _check_per_layer(measured)
    assert profile.source == "onnxruntime profiler"
    assert measured.result.metadata["runtime"] == "onnxruntime"


@pytest.mark.parametrize("runtime", ["tvm", "onnxruntime"])
def test_per_layer_through_archkit_serve(archkit_serve, tmp_path, runtime):
    """Over RPC: the board runs the profiled runs (TVM: archkit serve's profiling function)."""
    dev = load_device("host", host="127.0.0.1", port=archkit_serve.port)
    [measured] = measure_specs([_tiny(tmp_path)], dev, repeats=10, baselines=False,
                               progress=False, runtime=runtime, profile_runs=RUNS)
    _check_per_layer(measured)
    assert measured.result.metadata["server"] == f"127.0.0.1:{archkit_serve.port}"


def test_plain_rpc_server_is_refused_before_compiling(rpc_server, tmp_path):
    """TVM's own rpc_server cannot run a profiling callback: exit 2 with what to start instead,
    from the reachability check that runs before any model is built or compiled."""
    dev = load_device("host", host="127.0.0.1", port=rpc_server.port)
    with pytest.raises(DeviceError, match=r"per-layer times over RPC need `archkit serve`"):
        check_reachable(dev, kernels=True)
    check_reachable(dev)  # without per-layer times the same server is fine
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "profile", str(spec), "--device", "host",
         "--host", "127.0.0.1", "--port", str(rpc_server.port), "--per-layer",
         "--no-baselines"],
        capture_output=True, text=True, cwd=REPO, env=_python_env(), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "per-layer times over RPC need `archkit serve` on the board" in proc.stderr
    assert "Traceback" not in proc.stderr
