"""Where a cold latency prediction of MobileNetV2 1.0/224 spends its time.

Times, over ``--runs`` runs with every cache of the model emptied before each (the spec
lowered beforehand, as a search's candidates are): the whole ``LatencyModel.predict``; the
kernel rows of all its blocks (``block_rows``); their float array; the regressors on the
distinct kernels (``_Regressors.predict_us``); and, apart, lowering a spec never lowered.
What is left of ``predict`` after rows, array and regressors is walking, keying and summing
the blocks. Medians and 10th percentiles in microseconds; the garbage collector off while
timing, as ``timeit`` does.

Run (from the repo root, on a built host/onnxruntime model)::

    .venv/bin/python benchmarks/cold_prediction_parts.py --cache-dir runs/latency-cache
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from itertools import chain
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args(argv)

    import numpy as np

    from archkit.device import load_latency_model
    from archkit.device._latency._kernels import block_rows
    from archkit.ops import lower
    from archkit.spec import apply_overrides, load_spec

    model = load_latency_model("host", runtime="onnxruntime", cache_dir=args.cache_dir)
    base = load_spec(ROOT / "specs" / "mobilenetv2.yaml")
    specs = [apply_overrides(base, width=1.0 + i * 1e-9, resolution=224)
             for i in range(args.runs)]
    for spec in specs:
        lower(spec)
    model.predict(specs[0])  # the regressors built once, as any process does
    kind_ids = model._forest.index
    blocks = lower(specs[0]).blocks
    times: dict[str, list[float]] = {k: [] for k in ("predict", "rows", "array", "regressors",
                                                     "lowering a new spec")}
    clock = time.perf_counter
    gc.collect()
    gc.disable()
    try:
        for spec in specs:
            model._forget()
            start = clock()
            model.predict(spec)
            times["predict"].append(clock() - start)
            start = clock()
            rows = [block_rows(block, kind_ids) for block in blocks]
            times["rows"].append(clock() - start)
            new = list(dict.fromkeys(chain.from_iterable(rows)))
            start = clock()
            x = np.fromiter(chain.from_iterable(new), dtype=np.float64,
                            count=len(new) * len(new[0])).reshape(len(new), -1)
            kinds = x[:, -1].astype(np.intp)
            times["array"].append(clock() - start)
            start = clock()
            model._forest.predict_us(x, kinds)
            times["regressors"].append(clock() - start)
        for i in range(100):
            spec = apply_overrides(base, width=1.0 + (i + 1) * 1e-7, resolution=224)
            lower.cache_clear()
            start = clock()
            lower(spec)
            times["lowering a new spec"].append(clock() - start)
    finally:
        gc.enable()
    nodes = sum(len(block.nodes) for block in blocks)
    print(f"MobileNetV2 1.0/224: {len(blocks)} blocks, {nodes} nodes, {len(new)} distinct "
          "kernels")
    for name, values in times.items():
        print(f"{name:22s} median {statistics.median(values) * 1e6:7.1f} us, "
              f"p10 {np.percentile(values, 10) * 1e6:7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
