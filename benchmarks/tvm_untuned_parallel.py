"""Untuned TVM runs serial kernels; how much would parallelizing them give on this host?

TVM 0.27's default CPU pipeline (``tvm/relax/backend/cpu_generic/pipeline.py``) schedules
nothing, so an untuned module launches no parallel work and runs the same at 1 and 2 threads
(reports/latency_predictor.md, ``adapt_tvm``). This compiles MobileNetV2 twice through that
pipeline's own pass lists, as ``tvm.compile`` runs them:

- as archkit compiles it today (untuned: the passes unchanged);
- with one schedule step added after the kernels are fused: in every block of every kernel, the
  two outermost loops (batch 1 and the first spatial axis) fused and marked parallel (a block
  whose loops cannot be is left serial).

Both run in this process with TVM's thread pool at the machine's cores; both outputs are
compared with PyTorch's (max abs diff relative to the largest output, printed); times are
TVM's time evaluator, median of 7 repeats of 3 runs, the two variants alternating over
``--rounds`` rounds.

Run (from the repo root)::

    .venv/bin/python benchmarks/tvm_untuned_parallel.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = ((0.5, 128), (1.0, 224))


def _parallelize(mod):
    """Each kernel's blocks with their two outermost loops fused and parallel; and how many."""
    from tvm import s_tir, tirx

    count = 0
    out = mod
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        sch = s_tir.Schedule(func)
        try:
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
        except Exception:  # noqa: BLE001 - a kernel without a root block stays as it is
            continue
        for block in blocks:
            loops = sch.get_loops(block)
            if not loops:
                continue
            try:
                sch.parallel(sch.fuse(loops[0], loops[1]) if len(loops) > 1 else loops[0])
                count += 1
            except Exception:  # noqa: BLE001 - a reduction axis outermost: leave it serial
                pass
        out[gv] = sch.mod["main"]
    return out, count


def _compile(mod, target, parallel: bool):
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline

    with target:
        mod = tvm.transform.Sequential(pipeline.library_dispatch_passes(target)
                                       + pipeline.legalize_passes(target))(mod)
        count = 0
        if parallel:
            mod, count = _parallelize(mod)
        mod = tvm.transform.Sequential(pipeline.dataflow_lower_passes(target)
                                       + pipeline.finalize_passes(target))(mod)
    return tvm.compile(mod, target=target, relax_pipeline=None), count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
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
    target = tvm.target.Target({"kind": "llvm", "num-cores": cores})
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
            executable, count = _compile(program.mod, target, parallel)
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
