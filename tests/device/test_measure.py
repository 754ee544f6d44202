"""Compile -> check against PyTorch -> time: locally and through a loopback TVM RPC server."""

from __future__ import annotations

import json

import pytest
import torch

from archkit.device import (
    LatencyResult,
    MeasurementError,
    host_baselines,
    load_device,
    measure_latency,
    results_frame,
)

from .conftest import randomize_batchnorms, tiny_net

REPRO_KEYS = {"tvm_version", "target", "threads", "tuning", "governor", "server", "emulated"}


def _check_result(res: LatencyResult, model: torch.nn.Module, x: torch.Tensor) -> None:
    import tvm

    assert 0 < res.min_ms <= res.median_ms <= res.p90_ms <= res.max_ms
    assert res.std_ms >= 0
    assert res.max_abs_diff < 1e-4
    assert REPRO_KEYS <= set(res.metadata)
    assert res.metadata["tvm_version"] == tvm.__version__
    assert res.metadata["tuning"]["state"] == "untuned"
    assert res.metadata["tuning"]["schedule"] == "parallel-outer"
    # The check's scale is PyTorch's own output on the same input.
    with torch.no_grad():
        torch_max = float(model(x).abs().max())
    check = res.metadata["check"]
    assert check["max_abs_output"] == pytest.approx(torch_max, rel=1e-6)
    assert torch_max > 0.1 and not check["check_is_weak"]
    # Every BatchNorm of the PyTorch model is folded into a convolution.
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert res.metadata["batchnorms_folded"] == batchnorms
    assert res.metadata["batchnorms_decomposed"] == 0
    json.dumps(res.to_dict())  # JSON-able


def test_local_host(tiny):
    model, x = tiny
    res = measure_latency(model, x, load_device("host"), repeats=5, name="tiny")
    _check_result(res, model, x)
    assert res.metadata["server"] == "local"
    assert res.label == "device" and not res.emulated
    assert res.metadata["runtime_threads"] == load_device("host").threads
    assert model.training is False  # restored (it was eval)


def test_untuned_build_runs_its_kernels_in_parallel(tiny, tmp_path):
    """TVM's default CPU pipeline schedules nothing: ``tvm.compile`` gives a library that
    launches no parallel work. archkit's untuned build parallelizes each kernel's outer loops
    (its outputs are checked against PyTorch's in test_local_host)."""
    import tvm

    from archkit.device import _compile

    model, x = tiny
    program = _compile.to_relax(model, x)
    target = load_device("host").target_dict()
    libraries = {}
    for name, executable in (("archkit", _compile.build(program, target)),
                             ("default", tvm.compile(program.mod,
                                                     target=tvm.target.Target(target)))):
        path = tmp_path / f"{name}.so"
        executable.export_library(str(path))
        libraries[name] = path.read_bytes()
    # The runtime entry a parallel loop calls, among the library's imported symbols.
    assert b"TVMBackendParallelLaunch" in libraries["archkit"]
    assert b"TVMBackendParallelLaunch" not in libraries["default"]


def test_loopback_rpc(tiny, rpc_server):
    """The board path (export .so, upload, load, time over RPC) on an x86 loopback server."""
    model, x = tiny
    dev = load_device("host", host="127.0.0.1", port=rpc_server.port)
    res = measure_latency(model, x, dev, repeats=5, name="tiny")
    _check_result(res, model, x)
    assert res.metadata["server"] == rpc_server.address
    frame = results_frame([res, MeasurementError("boom", job="other", stage="timing")])
    assert list(frame["name"]) == ["tiny", "other"]


def test_outputs_off_fail_loudly(rpc_server):
    """A zero tolerance cannot be met by float32 convolutions: the run must refuse to time."""
    model = tiny_net(width=32)
    x = torch.randn(1, 3, 64, 64)
    dev = load_device("host", host="127.0.0.1", port=rpc_server.port)
    with pytest.raises(MeasurementError) as info:
        measure_latency(model, x, dev, atol=0.0, rtol=0.0, repeats=2)
    assert info.value.stage == "check"
    assert "differ from PyTorch: max abs diff" in str(info.value)


def test_host_baselines(tiny):
    model, x = tiny
    base = host_baselines(model, x, repeats=3)
    assert base["pytorch_eager_ms"] > 0 and base["onnxruntime_ms"] > 0
    assert base["onnxruntime_max_abs_diff"] < 1e-4


def test_batchnorms_folded_in_pytorch_give_relax_folding_kernels():
    """BatchNorm folded in PyTorch before export (fast) gives TVM the kernels Relax's own
    ``FoldBatchnormToConv2D`` + ``FoldConstant`` give (structurally equal TIR, so tuning
    records keep applying), outputs as PyTorch's, and leaves the caller's model as it was."""
    import tvm
    import tvm_ffi
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    from archkit.build import build_model, example_input
    from archkit.device._compile import fold_batchnorms, schedule_kernels, to_relax
    from archkit.spec import apply_overrides, load_spec

    spec = apply_overrides(load_spec("specs/mobilenetv2.yaml"), width=0.35, resolution=64)
    model = randomize_batchnorms(build_model(spec).eval())
    x = example_input(spec)
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    folded, count = fold_batchnorms(model)
    assert count == batchnorms == 52
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == batchnorms
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)

    with torch.no_grad():
        exported = torch.export.export(model, (x,))
    relax_folded = relax.transform.FoldConstant()(relax.transform.FoldBatchnormToConv2D()(
        from_exported_program(exported, keep_params_as_input=False)))
    program = to_relax(model, x)
    assert (program.batchnorms_in, program.batchnorms_folded) == (52, 52)
    target = tvm.target.Target({"kind": "llvm", "num-cores": 2})

    def kernels(mod):
        return sorted(tvm_ffi.structural_hash(f)
                      for _, f in schedule_kernels(mod, target).functions_items()
                      if isinstance(f, tvm.tirx.PrimFunc))

    assert kernels(program.mod) == kernels(relax_folded)


def test_folding_batchnorms_keeps_biases_groups_and_the_callers_model():
    """A grouped convolution with a bias, then a BatchNorm, folds exactly; the caller's model
    (weights, statistics, training flag) is left as it was."""
    from torch import nn

    from archkit.device._compile import fold_batchnorms

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=True), nn.BatchNorm2d(8),
                          nn.ReLU6(), nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4),
                          nn.BatchNorm2d(4))  # a BatchNorm after a BatchNorm stays
    randomize_batchnorms(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 8, 6, 6)
    folded, count = fold_batchnorms(model)
    assert count == 2 and model.training and not folded.training
    assert [type(m).__name__ for m in folded] == ["Conv2d", "Identity", "ReLU6", "Conv2d",
                                                  "Identity", "BatchNorm2d"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
