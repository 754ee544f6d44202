"""Adapting a latency model from 20 networks: random networks against spread (Sobol') ones.

For each (draw, seed) of ``--draws``, ``host-1t``'s onnxruntime model is adapted from
``host``'s with ``--networks`` networks measured now on ``host-1t`` (each in its own cache
folder under ``--work``, holding a copy of ``host``'s model and data), then scored without
measuring again on held-out networks of evaluation CSVs (``--held-out``, repeatable:
``archkit latency evaluate``'s), each measurement brought to the model's probe reference, as
``benchmarks/adapt_variants.py`` scores. The draws are measured one after another in one run,
so they share the machine's state.

Run (from the repo root, with ``host``'s model built in ``--cache-dir``)::

    .venv/bin/python benchmarks/adapt_draws.py --cache-dir runs/latency-cache \\
        --held-out reports/latency_host-1t_onnxruntime.csv \\
        --held-out reports/latency_host-1t_onnxruntime_seed5.csv
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "adapt_draws")
    ap.add_argument("--held-out", type=Path, action="append", default=[])
    ap.add_argument(
        "--draws",
        default="random:6,sobol:2,random:7,sobol:3",
        help="DRAW:SEED,... in the order measured",
    )
    ap.add_argument("--networks", type=int, default=20)
    ap.add_argument("--output", type=Path, default=None, help="Also write the table as JSON.")
    args = ap.parse_args(argv)

    import numpy as np
    from latency_predictor import _spaces
    from predictor_speed import held_out, held_out_errors

    from archkit.device import build_latency_model
    from archkit.device._latency._store import data_path, model_path
    from archkit.search import random_candidates

    sets = [(path.name, held_out(path)) for path in args.held_out]
    results = []
    for item in args.draws.split(","):
        draw, seed = item.split(":")
        cache = args.work / f"{draw}-{seed}"
        latency = cache / "latency"
        latency.mkdir(parents=True, exist_ok=True)
        for source in (
            model_path("host", "onnxruntime", args.cache_dir),
            data_path("host", "onnxruntime", args.cache_dir),
        ):
            shutil.copy2(source, latency / source.name)
        start = time.monotonic()
        built = build_latency_model(
            "host-1t",
            random_candidates(_spaces(), seed=int(seed), draw=draw),
            runtime="onnxruntime",
            networks=args.networks,
            from_model="host",
            cache_dir=cache,
            progress=False,
        )
        minutes = (time.monotonic() - start) / 60
        widths = sorted(
            round(float(s.width), 2)
            for s in (c.spec for c in _drawn(data_path("host-1t", "onnxruntime", cache)))
        )
        row = {
            "draw": draw,
            "seed": int(seed),
            "networks": built.networks,
            "minutes": round(minutes, 2),
            "widths": widths,
        }
        errors = []
        for name, held in sets:
            error = held_out_errors(built.model, *held)
            errors.append(error)
            row[name] = {
                "within_10pct": float((error <= 0.10).mean()),
                "within_5pct": float((error <= 0.05).mean()),
                "mean_error": float(error.mean()),
                "worst_error": float(error.max()),
            }
        every = np.concatenate(errors) if errors else np.asarray([])
        row["all"] = {
            "networks": int(every.size),
            "within_10pct": float((every <= 0.10).mean()) if every.size else None,
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    print(
        "| draw | seed | widths drawn | "
        + " | ".join(f"{name}: w10 / w5 / mean / worst" for name, _ in sets)
        + " | all: w10 |"
    )
    for row in results:
        cells = [
            f"{row[name]['within_10pct']:.1%} / {row[name]['within_5pct']:.1%} / "
            f"{row[name]['mean_error']:.1%} / {row[name]['worst_error']:.1%}"
            for name, _ in sets
        ]
        print(
            f"| {row['draw']} | {row['seed']} | {row['widths'][0]}-{row['widths'][-1]} | "
            + " | ".join(cells)
            + f" | {row['all']['within_10pct']:.1%} |"
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return 0


def _drawn(path: Path):
    """The candidates recorded in a measurements file (rebuilt from space and parameters)."""
    from latency_predictor import SPACES, _spaces

    from archkit.device._latency._model import calmer_measurements
    from archkit.device._latency._store import read_records

    spaces = dict(zip(SPACES, _spaces(), strict=True))
    from archkit.search import Candidate

    return [
        Candidate(r["space"], r["params"], spaces[r["space"]].candidate(r["params"]))
        for r in calmer_measurements(read_records(path)[2])
    ]


if __name__ == "__main__":
    sys.exit(main())
