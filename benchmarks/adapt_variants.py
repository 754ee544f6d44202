"""Adapting a latency model to another device: variants of the carried-on trees, offline.

Each variant adapts ``--from``'s model (host/onnxruntime) with the adaptation networks already
measured for ``--device`` (``<cache>/latency/DEVICE-onnxruntime.jsonl``, as ``archkit latency
build DEVICE --from host`` left them) and is scored twice, without a device:

- on held-out networks of evaluation CSVs (``--held-out``, repeatable: ``archkit latency
  evaluate``'s or ``benchmarks/latency_predictor.py``'s), each time brought to the variant's
  own probe reference (raw ms x reference / the network's probe ms);
- 5-fold on the adaptation networks themselves (adapted on four fifths, scored on the rest).

Run (from the repo root)::

    .venv/bin/python benchmarks/adapt_variants.py --cache-dir runs/latency-cache \\
        --held-out reports/latency_host-1t_onnxruntime.csv
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _variants(model_module: Any) -> dict[str, dict[str, Any]]:
    """name -> module constants of ``archkit.device._latency._model`` to set while adapting."""
    params = model_module._XGB_PARAMS
    return {
        "as built (depth 6, eta 0.3)": {},
        "no new trees (correction only)": {"_MIN_SAMPLES": 10**9},
        "depth 5": {"_XGB_PARAMS": {**params, "max_depth": 5}},
        "depth 4": {"_XGB_PARAMS": {**params, "max_depth": 4}},
        "depth 3": {"_XGB_PARAMS": {**params, "max_depth": 3}},
        "eta 0.1 (<= 400 trees)": {"_XGB_PARAMS": {**params, "eta": 0.1}, "_XGB_ROUNDS": 400},
        "depth 4, eta 0.1 (<= 400 trees)": {"_XGB_PARAMS": {**params, "max_depth": 4,
                                                            "eta": 0.1}, "_XGB_ROUNDS": 400},
        "validated on whole networks": {"_GROUPED_FROM": 1},
        "per-kind scales (ridge, as a build fits them)": {"_ADAPT_PER_KIND": True},
    }


@contextlib.contextmanager
def _patched(module: Any, values: dict[str, Any]):
    old = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


def _summary(errors: Any) -> str:
    import numpy as np

    return (f"{np.mean(errors <= 0.10):.1%} | {np.mean(errors <= 0.05):.1%} | "
            f"{errors.mean():.1%} | {errors.max():.1%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--device", default="host-1t")
    ap.add_argument("--from", dest="from_device", default="host")
    ap.add_argument("--held-out", type=Path, action="append", default=[])
    ap.add_argument("--variant", action="append", default=[],
                    help="Only the variants whose names contain this (repeatable; default all).")
    args = ap.parse_args(argv)

    import numpy as np
    from latency_predictor import SPACES, _spaces
    from predictor_speed import held_out, held_out_errors

    from archkit.device import load_latency_model
    from archkit.device._latency import _model
    from archkit.device._latency._store import data_path, read_records

    base = load_latency_model(args.from_device, runtime="onnxruntime", cache_dir=args.cache_dir)
    conditions, _, records = read_records(data_path(args.device, "onnxruntime", args.cache_dir))
    # One record per network (an adaptation measures each twice): its calmer measurement.
    records = _model.calmer_measurements(records)
    spaces = dict(zip(SPACES, _spaces(), strict=True))
    sets = [(path.name, held_out(path)) for path in args.held_out]
    own = [spaces[r["space"]].candidate(r["params"]) for r in records]
    folds = np.arange(len(records)) % 5
    print(f"{args.device} adapted from {args.from_device} with {len(records)} networks; "
          "per set: within +-10% | within +-5% | mean error | worst error")
    print("| variant | " + " | ".join(f"{name}: w10 | w5 | mean | worst" for name, _ in sets)
          + " | 5-fold on the adaptation networks: w10 | w5 | mean | worst |")
    for name, values in _variants(_model).items():
        if args.variant and not any(part in name for part in args.variant):
            continue
        with _patched(_model, values):
            model = base.adapted(records, conditions, {})
            scored = [_summary(held_out_errors(model, *held)) for _, held in sets]
            cv = []
            for fold in range(5):
                test = [i for i in range(len(records)) if folds[i] == fold]
                fitted = base.adapted([r for r, f in zip(records, folds, strict=True)
                                       if f != fold], conditions, {})
                cv.extend(held_out_errors(fitted, [own[i] for i in test],
                                  [records[i]["e2e_raw_ms"] for i in test],
                                  [records[i]["probe_ms"] for i in test]))
        print(f"| {name} | " + " | ".join(scored) + f" | {_summary(np.asarray(cv))} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
