"""Adapting in a slow spell: one pass against two passes, with a spell made on purpose.

For each seed of ``--seeds`` and each condition, ``host-1t``'s onnxruntime model is adapted
from ``host``'s with ``--networks`` random networks as ``archkit latency build host-1t --from
host`` adapts (each network measured and profiled twice, the second pass in reverse order;
each in its own cache folder under ``--work``, holding a copy of ``host``'s model and data):

- ``quiet``: nothing else runs;
- ``l3``: during the first pass only, the other core copies 8 MiB arrays back and forth (the
  shared L3 thrashed: the load under which the probe's slowdown is least like the networks',
  reports/probe_under_load.md); it stops when the first pass's last network is recorded.

Each adapted model is scored without measuring again on held-out networks of evaluation CSVs
(``--held-out``, repeatable), each measurement brought to the model's probe reference, beside
the model refitted from the first pass alone (what an adaptation fitted before stop 25). It
prints, per model, the share within +-10% and the median error per set, and how the two
passes compared (``built["passes"]``) with any warning the build gave.

Run (from the repo root, with ``host``'s model built in ``--cache-dir``; about 4 minutes a
seed and condition)::

    .venv/bin/python benchmarks/adapt_under_load.py --cache-dir runs/latency-cache \\
        --held-out reports/latency_host-1t_onnxruntime_seed8.csv \\
        --held-out reports/latency_host-1t_onnxruntime.csv \\
        --held-out reports/latency_host-1t_onnxruntime_seed5.csv
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: The load of ``l3`` (benchmarks/probe_under_load.py's), pinned to core 1.
L3_LOAD = (
    "import os\nos.sched_setaffinity(0, {1})\nimport numpy as np\n"
    "a = np.ones(1 << 20); b = np.empty_like(a)\n"
    "while True:\n    np.copyto(b, a); np.copyto(a, b)\n"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "adapt_under_load")
    ap.add_argument("--held-out", type=Path, action="append", default=[])
    ap.add_argument("--seeds", default="6,9")
    ap.add_argument("--conditions", default="quiet,l3")
    ap.add_argument("--networks", type=int, default=20)
    ap.add_argument("--output", type=Path, default=None, help="Also write the results as JSON.")
    args = ap.parse_args(argv)

    import numpy as np
    from latency_predictor import _spaces
    from predictor_speed import held_out, held_out_errors

    from archkit.device import build_latency_model, load_latency_model
    from archkit.device._latency._store import data_path, model_path
    from archkit.search import random_candidates

    sets = [(path.name, held_out(path)) for path in args.held_out]

    def scored(model) -> dict[str, list[float]]:
        out = {}
        for name, held in sets:
            error = held_out_errors(model, *held)
            out[name] = [float((error <= 0.10).mean()), float(np.median(error))]
        return out

    results = []
    for seed in map(int, args.seeds.split(",")):
        for condition in args.conditions.split(","):
            cache = args.work / f"{condition}-{seed}"
            if cache.exists():
                shutil.rmtree(cache)
            (cache / "latency").mkdir(parents=True)
            for source in (
                model_path("host", "onnxruntime", args.cache_dir),
                data_path("host", "onnxruntime", args.cache_dir),
            ):
                shutil.copy2(source, cache / "latency" / source.name)
            load = None
            if condition == "l3":
                load = subprocess.Popen([sys.executable, "-c", L3_LOAD])
                time.sleep(1.0)
            records: list[dict] = []

            def on_record(record: dict, load=load, records=records) -> None:
                records.append(record)
                if load is not None and len(records) == args.networks:
                    load.kill()  # the first pass is over

            start = time.monotonic()
            try:
                built = build_latency_model(
                    "host-1t",
                    random_candidates(_spaces(), seed=seed),
                    runtime="onnxruntime",
                    networks=args.networks,
                    from_model="host",
                    cache_dir=cache,
                    progress=False,
                    on_record=on_record,
                )
            finally:
                if load is not None:
                    load.kill()
                    load.wait()
            minutes = (time.monotonic() - start) / 60
            base = load_latency_model("host", runtime="onnxruntime", cache_dir=cache, check=False)
            first_pass = base.adapted(
                records[: args.networks], built.model.conditions, dict(built.model.built)
            )
            probes = [
                [r["probe_ms"] for r in part]
                for part in (records[: args.networks], records[args.networks :])
            ]
            row = {
                "seed": seed,
                "condition": condition,
                "minutes": round(minutes, 2),
                "probe_ms_first_pass": [min(probes[0]), max(probes[0])],
                "probe_ms_second_pass": [min(probes[1]), max(probes[1])] if probes[1] else None,
                "passes": built.model.built.get("passes"),
                "warnings": list(built.warnings),
                "two passes (as built)": scored(built.model),
                "first pass alone": scored(first_pass),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    print(
        "\n| seed | load in the first pass | first / second pass (median) | "
        + " | ".join(f"{name}: two passes / first pass alone" for name, _ in sets)
        + " | warned |"
    )
    print("|---|---|---:|" + "---:|" * len(sets) + "---|")
    for row in results:
        cells = [
            f"{row['two passes (as built)'][name][0]:.1%} / {row['first pass alone'][name][0]:.1%}"
            for name, _ in sets
        ]
        ratio = row["passes"]["median_first_over_second"] if row["passes"] else float("nan")
        print(
            f"| {row['seed']} | {row['condition']} | {ratio:.3f} | "
            + " | ".join(cells)
            + f" | {'yes' if row['warnings'] else 'no'} |"
        )
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
