"""Untuned TVM: TVM's serial default schedules against archkit's untuned build.

TVM 0.27's default CPU pipeline (``tvm/relax/backend/cpu_generic/pipeline.py``) schedules
nothing, so ``tvm.compile`` gives a module that launches no parallel work and runs the same at
1 and 2 threads (reports/latency_predictor.md, stop 19's ``adapt_tvm``). This compiles
MobileNetV2 both ways:

- ``tvm.compile`` alone (how archkit compiled untuned networks before ``parallel-outer``);
- ``archkit.device._compile.build`` without a database: the same pipeline's pass lists with one
  schedule step added after the kernels are fused (``parallelize_outer_loops``: in every block
  of every kernel, the two outermost loops fused and marked parallel).

Both run in this process with TVM's thread pool at the machine's cores; both outputs are
compared with PyTorch's (max abs diff relative to the largest output, printed); times are
TVM's time evaluator, median of 7 repeats of 3 runs, the two variants alternating over
``--rounds`` rounds.

With ``--tuned TRIALS`` it compares tuned builds instead: MobileNetV2 0.5/128 tuned for the
host with TRIALS MetaSchedule trials (a fresh database), then MobileNetV2 0.5/128 (its own
records) and 1.0/224 (other shapes: mostly without a record, as a search candidate or a latency
model's network is against a database tuned for another network) compiled with that database
by MetaSchedule's ``compile_relax`` (the kernels without a record keep TVM's serial default)
and by ``archkit.device._compile.build`` (those kernels get the parallel outer loops), timed
the same way.

Run (from the repo root)::

    .venv/bin/python benchmarks/tvm_untuned_parallel.py --rounds 3
    .venv/bin/python benchmarks/tvm_untuned_parallel.py --tuned 64 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = ((0.5, 128), (1.0, 224))


def _compile(program, target_dict, parallel: bool):
    """As ``tvm.compile`` compiles (serial kernels) or as archkit's untuned build does."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline

    from archkit.device import _compile as archkit_compile

    target = tvm.target.Target(target_dict)
    if not parallel:
        return tvm.compile(program.mod, target=target), 0
    with target:  # how many blocks the step parallelizes (on a copy of the fused module)
        fused = tvm.transform.Sequential(pipeline.library_dispatch_passes(target)
                                         + pipeline.legalize_passes(target))(program.mod)
        count = archkit_compile.parallelize_outer_loops(fused)[1]
    return archkit_compile.build(program, target_dict), count


def _diff(vm, data, reference) -> float:
    """Max |TVM - PyTorch| relative to the largest output (an untrained network's logits are
    tiny)."""
    import numpy as np

    out = vm["main"](data)
    out = out if hasattr(out, "numpy") else out[0]  # the VM returns a tuple
    return float(np.abs(out.numpy() - reference).max() / np.abs(reference).max())


def _alternating(timers: dict[str, Any], data, rounds: int) -> dict[str, list[float]]:
    """Each timer's medians (ms) over ``rounds`` rounds, the order reversed every round."""
    times: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timers[name](data).median * 1e3)
    return times


