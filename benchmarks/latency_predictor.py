"""How well archkit's latency models predict, on this machine: onnxruntime, adapting, TVM.

Run (from the repo root; each step appends to reports/latency_predictor.json, and the report is
rebuilt from that file after every step, so steps can run separately and be repeated)::

    .venv/bin/python benchmarks/latency_predictor.py --steps ort,adapt,speed,tvm

Steps:
- ``ort``: build ``host``/onnxruntime from the three MobileNet spaces (``--ort-minutes``), then
  evaluate on ``--ort-eval`` held-out networks, each measured twice (the noise floor).
- ``adapt``: ``host-1t`` (this machine, 1 thread) adapted from ``host``'s model with
  ``--adapt-networks`` networks measured here (end to end and profiled), evaluated on
  ``--adapt-eval`` held-out networks.
- ``scratch_1t``: ``host-1t`` built from scratch (``--scratch-minutes``, a cache of its own),
  evaluated on the held-out networks of ``adapt``: what adapting from 20 networks gives up.
- ``speed``: prediction time for MobileNetV2 1.0/224, cold (a spec never seen, no block
  cached) and warm, and per candidate over a stream of random candidates (each timed right
  after it is made and counted, as in a search); then a ``--search-trials`` latency-budget search
  with the model, in this process: each prediction's time inside it and their share of the
  search's time. ``benchmarks/predictor_speed.py`` compares tree
  ensembles for accuracy and these times on a build's recorded networks, without a device.
- ``adapt_tvm``: ``host-1t``/tvm adapted from ``host``/tvm with ``--adapt-networks`` networks,
  evaluated on ``tvm``'s ``--tvm-eval`` held-out networks (run ``tvm`` first: it compiles them).
- ``tvm``: build ``host``/tvm from ``--tvm-networks`` networks and evaluate on ``--tvm-eval``.
  Each group's libraries are compiled on every core before it is timed (about 5 s per network
  on one core here), and the build's ``--tvm-minutes`` include that compiling;
  ``--tvm-precompile`` compiles every library first instead (not timing-sensitive).

Writes reports/latency_predictor.md, per evaluation a CSV and a predicted-vs-measured scatter
(reports/latency_<device>_<runtime>.{csv,html,png}).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACES = ("mobilenetv2_stages", "mobilenetv2", "mobilenetv1")


def _spaces():
    from archkit._data import shipped_file
    from archkit.search import load_search_space

    return [load_search_space(shipped_file("search_spaces", name)) for name in SPACES]


def _candidates(seed: int):
    from archkit.search import random_candidates

    return random_candidates(_spaces(), seed=seed)


def _evaluate(device: str, runtime: str, networks: int, seed: int, cache: Path,
              out_dir: Path, suffix: str = "") -> dict[str, Any]:
    from archkit.device import evaluate_latency_model, load_latency_model
    from archkit.report import draw_latency_scatter, latency_scatter_data, save

    start = time.monotonic()
    evaluation = evaluate_latency_model(device, _candidates(seed), networks, runtime=runtime,
                                        cache_dir=cache)
    minutes = (time.monotonic() - start) / 60
    stem = out_dir / f"latency_{device}_{runtime}{suffix}"
    frame = evaluation.frame()
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    save(draw_latency_scatter(latency_scatter_data(evaluation.rows, evaluation.summary)), stem)
    ok = frame.dropna(subset=["error"])
    per_space = {
        space: {"networks": int(len(g)), "within_10pct": float((g["error"] <= 0.10).mean()),
                "within_5pct": float((g["error"] <= 0.05).mean()),
                "mean_error": float(g["error"].mean()),
                "mean_signed_error": float(g["signed_error"].mean()),
                "noise_within_10pct": float((g["repeat_error"] <= 0.10).mean())}
        for space, g in ok.groupby("space")
    }
    worst = ok.sort_values("error", ascending=False).head(5)
    # Where errors come from: are the worst predictions also networks the device does not
    # repeat (noise), or ones it repeats well (model error)?
    noisy = ok["repeat_error"] > 0.05
    probe = {}
    protocol = load_latency_model(device, runtime=runtime, cache_dir=cache).protocol
    tolerance = protocol.probe_tolerance
    if tolerance is not None and "probe_ratio" in ok:
        # The protocol's probe: how often a group was timed again, and how slow the probe was
        # in the timings that were kept (beyond tolerance: every retry was slow too).
        kept = ok[["probe_ratio", "probe_ratio_again"]].max(axis=1)
        probe = {"probe": {
            "networks_retimed": int((ok["timings"] > 2).sum()),
            "extra_timings": int((ok["timings"] - 2).sum()),
            "kept_probe_ratio_max": float(kept.max()),
            "networks_kept_slow": int((kept > 1.0 + tolerance).sum()),
            "tolerance": tolerance,
        }}
    return {
        **evaluation.summary,
        **probe,
        "minutes": minutes,
        "per_space": per_space,
        "worst": worst[["name", "predicted_ms", "measured_ms", "measured_again_ms", "error",
                        "repeat_error"]].to_dict("records"),
        "error_when_repeatable": float(ok.loc[~noisy, "error"].mean()) if (~noisy).any() else None,
        "within_10pct_when_repeatable": (float((ok.loc[~noisy, "error"] <= 0.10).mean())
                                         if (~noisy).any() else None),
        "repeatable_networks": int((~noisy).sum()),
        "error_vs_mean_of_two": float(
            (abs(ok["predicted_ms"] - (ok["measured_ms"] + ok["measured_again_ms"]) / 2)
             / ((ok["measured_ms"] + ok["measured_again_ms"]) / 2) <= 0.10).mean()),
        "measured_ms_range": [float(ok["measured_ms"].min()), float(ok["measured_ms"].max())],
        "files": [_shown(stem.with_suffix(s)) for s in (".csv", ".html", ".png")],
    }


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _build(device: str, runtime: str, cache: Path, **kwargs: Any) -> dict[str, Any]:
    from archkit.device import build_latency_model

    start = time.monotonic()
    result = build_latency_model(device, _candidates(kwargs.pop("seed", 0)), runtime=runtime,
                                 cache_dir=cache, **kwargs)
    return {
        "device": device,
        "runtime": runtime,
        "networks": result.networks,
        "new_networks": result.new_networks,
        "kernels": result.kernels,
        "build_minutes": result.minutes,
        "wall_minutes_this_run": (time.monotonic() - start) / 60,
        "stopped_by": result.stopped_by,
        "failed": len(result.failed),
        "fit": result.stats,
        "correction": result.model.correction,
        "conditions": result.model.conditions.to_dict(),
        "protocol": result.model.protocol.to_dict(),
    }


def step_ort(args, cache: Path, out_dir: Path) -> dict[str, Any]:
    build = _build("host", "onnxruntime", cache, minutes=args.ort_minutes)
    evaluation = _evaluate("host", "onnxruntime", args.ort_eval, 1, cache, out_dir)
    return {"build": build, "evaluate": evaluation}


def step_adapt(args, cache: Path, out_dir: Path) -> dict[str, Any]:
    build = _build("host-1t", "onnxruntime", cache, minutes=30, networks=args.adapt_networks,
                   from_model="host", seed=2)
    evaluation = _evaluate("host-1t", "onnxruntime", args.adapt_eval, 3, cache, out_dir)
    return {"build": build, "evaluate": evaluation}


def step_scratch_1t(args, cache: Path, out_dir: Path) -> dict[str, Any]:
    """``host-1t`` built from scratch (its own cache), evaluated on the networks ``adapt`` is
    evaluated on: how far adapting from 20 networks is from a full build on the new device."""
    scratch = cache / "host-1t-scratch"
    build = _build("host-1t", "onnxruntime", scratch, minutes=args.scratch_minutes)
    evaluation = _evaluate("host-1t", "onnxruntime", args.adapt_eval, 3, scratch, out_dir,
                           suffix="_scratch")
    return {"build": build, "evaluate": evaluation}


def step_speed(args, cache: Path, out_dir: Path) -> dict[str, Any]:
    """``prediction_times`` ``--speed-rounds`` times, the model loaded afresh each time: per
    figure the median over rounds, and its range (``spread``)."""
    from archkit.device import load_latency_model

    rounds = [prediction_times(load_latency_model("host", runtime="onnxruntime", cache_dir=cache))
              for _ in range(args.speed_rounds)]
    timed = [k for k in rounds[0] if k.endswith("_us")]
    return {
        **rounds[0],
        **{k: statistics.median(r[k] for r in rounds) for k in timed},
        "rounds": len(rounds),
        # Since stop 26 each spec is counted before it is predicted, as a search does.
        "specs_counted_first": True,
        "spread": {k: [min(r[k] for r in rounds), max(r[k] for r in rounds)] for k in timed},
        "in_search": search_share(cache, args.search_trials, out_dir),
        "against_analytic": against_analytic(cache, args.search_trials, out_dir,
                                             args.speed_rounds),
    }


#: The latency-budget search that ``search_share`` and ``against_analytic`` time.
_MODEL_SEARCH = ("--budget-latency", "3ms", "--device", "host", "--runtime", "onnxruntime",
                 "--latency", "model", "--verify", "0")
#: Its analytic counterpart: the same search with a MAdds budget (no latency at all).
_ANALYTIC_SEARCH = ("--budget-madds", "300M")


def _search_ms_per_trial(cache: Path, trials: int, out_dir: Path, options: tuple[str, ...]
                         ) -> float:
    """``archkit search OPTIONS --trials TRIALS`` in this process: its milliseconds per trial
    (its run directory under ``out_dir``, removed afterwards)."""
    import contextlib
    import io
    import os
    import shutil

    from archkit.cli import main as cli

    run_dir = out_dir / "_speed_search"
    shutil.rmtree(run_dir, ignore_errors=True)
    old_cache = os.environ.get("ARCHKIT_CACHE_DIR")
    os.environ["ARCHKIT_CACHE_DIR"] = str(cache)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the search prints its table
            code = cli(["search", *options, "--trials", str(trials), "--run-dir", str(run_dir),
                        "--no-progress", "--format", "json"])
    finally:
        seconds = time.perf_counter() - start
        if old_cache is None:
            os.environ.pop("ARCHKIT_CACHE_DIR", None)
        else:
            os.environ["ARCHKIT_CACHE_DIR"] = old_cache
        shutil.rmtree(run_dir, ignore_errors=True)
    if code != 0:
        raise RuntimeError(f"archkit search {' '.join(options)} exited with {code}")
    return seconds / trials * 1e3


def against_analytic(cache: Path, trials: int, out_dir: Path, rounds: int) -> dict[str, Any]:
    """Does a latency-budget search with the model run at analytic speed? ``rounds`` times,
    alternating: the search ``search_share`` times and the same search with a MAdds budget
    instead (``_ANALYTIC_SEARCH``), each ``trials`` trials; milliseconds per trial, medians and
    ranges, and the median of the per-round ratios."""
    model, analytic = [], []
    for _ in range(rounds):
        model.append(_search_ms_per_trial(cache, trials, out_dir, _MODEL_SEARCH))
        analytic.append(_search_ms_per_trial(cache, trials, out_dir, _ANALYTIC_SEARCH))
    ratios = [m / a for m, a in zip(model, analytic, strict=True)]
    return {
        "trials": trials,
        "rounds": rounds,
        "model_search": " ".join(_MODEL_SEARCH),
        "analytic_search": " ".join(_ANALYTIC_SEARCH),
        "model_ms_per_trial": statistics.median(model),
        "model_ms_per_trial_range": [min(model), max(model)],
        "analytic_ms_per_trial": statistics.median(analytic),
        "analytic_ms_per_trial_range": [min(analytic), max(analytic)],
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }


def search_share(cache: Path, trials: int, out_dir: Path) -> dict[str, Any]:
    """What the predictions cost inside a real search: ``archkit search --budget-latency 3ms
    --device host --runtime onnxruntime --latency model --verify 0`` run in this process (its
    run directory under ``out_dir``, removed afterwards), every ``LatencyModel.predict`` call
    timed, the garbage collector on as in any search."""
    import archkit.device._latency._model as model_module

    calls: list[float] = []
    predict = model_module.LatencyModel.predict

    def timed(self, spec):
        start = time.perf_counter()
        try:
            return predict(self, spec)
        finally:
            calls.append(time.perf_counter() - start)

    model_module.LatencyModel.predict = timed
    try:
        ms_per_trial = _search_ms_per_trial(cache, trials, out_dir, _MODEL_SEARCH)
    finally:
        model_module.LatencyModel.predict = predict
    if not calls:
        raise RuntimeError("the search made no prediction")
    seconds = ms_per_trial * trials / 1e3
    rest = calls[1:]
    return {
        "trials": trials,
        "ms_per_trial": ms_per_trial,
        "first_prediction_ms": calls[0] * 1e3,
        "prediction_median_us": statistics.median(rest) * 1e6,
        "prediction_mean_us": statistics.mean(rest) * 1e6,
        "share_of_search": sum(calls) / seconds,
    }


def prediction_times(model: Any, stream: int = 1000, warm_calls: int = 2000) -> dict[str, Any]:
    """Prediction time of ``model`` for MobileNetV2 1.0/224 (cold and warm) and per candidate
    over a stream of random candidates of the three spaces (caches emptied first).

    The garbage collector is off while timing, as ``timeit`` does: a full collection of this
    process's ~200,000 objects takes ~100 ms here, and which call it lands in depends on
    everything the process allocated, not on the prediction (two such calls moved a stream's
    mean from 195 to 370 us).
    """
    import gc

    gc.collect()
    gc.disable()
    try:
        return _prediction_times(model, stream, warm_calls)
    finally:
        gc.enable()


#: Written between the calls of the evicted stream: more than this host's L2 caches (2 x 1 MiB)
#: and a good part of its L3 (32 MiB).
_FLUSH_BYTES = 16 * 2**20


def _prediction_times(model: Any, stream: int, warm_calls: int) -> dict[str, Any]:
    import numpy as np

    from archkit.cost import count
    from archkit.ops import lower
    from archkit.spec import apply_overrides, load_spec

    base = load_spec(ROOT / "specs" / "mobilenetv2.yaml")
    cold = []
    for i in range(20):
        # A spec never seen (lowered when it is made and counted, as a search's candidates
        # are) and empty block caches.
        spec = apply_overrides(base, width=1.0 + i * 1e-9, resolution=224)
        count(spec)
        model._forget()
        start = time.perf_counter()
        model.predict(spec)
        cold.append(time.perf_counter() - start)
    spec = apply_overrides(base, width=1.0, resolution=224)
    model.predict(spec)
    warm = []
    for _ in range(warm_calls):
        start = time.perf_counter()
        model.predict(spec)
        warm.append(time.perf_counter() - start)
    # Warm blocks, new spec object each time (what a search sees when it revisits a shape).
    fresh = [apply_overrides(base, width=1.0, resolution=224) for _ in range(200)]
    lower.cache_clear()
    new_object = []
    for s in fresh:
        start = time.perf_counter()
        model.predict(s)
        new_object.append(time.perf_counter() - start)
    times = []
    model._forget()
    candidates = _candidates(7)
    for _ in range(stream):
        # As in a search: the candidate is made (and its spec validated) and counted just
        # before.
        s = next(candidates).spec
        count(s)
        start = time.perf_counter()
        model.predict(s)
        times.append(time.perf_counter() - start)
    # The same stream again (caches emptied) with the CPU's caches flushed before each call,
    # as a search's own work between predictions does (Optuna's sampler, its storage): the
    # trees are then read from memory.
    evicted = []
    model._forget()
    candidates = _candidates(7)
    flush = np.zeros(_FLUSH_BYTES // 8)
    for _ in range(stream):
        s = next(candidates).spec
        count(s)
        flush += 1.0
        start = time.perf_counter()
        model.predict(s)
        evicted.append(time.perf_counter() - start)
    us = 1e6
    return {
        "evicted_stream_median_us": statistics.median(evicted) * us,
        "evicted_stream_mean_us": statistics.mean(evicted) * us,
        "mobilenetv2_cold_us": statistics.median(cold) * us,
        "mobilenetv2_warm_us": statistics.median(warm) * us,
        "mobilenetv2_warm_new_spec_object_us": statistics.median(new_object) * us,
        "random_stream_mean_us": statistics.mean(times) * us,
        "random_stream_median_us": statistics.median(times) * us,
        "random_stream_first100_mean_us": statistics.mean(times[:100]) * us,
        "random_stream_last100_mean_us": statistics.mean(times[-100:]) * us,
        "blocks_cached_after_stream": len(model._blocks),
        "block_shapes_cached_after_stream": len(getattr(model, "_blocks_by_shape", ())),
    }


def step_tvm(args, cache: Path, out_dir: Path) -> dict[str, Any]:
    from archkit.device import prepare_tvm_libraries

    compile_minutes = None
    if args.tvm_precompile:
        start = time.monotonic()
        prepare_tvm_libraries("host", _candidates(0), args.tvm_networks, cache_dir=cache)
        prepare_tvm_libraries("host", _candidates(1), args.tvm_eval, cache_dir=cache)
        compile_minutes = (time.monotonic() - start) / 60
    build = _build("host", "tvm", cache, minutes=args.tvm_minutes, networks=args.tvm_networks)
    evaluation = _evaluate("host", "tvm", args.tvm_eval, 1, cache, out_dir)
    return {"build": build, "evaluate": evaluation, "compile_minutes_this_run": compile_minutes}


def step_adapt_tvm(args, cache: Path, out_dir: Path) -> dict[str, Any]:
    """``host-1t``/tvm adapted from ``host``/tvm with ``--adapt-networks`` networks of seed
    ``--adapt-tvm-seed`` (the default, 4, draws networks ``host``'s model never saw; 0 would
    draw those it was fitted on), evaluated on the ``--tvm-eval`` networks ``tvm`` evaluates
    on. ``--tvm-precompile`` compiles the adaptation networks' libraries first."""
    from archkit.device import prepare_tvm_libraries

    compile_minutes = None
    if args.tvm_precompile:
        start = time.monotonic()
        prepare_tvm_libraries("host-1t", _candidates(args.adapt_tvm_seed), args.adapt_networks,
                              cache_dir=cache)
        prepare_tvm_libraries("host-1t", _candidates(1), args.tvm_eval, cache_dir=cache)
        compile_minutes = (time.monotonic() - start) / 60
    build = _build("host-1t", "tvm", cache, minutes=30, networks=args.adapt_networks,
                   from_model="host", seed=args.adapt_tvm_seed)
    evaluation = _evaluate("host-1t", "tvm", args.tvm_eval, 1, cache, out_dir)
    return {"build": build, "evaluate": evaluation, "seed": args.adapt_tvm_seed,
            "compile_minutes_this_run": compile_minutes}


