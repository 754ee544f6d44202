"""Prediction time against accuracy for variants of the latency model's tree ensembles.

Needs no device: the variants are refitted on a build's recorded networks (a measurements file
``<cache>/latency/<device>-<runtime>.jsonl``, only read) with :func:`fit_model`, whose
out-of-fold statistics are the accuracy (each network's kernels predicted by regressors
trained without it, 5 folds, then the network correction). Times are those of
``benchmarks/latency_predictor.py``'s ``speed`` step (each spec counted first, as a search
does, since stop 26): MobileNetV2 1.0/224 cold (spec never seen, no block cached) and warm,
the mean over a stream of random candidates, and
the median over the same stream with the CPU's caches flushed before each call (as a search's
own work between predictions flushes them: the trees are then read from memory, and their size
is what the prediction costs).

With ``--held-out CSV`` (an evaluation's CSV, ``reports/latency_host_onnxruntime.csv``) each
variant is also scored on that evaluation's held-out networks, against the times measured then,
each brought to the variant's own probe reference (``measured_raw_ms`` times the reference over
the network's ``probe_ms``), so data of another build can be scored on them.

Run (from the repo root)::

    .venv/bin/python benchmarks/predictor_speed.py \
        --data ~/.cache/archkit/latency/host-onnxruntime.jsonl \
        --held-out reports/latency_host_onnxruntime.csv

Prints one table; ``--output`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: name -> (xgboost rounds (at most, with early stopping), parameters that differ from the
#: model's own (None: no trees), early stopping rounds[, networks from which early stopping
#: validates on whole networks: 10**9 never, the model's own otherwise]).
VARIANTS: dict[str, tuple] = {
    "400 trees depth 6 eta 0.08 (before)": (400, {"eta": 0.08}, 0),
    "early stopping on whole networks, depth 6 eta 0.3 (<= 200; the model's own)":
        (200, {"eta": 0.3}, 20),
    "early stopping on every fifth kernel, depth 6 eta 0.3 (<= 200; stop 21's)":
        (200, {"eta": 0.3}, 20, 10**9),
    "early stopping depth 6 eta 0.15 (<= 400)": (400, {"eta": 0.15}, 20),
    "150 trees depth 6 eta 0.2": (150, {"eta": 0.2}, 0),
    "80 trees depth 6 eta 0.3": (80, {"eta": 0.3}, 0),
    "60 trees depth 5 eta 0.3": (60, {"eta": 0.3, "max_depth": 5}, 0),
    "early stopping depth 5 eta 0.3 (<= 200)": (200, {"eta": 0.3, "max_depth": 5}, 20),
    "early stopping depth 4 eta 0.4 (<= 200)": (200, {"eta": 0.4, "max_depth": 4}, 20),
    "30 trees depth 5 eta 0.4": (30, {"eta": 0.4, "max_depth": 5}, 0),
    "20 trees depth 6 eta 0.5": (20, {"eta": 0.5}, 0),
    "40 trees depth 4 eta 0.4": (40, {"eta": 0.4, "max_depth": 4}, 0),
    "linear baseline only": (0, None, 0),
}


class _XgboostPerKind:
    """The evaluation before this change: one xgboost ``inplace_predict`` call per kind."""

    def __init__(self, model: Any) -> None:
        from archkit.device._latency._model import _Regressors

        self.index = {name: i for i, name in enumerate(model.kinds)}
        self.regressors = _Regressors(model.kinds)
        self.boosters = {name: _booster(kind.booster_json) for name, kind in model.kinds.items()}

    def predict_us(self, x: Any, kinds: Any = None) -> Any:
        """Kernel times of rows whose last column is the kind (as the model's regressors)."""
        import numpy as np

        from archkit.device._latency._model import _LINEAR_INDEX

        if kinds is None:
            kinds = x[:, -1].astype(np.intp)
        out = np.zeros(len(x))
        for name, i in self.index.items():
            rows = kinds == i
            if not rows.any():
                continue
            if self.boosters[name] is None:
                out[rows] = self.regressors.predict_us(x[rows])
                continue
            linear = self.regressors.linear[i]
            line = x[rows][:, _LINEAR_INDEX] @ linear[:-1] + linear[-1]
            ratio = np.exp(self.boosters[name].inplace_predict(x[rows][:, :-1]))
            out[rows] = np.maximum((line + 1.0) * ratio - 1.0, 0.0)
        return out


def _booster(model_json: Any) -> Any:
    if model_json is None:
        return None
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(model_json).encode()))
    booster.set_param({"nthread": 1})
    return booster


def held_out(path: Path) -> tuple[list[Any], Any, Any]:
    """An evaluation CSV's networks (rebuilt from their space and parameters), the times
    measured for them as taken (ms) and their groups' probe times (ms)."""
    import ast

    import pandas as pd
    from latency_predictor import SPACES, _spaces

    spaces = dict(zip(SPACES, _spaces(), strict=True))
    frame = pd.read_csv(path).dropna(subset=["measured_raw_ms", "probe_ms"])
    specs = [spaces[r.space].candidate(ast.literal_eval(r.params)) for r in frame.itertuples()]
    return specs, frame["measured_raw_ms"].to_numpy(), frame["probe_ms"].to_numpy()


