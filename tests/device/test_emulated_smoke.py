"""End-to-end smoke test of the EMULATED aarch64 TVM RPC device (tests/device/emulated.py).

torch model -> torch.export -> Relax -> tvm.compile for Cortex-A72 (aarch64 + NEON) ->
cross-linked .so (aarch64-linux-gnu-gcc) -> upload over TVM RPC -> Relax VM on the emulated
device -> compare with PyTorch -> time_evaluator. The latency printed is an EMULATED number
(qemu on the host CPU), not a Raspberry Pi 4 latency.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402
from tvm.relax.frontend.torch import from_exported_program  # noqa: E402
from tvm.support import cc  # noqa: E402

CROSS_CC = "aarch64-linux-gnu-gcc"
RPI4_TARGET = {
    "kind": "llvm",
    "mtriple": "aarch64-linux-gnu",
    "mcpu": "cortex-a72",
    "mattr": ["+neon"],
    "num-cores": 4,
}


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=3)
        self.act = torch.nn.ReLU6()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.act(self.conv(x)))


@pytest.fixture(scope="module")
def cross_compiled(tmp_path_factory):
    """(path to the aarch64 .so, input array, PyTorch reference output)."""
    if shutil.which(CROSS_CC) is None:  # the emulated fixture's set-up installs it
        pytest.fail(f"{CROSS_CC} not found (scripts/emulated_arm64.sh installs it)")
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    exported = torch.export.export(model, (x,))
    mod = from_exported_program(exported, keep_params_as_input=False)
    target = tvm.target.Target(RPI4_TARGET)
    executable = tvm.compile(mod, target=target)
    lib_path = tmp_path_factory.mktemp("emulated_smoke") / "tinynet_a72.so"
    executable.export_library(str(lib_path), fcompile=cc.cross_compiler(CROSS_CC))
    with open(lib_path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183, (
        "export_library did not produce an aarch64 ELF (e_machine 183)"
    )
    return lib_path, x.numpy(), ref


def test_emulated_rpc_end_to_end(emulated_arm64_rpc, cross_compiled, capsys, record_property):
    lib_path, x, ref = cross_compiled
    dev_info = emulated_arm64_rpc
    assert dev_info.emulated is True

    remote = tvm.rpc.connect(dev_info.host, dev_info.port, session_timeout=600)
    try:
        remote.upload(str(lib_path))
        rmod = remote.load_module(lib_path.name)
        dev = remote.cpu(0)
        vm = relax.VirtualMachine(rmod, dev)

        vm.set_input("main", tvm.runtime.tensor(x, dev))
        vm.invoke_stateful("main")
        out = vm.get_outputs("main")
        out = out[0] if isinstance(out, tuple | list) else out
        got = out.numpy()
        assert got.shape == ref.shape == (1, 8, 1, 1)
        max_abs = float(np.abs(got - ref).max())
        assert max_abs < 1e-4, f"emulated aarch64 output differs from PyTorch: {max_abs}"

        t0 = time.perf_counter()
        res = vm.time_evaluator("invoke_stateful", dev, number=10, repeat=3)("main")
        wall = time.perf_counter() - t0
        record_property("emulated_latency_mean_ms", res.mean * 1e3)
        with capsys.disabled():  # visible without -s
            print(
                f"\nEMULATED aarch64 (qemu-user on host CPU, NOT a Raspberry Pi 4 number): "
                f"TinyNet 1x3x32x32 latency mean {res.mean * 1e3:.3f} ms, "
                f"median {res.median * 1e3:.3f} ms, std {res.std * 1e3:.3f} ms "
                f"(3x10 runs, {wall:.1f}s wall); max|diff| vs PyTorch {max_abs:.2e}"
            )
        assert res.mean > 0 and len(res.results) == 3
    finally:
        del remote
