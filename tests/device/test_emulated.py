"""The rpi4 profile end to end on the EMULATED aarch64 board (qemu; colleague's fixture).

Cross-compiled for Cortex-A72 with aarch64-linux-gnu-gcc, uploaded over TVM RPC, checked
against PyTorch. Timings from here are labelled "emulated": they are never device latency.
"""

from __future__ import annotations

import torch

from archkit.device import load_device, measure_latency, results_frame

from .conftest import tiny_net


def test_rpi4_profile_on_emulated_board(emulated_arm64_rpc):
    host, port, emulated = emulated_arm64_rpc
    assert emulated
    dev = load_device("rpi4", host=host, port=port, emulated=True)
    model, x = tiny_net(width=8, blocks=1), torch.randn(1, 3, 32, 32)
    res = measure_latency(model, x, dev, repeats=3, number=1, name="tiny@rpi4")
    assert res.emulated and res.label == "emulated"
    assert res.metadata["emulated"] is True
    assert res.metadata["target"]["mtriple"] == "aarch64-linux-gnu"
    assert res.metadata["target"]["mcpu"] == "cortex-a72"
    assert res.metadata["server"] == f"{host}:{port}"
    assert res.max_abs_diff < 1e-4
    assert res.median_ms > 0
    assert results_frame([res]).loc[0, "label"] == "emulated"


def test_tuning_cross_compiles_and_runs_on_emulated_board(emulated_arm64_rpc, tmp_path):
    """--tune on the board: aarch64 candidates built here, timed there by the RPC runner."""
    host, port, _ = emulated_arm64_rpc
    dev = load_device("rpi4", host=host, port=port, emulated=True)
    model, x = tiny_net(width=4, blocks=0), torch.randn(1, 3, 16, 16)
    res = measure_latency(model, x, dev, tune_trials=4, cache_dir=tmp_path, repeats=2,
                          number=1, progress=False)  # fmt: skip
    tuning = res.metadata["tuning"]
    assert tuning["state"] == "tuned" and tuning["trials_run"] > 0
    assert tuning["records_after"] > 0
    assert "rpi4-" in tuning["database"]
    assert res.label == "emulated" and res.max_abs_diff < 1e-4


def test_onnxruntime_on_emulated_board(emulated_arm64_rpc):
    """The aarch64 onnxruntime wheel under qemu, through the same RPC transport: the .onnx file
    is uploaded, archkit's function (registered as by `archkit serve`) runs it, and the outputs
    match PyTorch's. The timing is labelled emulated."""
    from archkit.device import measure_onnxruntime

    host, port, _ = emulated_arm64_rpc
    dev = load_device("rpi4", host=host, port=port, emulated=True)
    model, x = tiny_net(width=8, blocks=1), torch.randn(1, 3, 32, 32)
    res = measure_onnxruntime(model, x, dev, repeats=3, name="tiny@rpi4")
    assert res.emulated and res.label == "emulated"
    meta = res.metadata
    assert meta["runtime"] == "onnxruntime" and meta["machine"] == "aarch64"
    assert meta["onnxruntime_version"] == "1.32.0"  # scripts/emulated_arm64.sh's pin
    assert meta["runtime_threads"] == dev.threads == 4
    assert res.max_abs_diff < 1e-4 and res.median_ms > 0


def test_per_layer_times_on_emulated_board(emulated_arm64_rpc, tmp_path):
    """The board-side profiler (`archkit.tvm.profile_calls`, loaded by file path as the emulated
    server loads `archkit serve`'s functions) under aarch64 Python: every conv layer timed."""
    from archkit import load_spec
    from archkit.cost import cost_table
    from archkit.device import measure_specs

    from .test_per_layer import TINY

    host, port, _ = emulated_arm64_rpc
    dev = load_device("rpi4", host=host, port=port, emulated=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    spec = load_spec(path)
    [measured] = measure_specs([spec], dev, repeats=3, baselines=False, progress=False,
                               profile_runs=3)
    assert not measured.failed, measured.result
    profile = measured.result.kernel_profile
    assert profile.runs == 3 and measured.result.label == "emulated"
    layers = cost_table(spec).layer_records
    layer_us, _ = profile.per_layer(layers)
    assert all(us > 0 for row, us in zip(layers, layer_us, strict=True)
               if row["prim"] == "conv")