def tuned(trials: int, rounds: int, cores: int) -> None:
    """MobileNetV2 0.5/128 tuned with ``trials`` trials; 0.5/128 and 1.0/224 compiled by
    ``compile_relax`` and by archkit's ``build`` with the same database."""
    import tempfile

    import tvm
    from tvm import relax, tirx
    from tvm.s_tir.meta_schedule.relax_integration import compile_relax

    from archkit.build import build_model, example_input
    from archkit.device import _compile as archkit_compile
    from archkit.device import load_device
    from archkit.device._tune import _prepare, tune
    from archkit.spec import apply_overrides, load_spec

    device = load_device("host")
    target = device.target_dict()
    tgt = tvm.target.Target(target)
    base = load_spec(ROOT / "specs" / "mobilenetv2.yaml")
    with tempfile.TemporaryDirectory(prefix="archkit-tuned-") as cache:
        database = stats = None
        for width, resolution in SIZES:
            spec = apply_overrides(base, width=width, resolution=resolution)
            model = build_model(spec).eval()
            x = example_input(spec)
            reference = model(x).detach().numpy()
            program = archkit_compile.to_relax(model, x)
            data = tvm.runtime.tensor(x.numpy())
            if database is None:
                database, stats = tune(program.mod, device, target, trials, Path(cache),
                                       progress=False)
                print(f"MobileNetV2 {width}/{resolution} tuned with {stats.trials_run} trials")
            # Kernels with a record: scheduled by the database; the rest: left to the default.
            with tgt, database, tvm.transform.PassContext(opt_level=3):
                applied = relax.transform.MetaScheduleApplyDatabase()(
                    _prepare(program.mod, tgt))
            kernels = [f for _, f in applied.functions_items() if isinstance(f, tirx.PrimFunc)]
            scheduled = sum(1 for f in kernels
                            if f.attrs is not None and f.attrs.get("tirx.is_scheduled"))
            builds = {
                "compile_relax": compile_relax(database, program.mod, tgt, params=None),
                "archkit build": archkit_compile.build(program, target, database),
            }
            timers, diffs = {}, {}
            for name, executable in builds.items():
                vm = relax.VirtualMachine(executable, tvm.cpu())
                diffs[name] = _diff(vm, data, reference)
                timers[name] = vm.time_evaluator("main", tvm.cpu(), number=3, repeat=7)
            times = _alternating(timers, data, rounds)
            print(f"MobileNetV2 {width}/{resolution}: {scheduled} of {len(kernels)} kernels "
                  "with a record")
            for name in builds:
                print(f"  {name}: {statistics.median(times[name]):.2f} ms "
                      f"({min(times[name]):.2f}-{max(times[name]):.2f}), max |diff| vs "
                      f"PyTorch, relative to the largest output, {diffs[name]:.1e}")
            serial, par = (statistics.median(times[n]) for n in builds)
            print(f"  compile_relax / archkit build: {serial / par:.2f}x ({cores} threads)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tuned", type=int, default=0, metavar="TRIALS",
                    help="compare tuned builds (this many trials) instead of untuned ones")
    args = ap.parse_args(argv)

    import numpy as np
    import tvm
    from tvm import relax

    from archkit.build import build_model, example_input
    from archkit.device._compile import to_relax
    from archkit.spec import apply_overrides, load_spec

    cores = len(os.sched_getaffinity(0))
    tvm.get_global_func("runtime.config_threadpool")(-3, cores, [str(i) for i in range(cores)])
    print(f"TVM {tvm.__version__}, thread pool: {tvm.get_global_func('runtime.NumThreads')()} "
          "threads")
    if args.tuned:
        tuned(args.tuned, args.rounds, cores)
        return 0
    target = {"kind": "llvm", "num-cores": cores}
    for width, resolution in SIZES:
        spec = apply_overrides(load_spec(ROOT / "specs" / "mobilenetv2.yaml"), width=width,
                               resolution=resolution)
        model = build_model(spec).eval()
        x = example_input(spec)
        reference = model(x).detach().numpy()
        program = to_relax(model, x)
        data = tvm.runtime.tensor(x.numpy())
        timers = {}
        for parallel in (False, True):
            executable, count = _compile(program, target, parallel)
            vm = relax.VirtualMachine(executable, tvm.cpu())
            out = vm["main"](data)
            out = out if hasattr(out, "numpy") else out[0]  # the VM returns a tuple
            # Relative to the largest output: an untrained network's logits are tiny.
            diff = float(np.abs(out.numpy() - reference).max() / np.abs(reference).max())
            timers[parallel] = (vm.time_evaluator("main", tvm.cpu(), number=3, repeat=7), count,
                                diff)
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for parallel in ((False, True) if r % 2 == 0 else (True, False)):
                times[parallel].append(timers[parallel][0](data).median * 1e3)
        serial, par = statistics.median(times[False]), statistics.median(times[True])
        print(f"MobileNetV2 {width}/{resolution}: untuned {serial:.2f} ms "
              f"({min(times[False]):.2f}-{max(times[False]):.2f}), outer loops parallel "
              f"{par:.2f} ms ({min(times[True]):.2f}-{max(times[True]):.2f}; "
              f"{timers[True][1]} blocks), speedup {serial / par:.2f}x; "
              f"max |diff| vs PyTorch, relative to the largest output, {timers[False][2]:.1e} / "
              f"{timers[True][2]:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
