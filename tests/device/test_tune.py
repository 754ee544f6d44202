"""MetaSchedule tuning on the (loopback) board through the RPC runner; records reused later."""

from __future__ import annotations

import torch

from archkit.device import database_dir, load_device, measure_latency

from .conftest import tiny_net


def _records_in(db) -> int:
    """Tuning records in a database folder, as MetaSchedule's JSONDatabase reads them."""
    from tvm.s_tir import meta_schedule as ms

    return len(ms.database.JSONDatabase(work_dir=str(db)))


def test_tuning_records_persist_and_are_reused(rpc_server, tmp_path):
    dev = load_device("host", host="127.0.0.1", port=rpc_server.port)
    x = torch.randn(1, 3, 32, 32)

    first = measure_latency(tiny_net(blocks=1), x, dev, tune_trials=8, cache_dir=tmp_path,
                            repeats=3, progress=False)  # fmt: skip
    t1 = first.metadata["tuning"]
    assert t1["state"] == "tuned"
    assert t1["tasks_total"] >= 3 and t1["tasks_tuned"] == t1["tasks_total"]
    assert t1["tasks_reused"] == 0 and t1["trials_run"] > 0
    assert t1["records_after"] > 0
    assert first.max_abs_diff < 1e-4
    db = database_dir(dev, dev.target_dict(), tmp_path)
    assert t1["database"] == str(db)
    # TVM itself reads the records back from the folder.
    assert _records_in(db) == t1["records_after"]

    # Same layer shapes (more blocks, other weights): every layer comes from the database.
    second = measure_latency(tiny_net(blocks=2, seed=1), x, dev, tune_trials=8,
                             cache_dir=tmp_path, repeats=3, progress=False)  # fmt: skip
    t2 = second.metadata["tuning"]
    assert t2["trials_run"] == 0 and t2["tasks_tuned"] == 0
    assert t2["tasks_reused"] == t2["tasks_total"]
    assert t2["records_after"] == t1["records_after"] == _records_in(db)
    assert second.max_abs_diff < 1e-4

    # A new head (20 classes): only the new layer is tuned, the convolutions are reused.
    third = measure_latency(tiny_net(blocks=1, classes=20), x, dev, tune_trials=4,
                            cache_dir=tmp_path, repeats=3, progress=False)  # fmt: skip
    t3 = third.metadata["tuning"]
    assert 0 < t3["tasks_tuned"] < t3["tasks_total"]
    assert t3["tasks_reused"] == t3["tasks_total"] - t3["tasks_tuned"]
    assert 0 < t3["trials_run"]
    assert third.max_abs_diff < 1e-4
    assert t3["records_after"] == _records_in(db) > t1["records_after"]


def _parallel_loops(func) -> int:
    """Parallel loops in a TIR function (its TVMScript's ``T.parallel`` loops)."""
    return func.script().count("T.parallel(")


def test_a_tuned_build_runs_the_kernels_without_a_record_in_parallel(tmp_path):
    """With a database that has records for some kernels, those kernels get their tuned
    schedules and the others the untuned build's parallel outer loops (MetaSchedule's
    compile_relax leaves them serial); the build's output matches PyTorch's."""
    import tvm
    from tvm import relax, tirx

    from archkit.device import _compile
    from archkit.device._tune import tune

    dev = load_device("host")
    target = dev.target_dict()
    x = torch.randn(1, 3, 32, 32)
    database, stats = tune(_compile.to_relax(tiny_net(blocks=1), x).mod, dev, target, 8,
                           tmp_path, progress=False)
    assert stats.records_after > 0
    # The same convolutions and a new head (20 classes), which has no record.
    net = tiny_net(blocks=1, classes=20, seed=1)
    program = _compile.to_relax(net, x)
    mod = _compile.schedule_kernels(program.mod, tvm.target.Target(target), database)
    kernels = {gv.name_hint: f for gv, f in mod.functions_items()
               if isinstance(f, tirx.PrimFunc)}
    tuned = {name for name, f in kernels.items()
             if f.attrs is not None and f.attrs.get("tirx.is_scheduled")}
    untuned = set(kernels) - tuned
    assert tuned and untuned
    assert any(_parallel_loops(kernels[name]) for name in untuned)
    # Each of them scheduled exactly as in the untuned build of the same network.
    plain = {gv.name_hint: f for gv, f in _compile.schedule_kernels(
        program.mod, tvm.target.Target(target)).functions_items()
        if isinstance(f, tirx.PrimFunc)}
    assert {name: _parallel_loops(kernels[name]) for name in untuned} == {
        name: _parallel_loops(plain[name]) for name in untuned}

    vm = relax.VirtualMachine(_compile.build(program, target, database), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    out = out if hasattr(out, "numpy") else out[0]
    with torch.no_grad():
        expected = net(x).numpy()
    assert abs(out.numpy() - expected).max() < 1e-4