STEPS = {"ort": step_ort, "adapt": step_adapt, "scratch_1t": step_scratch_1t,
         "speed": step_speed, "tvm": step_tvm, "adapt_tvm": step_adapt_tvm}


#: Result keys and their labels, in report order (``tvm_spinning``: an earlier TVM run whose
#: worker threads spun, TVM's default, kept beside the run with ``tvm_spin_count`` 0).
SECTIONS = (
    ("ort", "host / onnxruntime"),
    ("adapt", "host-1t / onnxruntime, adapted from host"),
    ("scratch_1t", "host-1t / onnxruntime, built from scratch"),
    ("tvm", "host / tvm"),
    ("adapt_tvm", "host-1t / tvm, adapted from host"),
    ("tvm_spinning", "host / tvm, spinning TVM thread pool"),
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _eval_rows(label: str, e: dict[str, Any]) -> list[str]:
    p, n = e["prediction"], e["noise_floor"]
    return [
        f"| {label}: prediction vs 1st measurement | {e['networks']} | {_pct(p['within_5pct'])} "
        f"| {_pct(p['within_10pct'])} | {_pct(p['mean_error'])} | {_pct(p['worst_error'])} |",
        f"| {label}: 2nd vs 1st measurement (noise floor) | {e['noise_floor_networks']} | "
        f"{_pct(n['within_5pct'])} | {_pct(n['within_10pct'])} | {_pct(n['mean_error'])} | "
        f"{_pct(n['worst_error'])} |",
    ]


def write_report(results: dict[str, Any], path: Path) -> None:
    for entry in results.values():
        if isinstance(entry, dict) and "evaluate" in entry:
            entry["evaluate"]["files"] = [_shown(Path(f)) for f in entry["evaluate"]["files"]]
    lines = [
        "# Latency predictor: how well archkit's latency models predict on this machine",
        "",
        "Generated by `benchmarks/latency_predictor.py` (raw numbers: "
        "`reports/latency_predictor.json`). Host: "
        f"{results.get('host', {}).get('cpu', '?')}, {results.get('host', {}).get('cores', '?')}"
        " cores, shared with other work. Networks drawn at random from "
        "`search_spaces/mobilenetv2_stages.yaml`, `mobilenetv2.yaml` and `mobilenetv1.yaml` "
        "(Optuna's RandomSampler, as a search draws them); held-out networks never include one "
        "the model was built from (same kernels = same network).",
        "",
        "| evaluation | networks | within +-5% | within +-10% | mean error | worst error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in SECTIONS:
        if key in results:
            lines += _eval_rows(label, results[key]["evaluate"])
    lines.append("")
    for key, label in SECTIONS:
        if key not in results:
            continue
        b, e = results[key]["build"], results[key]["evaluate"]
        lines += [
            f"## {label}",
            "",
            f"- Build: {b['networks']} networks ({b['kernels']:,} kernels with measured times) "
            f"in {b['build_minutes']:.1f} min of measuring and fitting"
            + (f" (this run: {b['wall_minutes_this_run']:.1f} min wall)" if b else "")
            + f"; stopped by {b['stopped_by']}; {b['failed']} failed.",
            f"- Out of fold on its own data: {_pct(b['fit'].get('out_of_fold_within_10pct'))} "
            f"within +-10%." if "out_of_fold_within_10pct" in b["fit"] else
            ("- Adapted: host's kernel regressors boosted on with these networks' kernel "
             "times, correction refitted." if b["kernels"] else
             "- Adapted: kernel regressors from host, correction refitted on these networks."),
            f"- Correction: offset {b['correction']['offset_ms']:.3f} ms, per kernel "
            f"{b['correction']['per_kernel_ms'] * 1e3:.2f} us, scales "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(b["correction"]["scale"].items()))
            + f" (ridge {b['correction']['ridge']:g})"
            + _size_scales(b["correction"]) + ".",
            f"- Ran {results[key]['ran']}; 1-minute load average "
            f"{results[key]['load_average_1min'][0]} at the start, "
            f"{results[key]['load_average_1min'][1]} at the end (2 cores).",
            f"- Evaluation: {e['networks']} held-out networks, measured "
            f"{e['measured_ms_range'][0]:.2f}-{e['measured_ms_range'][1]:.2f} ms, second "
            f"measurement: {e['second_measurement']}; {e['minutes']:.1f} min.",
            *([f"- Probe (protocol): {e['probe']['networks_retimed']} of {e['networks']} "
               f"networks had a group timed again ({e['probe']['extra_timings']} extra "
               f"timings); {e['probe']['networks_kept_slow']} kept a timing whose probe was "
               f"still more than {e['probe']['tolerance']:.0%} slow (worst "
               f"{e['probe']['kept_probe_ratio_max']:.2f}x)."]
              if e.get("probe") else []),
            f"- Within +-10% of the mean of the two measurements: "
            f"{_pct(e['error_vs_mean_of_two'])}. On the {e['repeatable_networks']} networks "
            f"whose two measurements agree within 5%: mean error "
            f"{_pct(e['error_when_repeatable'])}, {_pct(e['within_10pct_when_repeatable'])} "
            "within +-10%.",
            "",
            "| space | networks | within +-5% | within +-10% | mean error | mean signed error "
            "| noise floor within +-10% |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for space, s in e["per_space"].items():
            lines.append(f"| {space} | {s['networks']} | {_pct(s['within_5pct'])} | "
                         f"{_pct(s['within_10pct'])} | {_pct(s['mean_error'])} | "
                         f"{s['mean_signed_error']:+.1%} | {_pct(s['noise_within_10pct'])} |")
        lines += ["", "Worst predictions:", "",
                  "| network | predicted ms | measured ms | measured again ms | error | repeat |",
                  "|---|---:|---:|---:|---:|---:|"]
        for w in e["worst"]:
            again = w["measured_again_ms"]
            lines.append(f"| `{w['name']}` | {w['predicted_ms']:.3f} | {w['measured_ms']:.3f} "
                         f"| {again:.3f} | {w['error']:.1%} | {_pct(w['repeat_error'])} |")
        lines += ["", f"Files: {', '.join('`' + f + '`' for f in e['files'])}", ""]
    if "speed" in results:
        s = results["speed"]
        spread = s.get("spread", {})

        def rng(key: str) -> str:
            lo_hi = spread.get(key)
            return f" ({lo_hi[0]:.0f}-{lo_hi[1]:.0f})" if lo_hi else ""

        lines += [
            "## Prediction time",
            "",
            f"Medians over {s.get('rounds', 1)} rounds (each with the model loaded afresh), "
            "range in parentheses; the garbage collector off while timing, as `timeit` does.",
            "",
            f"- MobileNetV2 1.0/224, warm (blocks cached, same spec): "
            f"{s['mobilenetv2_warm_us']:.1f} us; a new but equal spec object: "
            f"{s['mobilenetv2_warm_new_spec_object_us']:.1f} us.",
            (f"- Cold (a spec never seen, counted as a search counts it, no block cached): "
             f"{s['mobilenetv2_cold_us']:.0f} us{rng('mobilenetv2_cold_us')} (kernel features "
             "of every new block, the trees of their kernels)."
             if s.get("specs_counted_first") else  # (stop 25 and before)
             f"- Cold (a spec never seen, no block or kernel cached): "
             f"{s['mobilenetv2_cold_us']:.0f} us{rng('mobilenetv2_cold_us')} (kernel features "
             "of every block, the trees of every new kernel)."),
            f"- 1,000 random candidates of the three spaces in a row: mean "
            f"{s['random_stream_mean_us']:.0f} us, median {s['random_stream_median_us']:.0f} us"
            f"{rng('random_stream_median_us')} "
            f"(first 100: {s['random_stream_first100_mean_us']:.0f} us, last 100: "
            f"{s['random_stream_last100_mean_us']:.0f} us; {s['blocks_cached_after_stream']:,} "
            "blocks"
            + (f" and {s['kernels_cached_after_stream']:,} kernels"  # (stop 25 and before)
               if "kernels_cached_after_stream" in s else "") + " cached).",
        ]
        if "evicted_stream_median_us" in s:
            lines += [
                f"- The same stream with the CPU's caches flushed before each call (16 MiB "
                f"written), as a search's own work between predictions flushes them: median "
                f"{s['evicted_stream_median_us']:.0f} us{rng('evicted_stream_median_us')}.",
            ]
        q = s.get("in_search")
        if q:
            lines += [
                f"- Inside a {q['trials']:,}-trial latency-budget search with the model "
                f"(garbage collector on, Optuna working between calls): prediction median "
                f"{q['prediction_median_us']:.0f} us, mean {q['prediction_mean_us']:.0f} us "
                f"(the first, which loads onnxruntime and builds the tree ensemble: "
                f"{q['first_prediction_ms']:.0f} ms); all predictions together "
                f"{q['share_of_search']:.1%} of the search's {q['ms_per_trial']:.1f} ms per "
                "trial.",
            ]
        a = s.get("against_analytic")
        if a:
            lines += [
                f"- Against analytic speed ({a['rounds']} rounds of {a['trials']:,} trials, "
                f"alternating): `archkit search {a['model_search']}` "
                f"{a['model_ms_per_trial']:.2f} ms per trial "
                f"({a['model_ms_per_trial_range'][0]:.2f}-{a['model_ms_per_trial_range'][1]:.2f}"
                f"), the same search with `{a['analytic_search']}` instead (no latency) "
                f"{a['analytic_ms_per_trial']:.2f} ms "
                f"({a['analytic_ms_per_trial_range'][0]:.2f}-"
                f"{a['analytic_ms_per_trial_range'][1]:.2f}): ratio "
                f"{a['ratio_median']:.2f} ({a['ratio_range'][0]:.2f}-{a['ratio_range'][1]:.2f}).",
            ]
        lines += [""]
    if "notes" in results:
        lines += ["## Notes", "", *results["notes"], ""]
    path.write_text("\n".join(lines))


def _size_scales(correction: dict[str, Any]) -> str:
    """An adapted correction's scales by kernel size, and how each candidate scored."""
    edges = correction.get("size_edges_us")
    if edges is None:
        return ""
    bounds = [0, *edges, None]
    bins = ", ".join(f"{lo:g}-{hi:g} us {v:.2f}" if hi is not None else f">{lo:g} us {v:.2f}"
                     for lo, hi, v in zip(bounds[:-1], bounds[1:], correction["size_scale"],
                                          strict=True))
    tried = ", ".join(f"{k} {v:.1%}" for k, v in correction["size_cv_error"].items())
    return (f"; times kernel-size scales {bins} (edges chosen by cross-validation on the "
            f"adaptation networks, mean error: {tried})")


#: The steps that evaluate a model (each writes a scatter plot as HTML and PNG).
_EVALUATING = {"ort", "adapt", "scratch_1t", "tvm", "adapt_tvm"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="ort,adapt,speed,tvm")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "latency-cache")
    ap.add_argument("--output-dir", type=Path, default=ROOT / "reports")
    ap.add_argument("--results", type=Path, default=ROOT / "reports" / "latency_predictor.json")
    ap.add_argument("--ort-minutes", type=float, default=20.0)
    ap.add_argument("--ort-eval", type=int, default=100)
    ap.add_argument("--adapt-networks", type=int, default=20)
    ap.add_argument("--adapt-eval", type=int, default=60)
    ap.add_argument("--adapt-tvm-seed", type=int, default=4)
    ap.add_argument("--scratch-minutes", type=float, default=15.0)
    ap.add_argument("--speed-rounds", type=int, default=5)
    ap.add_argument("--search-trials", type=int, default=1000)
    ap.add_argument("--tvm-networks", type=int, default=45)
    ap.add_argument("--tvm-eval", type=int, default=30)
    ap.add_argument("--tvm-minutes", type=float, default=30.0)
    ap.add_argument("--tvm-precompile", action="store_true")
    args = ap.parse_args(argv)

    import os
    import platform

    from archkit.device._latency._conditions import _cpu_model

    steps = args.steps.split(",")
    unknown = [name for name in steps if name not in STEPS]
    if unknown:
        ap.error(f"unknown steps {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    from archkit.report import find_browser

    if set(steps) & _EVALUATING and find_browser() is None:
        # Before measuring for minutes, not when the first scatter plot's PNG is written.
        ap.error("the evaluations' scatter plots need Chrome or Chromium for their PNGs: run "
                 "scripts/chromium.sh (or set BROWSER_PATH)")
    results: dict[str, Any] = {}
    if args.results.exists():
        results = json.loads(args.results.read_text())
    results["host"] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "node": platform.node()}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in steps:
        start = time.strftime("%H:%M:%S")
        load_before = os.getloadavg()[0]
        results[name] = STEPS[name](args, args.cache_dir, args.output_dir)
        results[name]["ran"] = f"{start}-{time.strftime('%H:%M:%S')} UTC"
        results[name]["load_average_1min"] = [round(load_before, 2),
                                              round(os.getloadavg()[0], 2)]
        write_report(results, args.output_dir / "latency_predictor.md")
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=2, default=str))
        print(f"{name}: done ({results[name]['ran']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
