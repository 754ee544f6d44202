"""Throughput of an analytic-only search, and where its time goes: archkit or Optuna.

Runs ``archkit.search.run_search`` (MobileNetV2 space, ``--budget-madds 150M``, the published
objective: nothing is built) several times and times, inside the same trials, side by side:

- archkit: drawing the candidate spec, counting it (``archkit.cost.count``), scoring it;
- Optuna: everything else in a trial: ``ask``, the TPE sampler's suggestions, the constraint and
  user attributes, ``tell``, and the storage I/O under all of them (the ``memory`` storage row
  shows Optuna without I/O).

Reports medians over repeats (the machine is noisy). Usage::

    .venv/bin/python benchmarks/search_throughput.py [--trials 200] [--repeats 5]
        [--storage journal sqlite] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from archkit.search import Budgets, _objective, _study, load_search_space, run_search
from archkit.search._estimators import PublishedEstimator
from archkit.search._space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


class Timers:
    """Wall time of the wrapped archkit calls and of whole trials."""

    def __init__(self) -> None:
        self.archkit_s = 0.0
        self.trial_s = 0.0
        self.trials = 0

    def wrap(self, fn, bucket: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self, bucket, getattr(self, bucket) + time.perf_counter() - start)

        return timed


def one_run(space_path: Path, storage: str, trials: int, seed: int) -> dict[str, float]:
    timers = Timers()
    originals = (
        SearchSpace.candidate,
        _objective.count,
        _objective.Objective.run_one,
        PublishedEstimator.estimate,
        _study.open_storage,
    )
    SearchSpace.candidate = timers.wrap(originals[0], "archkit_s")
    _objective.count = timers.wrap(originals[1], "archkit_s")
    _objective.Objective.run_one = timers.wrap(originals[2], "trial_s")
    PublishedEstimator.estimate = timers.wrap(originals[3], "archkit_s")
    if storage == "memory":  # not a user option (searches persist): shows Optuna minus I/O
        import optuna

        _study.open_storage = lambda url: optuna.storages.InMemoryStorage()
    try:
        with tempfile.TemporaryDirectory() as folder:
            url = {"journal": None, "memory": None, "sqlite": f"sqlite:///{folder}/study.db"}[
                storage
            ]
            start = time.perf_counter()
            result = run_search(
                load_search_space(space_path),
                budgets=Budgets(madds=150_000_000),
                objective="published",
                trials=trials,
                seed=seed,
                storage=url,
                study_name="bench",
                run_dir=Path(folder) / "run",
            )
            total = time.perf_counter() - start
    finally:
        (
            SearchSpace.candidate,
            _objective.count,
            _objective.Objective.run_one,
            PublishedEstimator.estimate,
            _study.open_storage,
        ) = originals
    optuna_s = timers.trial_s - timers.archkit_s
    return {
        "trials_per_s": trials / timers.trial_s,
        "trials_per_s_with_setup_and_outputs": trials / total,
        "archkit_ms_per_trial": 1000 * timers.archkit_s / trials,
        "optuna_ms_per_trial": 1000 * optuna_s / trials,
        "archkit_share": timers.archkit_s / timers.trial_s,
        "infeasible": result.info["counts"]["infeasible"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--storage",
        nargs="+",
        choices=["journal", "sqlite", "memory"],
        default=["journal", "sqlite", "memory"],
        help="journal: the default run storage; sqlite: an RDB; memory: "
        "Optuna's in-memory storage (no I/O; benchmark only)",
    )
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "mobilenetv2.yaml")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    import optuna

    one_run(args.space, "memory", 10, 0)  # warm-up: imports, the estimator's calibration fit
    # Storages take turns within each repeat, so that both see the same machine load.
    runs: dict[str, list[dict[str, float]]] = {storage: [] for storage in args.storage}
    for seed in range(args.repeats):
        for storage in args.storage:
            runs[storage].append(one_run(args.space, storage, args.trials, seed))
    rows = {}
    for storage, results in runs.items():
        rows[storage] = {key: statistics.median(r[key] for r in results) for key in results[0]}
        rows[storage]["repeats"] = args.repeats
    if args.json:
        print(
            json.dumps(
                {"trials": args.trials, "optuna": optuna.__version__, "results": rows}, indent=2
            )
        )
        return
    print(
        f"analytic-only search: {args.space.name}, --budget-madds 150M, objective published, "
        f"{args.trials} trials, median of {args.repeats} runs (optuna {optuna.__version__})"
    )
    header = (
        f"{'storage':<8} {'trials/s':>9} {'incl. I/O':>9} {'archkit ms':>11} "
        f"{'optuna ms':>10} {'archkit %':>10} {'infeasible':>10}"
    )
    print(header)
    print("-" * len(header))
    for storage, r in rows.items():
        print(
            f"{storage:<8} {r['trials_per_s']:>9.1f} "
            f"{r['trials_per_s_with_setup_and_outputs']:>9.1f} "
            f"{r['archkit_ms_per_trial']:>11.2f} {r['optuna_ms_per_trial']:>10.2f} "
            f"{100 * r['archkit_share']:>9.1f}% {r['infeasible']:>10.0f}"
        )
    print(
        "trials/s: the trial loop alone; incl. I/O: the whole run_search call (study set-up, "
        "run directory written at start and end). archkit: candidate spec + count + "
        "estimate; optuna: ask, sampling, constraints, attributes, tell, storage."
    )


if __name__ == "__main__":
    main()
