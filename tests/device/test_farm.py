"""Device farm through a TVM RPC tracker: parallel over boards; a dead board fails one job."""

from __future__ import annotations

import torch

from archkit.device import LatencyResult, MeasurementError, load_device, measure_many

from .conftest import tiny_net


def _jobs(n: int) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    return [(f"net{i}", tiny_net(width=8, seed=i), torch.randn(1, 3, 32, 32)) for i in range(n)]


def test_tracker_farm_uses_every_board(farm):
    tracker, servers = farm
    dev = load_device("host", tracker=tracker.address, key="loopback")
    results = measure_many(_jobs(4), dev, repeats=3, progress=False)
    assert all(isinstance(r, LatencyResult) for r in results), results
    assert [r.name for r in results] == ["net0", "net1", "net2", "net3"]
    used = {r.metadata["server"] for r in results}
    assert used == {s.address for s in servers}


def test_server_killed_mid_batch(farm):
    """Kill the board running net1 just as its timing starts: net1 fails, the rest finish."""
    tracker, servers = farm
    by_address = {s.address: s for s in servers}
    killed: list[str] = []

    def on_event(stage, info):
        if stage == "timing" and info["name"] == "net1" and not killed:
            killed.append(info["server"])
            by_address[info["server"]].kill()

    dev = load_device("host", tracker=tracker.address, key="loopback")
    results = measure_many(_jobs(4), dev, repeats=3, progress=False, on_event=on_event,
                           max_parallel=1)  # fmt: skip
    assert killed
    failed = results[1]
    assert isinstance(failed, MeasurementError), results
    assert failed.job == "net1" and failed.stage == "timing"
    assert f"lost the device 'host' (RPC server {killed[0]})" in str(failed)
    others = [results[i] for i in (0, 2, 3)]
    assert all(isinstance(r, LatencyResult) for r in others), others
    assert all(r.metadata["server"] != killed[0] for r in results[2:])


def test_direct_server_killed_rest_of_batch_reports_errors(rpc_server):
    """Without a tracker there is no other board: later jobs fail fast with a clear error."""
    dev = load_device("host", host="127.0.0.1", port=rpc_server.port)

    def on_event(stage, info):
        if stage == "timing" and info["name"] == "net1":
            rpc_server.kill()

    results = measure_many(_jobs(3), dev, repeats=3, progress=False, on_event=on_event)
    assert isinstance(results[0], LatencyResult)
    assert isinstance(results[1], MeasurementError) and results[1].stage == "timing", results
    assert isinstance(results[2], MeasurementError)
    assert "python3 -m tvm.exec.rpc_server" in str(results[2])


def test_tuning_through_the_tracker(farm, tmp_path):
    """--tune with a tracker device: MetaSchedule's RPCRunner gets boards from the tracker."""
    tracker, servers = farm
    dev = load_device("host", tracker=tracker.address, key="loopback")
    jobs = [("small", tiny_net(width=4, blocks=0), torch.randn(1, 3, 16, 16))]
    (res,) = measure_many(jobs, dev, tune_trials=4, cache_dir=tmp_path, repeats=2,
                          progress=False)  # fmt: skip
    assert isinstance(res, LatencyResult), res
    tuning = res.metadata["tuning"]
    assert tuning["state"] == "tuned" and tuning["trials_run"] > 0
    assert res.metadata["server"] in {s.address for s in servers}