def held_out_errors(model: Any, specs: list[Any], raw_ms: Any, probe_ms: Any) -> Any:
    """|predicted / measured - 1| per spec, each measurement (as taken, with its group's probe
    time) brought to ``model``'s probe reference; the model's caches emptied afterwards."""
    import numpy as np

    measured = np.asarray(raw_ms) * model.probe_reference_ms / np.asarray(probe_ms)
    error = np.abs(np.array([model.predict(s) for s in specs]) / measured - 1)
    model._forget()
    return error


def _scored(model: Any, scored_on: tuple[list[Any], Any, Any] | None) -> dict[str, float]:
    if scored_on is None:
        return {}
    specs = scored_on[0]
    error = held_out_errors(model, *scored_on)
    return {"held_out_networks": len(specs),
            "held_out_within_10pct": float((error <= 0.10).mean()),
            "held_out_within_5pct": float((error <= 0.05).mean()),
            "held_out_mean_error": float(error.mean()),
            "held_out_worst_error": float(error.max())}


def run(data: Path, stream: int, held_out_csv: Path | None = None) -> list[dict[str, Any]]:
    from latency_predictor import prediction_times

    from archkit.device._latency import _model
    from archkit.device._latency._store import read_records

    conditions, protocol, records = read_records(data)
    held_out_set = held_out(held_out_csv) if held_out_csv else None
    defaults = (dict(_model._XGB_PARAMS), _model._XGB_ROUNDS, _model._MIN_SAMPLES,
                _model._XGB_EARLY_STOPPING, _model._GROUPED_FROM)
    rows = []
    for name, (rounds, params, early_stopping, *grouped_from) in VARIANTS.items():
        start = time.monotonic()
        try:
            _model._XGB_PARAMS = {**defaults[0], **(params or {})}
            _model._XGB_ROUNDS = rounds
            _model._MIN_SAMPLES = defaults[2] if params is not None else 10**9
            _model._XGB_EARLY_STOPPING = early_stopping
            _model._GROUPED_FROM = grouped_from[0] if grouped_from else defaults[4]
            model, stats = _model.fit_model(records, conditions, protocol, {})
        finally:
            (_model._XGB_PARAMS, _model._XGB_ROUNDS, _model._MIN_SAMPLES,
             _model._XGB_EARLY_STOPPING, _model._GROUPED_FROM) = defaults
        fit_s = time.monotonic() - start
        # Through JSON, as a search loads it.
        model = _model.LatencyModel.from_json(json.loads(json.dumps(model.to_json())))
        scores = _scored(model, held_out_set)
        times = prediction_times(model, stream=stream, warm_calls=500)
        trees = {k: len(v.booster_json["learner"]["gradient_booster"]["model"]["trees"])
                 for k, v in model.kinds.items() if v.booster_json is not None}
        rows.append({"variant": name, "evaluation": "all kinds in one pass",
                     "fit_s": fit_s, "trees": trees, **stats, **scores, **times})
        print(_line(rows[-1]), flush=True)
        if name.endswith("(before)"):
            model._forget()
            model._forest_cache = None
            _ = model._forest  # builds the scales and ranges it reads
            model._forest_cache = _XgboostPerKind(model)
            times = prediction_times(model, stream=stream, warm_calls=500)
            rows.append({"variant": name, "evaluation": "xgboost, one call per kind",
                         "fit_s": fit_s, "trees": trees, **stats, **scores, **times})
            print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    trees = "/".join(str(n) for n in r["trees"].values()) or "-"
    return (f"| {r['variant']} | {trees} | {r['evaluation']} | {r['mobilenetv2_cold_us']:.0f} | "
            f"{r['mobilenetv2_warm_us']:.1f} | {r['random_stream_mean_us']:.0f} | "
            f"{r['random_stream_median_us']:.0f} | {r['evicted_stream_median_us']:.0f} | "
            f"{r['out_of_fold_within_10pct']:.1%} | {r['out_of_fold_within_5pct']:.1%} | "
            f"{r['out_of_fold_mean_error']:.1%} | {r['out_of_fold_worst_error']:.1%} | "
            + (f"{r['held_out_within_10pct']:.1%} | {r['held_out_within_5pct']:.1%} | "
               f"{r['held_out_mean_error']:.1%} | {r['held_out_worst_error']:.1%} |"
               if "held_out_within_10pct" in r else "- | - | - | - |"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path,
                    default=Path.home() / ".cache" / "archkit" / "latency" /
                    "host-onnxruntime.jsonl")
    ap.add_argument("--stream", type=int, default=1000)
    ap.add_argument("--held-out", type=Path, help="an evaluation's CSV to score variants on")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args(argv)
    print("| variant | trees per kind | evaluation | cold us | warm us | stream mean us | "
          "stream median us | flushed-cache stream median us | out of fold within +-10% | "
          "within +-5% | mean error | worst error | held out within +-10% | within +-5% | "
          "mean error | worst error |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
          flush=True)
    rows = run(args.data, args.stream, args.held_out)
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
