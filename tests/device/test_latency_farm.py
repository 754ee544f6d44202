"""Latency models built on boards: over RPC (``archkit serve``) and on a tracker's farm, where
every board of the key measures at once. The boards are real RPC servers on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from archkit.device import load_device
from archkit.device._errors import DeviceError
from archkit.device._latency import build_latency_model, load_latency_model, predict_latency
from archkit.search import parse_search_space, random_candidates
from archkit.spec import apply_overrides

from .conftest import free_port, start_archkit_serve, start_tracker, wait_registered
from .test_latency_model import FAST, TINY_SPACE


@pytest.fixture(scope="module")
def space():
    return parse_search_space(TINY_SPACE, source="<tiny>")


@pytest.fixture(scope="module")
def serve_farm():
    """A tracker and two ``archkit serve`` boards registered under key ``farm``."""
    tracker = start_tracker()
    boards = []
    try:
        boards = [start_archkit_serve("--tracker", tracker.address, "--key", "farm")
                  for _ in range(2)]
        wait_registered(tracker, "farm", 2)
        yield tracker, boards
    finally:
        for board in boards:
            board.stop()
        tracker.kill()


def _device_file(folder: Path, name: str, connection: str, threads: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ntarget: host\nthreads: {threads}\nconnection: {connection}\n")
    return path


def test_farm_build_measures_on_every_board(serve_farm, space, tmp_path):
    tracker, boards = serve_farm
    device = load_device(_device_file(
        tmp_path, "farm", f"{{kind: tracker, host: 127.0.0.1, port: {tracker.port}, key: farm}}"))
    records: list[dict] = []
    result = build_latency_model(device, random_candidates([space], seed=0), networks=6,
                                 minutes=None, protocol=FAST, cache_dir=tmp_path,
                                 progress=False, on_record=records.append)
    assert result.networks == 6 and not result.failed, result.failed
    # Both boards measured, and each record's kernels were timed on the board that timed it.
    assert {r["server"] for r in records} == {f"127.0.0.1:{b.port}" for b in boards}
    for record in records:
        layers = {f"{b}:{n}" for b, n, _kind, _features in record["kernels"]}
        timed = {k for k, us in record["kernels_us"].items() if us > 0}
        assert timed - {"network"} <= layers
        assert len(timed & layers) >= len(layers) // 2, (record["name"], timed, layers)
    assert result.model.built["boards"] == sorted(f"127.0.0.1:{b.port}" for b in boards)
    assert result.model.conditions.cpu == "host" and result.model.conditions.governor is None
    # Predicting needs neither the tracker nor a board: the same device behind a closed port.
    gone = load_device(_device_file(
        tmp_path / "gone", "farm",
        f"{{kind: tracker, host: 127.0.0.1, port: {free_port()}, key: farm}}"))
    model = load_latency_model(gone, runtime="onnxruntime", cache_dir=tmp_path)
    spec = apply_overrides(space.base, width=0.75, resolution=48)
    assert predict_latency(spec, gone, runtime="onnxruntime", cache_dir=tmp_path) == \
        pytest.approx(model.predict(spec))


def test_tvm_build_over_rpc(space, tmp_path):
    """TVM on one board: the host compiles, the board times and profiles every network."""
    served = start_archkit_serve()
    try:
        device = load_device(_device_file(
            tmp_path, "board", f"{{kind: rpc, host: 127.0.0.1, port: {served.port}}}"))
        records: list[dict] = []
        result = build_latency_model(device, random_candidates([space], seed=3), runtime="tvm",
                                     networks=5, minutes=None, protocol=FAST,
                                     cache_dir=tmp_path, progress=False,
                                     on_record=records.append)
    finally:
        served.stop()
    assert result.networks == 5 and not result.failed, result.failed
    assert {r["server"] for r in records} == {f"127.0.0.1:{served.port}"}
    for record in records:
        convs = {f"{b}:{n}" for b, n, kind, _f in record["kernels"] if kind.startswith("conv")}
        assert convs <= {k for k, us in record["kernels_us"].items() if us > 0}, record["name"]
        assert record["e2e_ms"] > 0 and len(record["repeats_ms"]) == FAST.repeats
    assert result.model.conditions.runtime == "tvm"


def test_farm_without_boards_fails_in_seconds(space, tmp_path):
    tracker = start_tracker()
    try:
        device = load_device(_device_file(
            tmp_path, "empty", f"{{kind: tracker, host: 127.0.0.1, port: {tracker.port}, "
                               "key: nobody}"))
        start = time.monotonic()
        with pytest.raises(DeviceError, match="nobody"):
            build_latency_model(device, random_candidates([space], seed=0), networks=6,
                                minutes=None, protocol=FAST, cache_dir=tmp_path,
                                progress=False)
        assert time.monotonic() - start < 10
    finally:
        tracker.kill()
    closed = load_device(_device_file(
        tmp_path, "closed", f"{{kind: rpc, host: 127.0.0.1, port: {free_port()}}}"))
    start = time.monotonic()
    with pytest.raises(DeviceError):
        build_latency_model(closed, random_candidates([space], seed=0), networks=6,
                            minutes=None, protocol=FAST, cache_dir=tmp_path, progress=False)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "latency").exists() or not any((tmp_path / "latency").iterdir())


def test_cli_builds_on_the_farm(serve_farm, tmp_path):
    """`archkit latency build DEVICE --tracker HOST:PORT --key KEY`, as the docs show it."""
    import subprocess
    import sys

    from .conftest import _python_env

    tracker, boards = serve_farm
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    proc = subprocess.run(
        [sys.executable, "-m", "archkit.cli", "latency", "build", "host", "--runtime",
         "onnxruntime", "--space", str(space), "--networks", "6", "--tracker", tracker.address,
         "--key", "farm", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, env=_python_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # rich wraps its lines
    assert "measured 6 new networks" in said and "measured on 2 boards" in said, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path == tmp_path / "cache" / "latency" / "host-onnxruntime.json" and path.is_file()
