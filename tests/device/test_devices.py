"""Device files: shipped ones, overrides from arguments and environment, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from archkit.device import DeviceError, available_devices, load_device
from archkit.errors import ArchkitError


def test_shipped_devices_load():
    assert {"rpi4", "jetson-nano", "arm64", "host"} <= set(available_devices())
    # The boards' CPUs as their makers publish them: Raspberry Pi 4 (BCM2711, 4x Cortex-A72),
    # Jetson Nano (4x Cortex-A57).
    rpi = load_device("rpi4")
    assert rpi.target["mtriple"] == "aarch64-linux-gnu"
    assert rpi.target["mcpu"] == "cortex-a72"
    assert "+neon" in rpi.target["mattr"]
    assert rpi.threads == 4 and rpi.target["num-cores"] == 4
    assert rpi.cross_compiler == "aarch64-linux-gnu-gcc"
    assert rpi.connection.kind == "rpc" and rpi.connection.port == 9090
    assert load_device("jetson-nano").target["mcpu"] == "cortex-a57"
    host = load_device("host")
    assert host.connection.kind == "local" and host.target == "host"
    assert not host.emulated
    assert issubclass(DeviceError, ArchkitError)


@pytest.mark.parametrize("name", available_devices())
def test_shipped_targets_are_what_tvm_reads(name):
    """TVM's own Target parser accepts every shipped target and reads back its fields."""
    tvm = pytest.importorskip("tvm")
    dev = load_device(name)
    wanted = dev.target_dict()
    target = tvm.target.Target(wanted)
    assert target.kind.name == wanted["kind"]
    for field in ("mtriple", "mcpu", "num-cores"):
        if field in wanted:
            assert target.attrs[field] == wanted[field], field
    assert int(target.attrs["num-cores"]) == dev.threads
    assert list(target.attrs.get("mattr", [])) == list(wanted.get("mattr", []))


def test_overrides_arguments_beat_environment(monkeypatch):
    monkeypatch.setenv("ARCHKIT_DEVICE_HOST", "10.0.0.5")
    monkeypatch.setenv("ARCHKIT_DEVICE_PORT", "9000")
    dev = load_device("rpi4")
    c = dev.connection
    assert (c.kind, c.host, c.port) == ("rpc", "10.0.0.5", 9000)
    dev = load_device("rpi4", host="192.168.1.7", port=9091)
    assert (dev.connection.host, dev.connection.port) == ("192.168.1.7", 9091)
    # A host makes the local 'host' device go through a (loopback) RPC server.
    assert load_device("host", host="127.0.0.1").connection.kind == "rpc"


def test_tracker_from_environment(monkeypatch):
    monkeypatch.setenv("ARCHKIT_RPC_TRACKER", "tracker.lan:9190")
    dev = load_device("rpi4")
    assert dev.connection.kind == "tracker"
    c = dev.connection
    assert (c.host, c.port, c.key) == ("tracker.lan", 9190, "rpi4")
    assert load_device("rpi4", key="pi-farm").connection.key == "pi-farm"
    assert load_device("rpi4", tracker="t:1234").connection.port == 1234


#: Device files a profile must refuse, by the field the error names (unknown keys, duplicate
#: keys and broken YAML: the contract of every archkit file, tests/spec/test_file_formats.py).
LLVM = "target: {kind: llvm}\n"
BAD_FILES = {
    "target": ["name: x\n", "target: 'llvm -mcpu=cortex-a72'\n", "target: [llvm]\n"],
    "target.kind": ["target: {kind: cuda}\n"],
    "threads": [LLVM + "threads: 0\n", LLVM + "threads: 100000\n", LLVM + "threads: 2.5\n"],
    "emulated": [LLVM + "emulated: 1\n"],
    "connect_timeout_s": [LLVM + "connect_timeout_s: .nan\n"],
    "description": [LLVM + "description: [a]\n"],
    "connection.kind": [LLVM + "connection: {kind: ssh}\n"],
    "connection.port": [LLVM + "connection: {kind: rpc, port: http}\n",
                        LLVM + "connection: {kind: rpc, port: 70000}\n"],
    "connection.ssh": [LLVM + "connection: {kind: rpc, ssh: -oX=y}\n",
                       LLVM + "connection: {kind: tracker, ssh: a@b}\n"],
    "connection.ssh_options": [LLVM + "connection: {kind: rpc, ssh: a@b, ssh_options: -i}\n"],
}


@pytest.mark.parametrize("field", sorted(BAD_FILES))
def test_bad_file_names_file_and_field(tmp_path, field):
    path = tmp_path / "board.yaml"
    for text in BAD_FILES[field]:
        path.write_text(text)
        with pytest.raises(DeviceError) as info:
            load_device(str(path))
        assert info.value.field == field, text
        assert str(info.value).startswith(f"{path}: {field}: ")


def test_unknown_device_lists_known():
    with pytest.raises(DeviceError, match="did you mean 'rpi4'.*known devices: .*rpi4"):
        load_device("rpi5")


def test_a_misspelt_connection_kind_suggests_the_right_one(tmp_path):
    # Unknown keys, duplicate keys and broken YAML: the contract of every archkit file
    # (tests/spec/test_file_formats.py).
    path = tmp_path / "board.yaml"
    path.write_text("target: {kind: llvm}\nconnection: {kind: rcp, host: a}\n")
    with pytest.raises(DeviceError) as info:
        load_device(str(path))
    assert str(info.value) == (
        f"{path}: connection.kind: must be one of local, rpc, tracker, got 'rcp', "
        "did you mean 'rpc'?"
    )


def test_bad_port_in_environment(monkeypatch):
    monkeypatch.setenv("ARCHKIT_DEVICE_PORT", "ninety")
    with pytest.raises(DeviceError, match="ARCHKIT_DEVICE_PORT"):
        load_device("rpi4")


def test_import_is_lazy():
    code = (
        "import sys, archkit.device, archkit.cli.serve, archkit.device._ort_remote\n"
        "heavy = [m for m in ('tvm', 'torch', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
