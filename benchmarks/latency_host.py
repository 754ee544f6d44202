"""Host latency of MobileNetV2: PyTorch eager, onnxruntime, TVM untuned and TVM tuned.

Run (from the repo root)::

    .venv/bin/python benchmarks/latency_host.py --trials 640 --output runs/latency_host.json

For MobileNetV2 1.0/224 and 0.5/160 on this machine (device ``host``, all cores), in one run:
PyTorch eager and onnxruntime (ONNX export) baselines, TVM without tuning, and TVM after
MetaSchedule tuning with ``--trials`` trials per network (spread over the layers that the
per-device database does not have yet; the second network reuses the first one's layers where
shapes match). Prints a table of medians (ms) and ratios to onnxruntime, the tuning cost in
minutes and the trials actually run, and writes everything (with the measurement metadata) as
JSON. The tuning database goes to ``--cache-dir`` (default: a fresh folder, so the tuning cost
is the real cost; pass a persistent folder to reuse earlier runs).

Tuning curve (latency vs tuning minutes)::

    nice -n 10 .venv/bin/python benchmarks/latency_host.py --tuning-curve 30 15

For each network: PyTorch eager and onnxruntime (before and after, same run), TVM untuned, then
rounds of MetaSchedule tuning on the whole network (``retune``: every layer gets trials each
round, by its measured share of the network's time, starting from the database's best) until
MINUTES of tuning are spent (one value, or one per ``--models`` entry), TVM re-measured after
each round. Rounds are sized from the trial
rate seen so far to give about ``--curve-points`` points. Writes ``--plot`` (default
``reports/tuning_curve``) ``.html``/``.png``/``.csv``/``.md`` and the JSON; ``--replot JSON``
redraws them from that JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {"mobilenetv2-1.0-224": (1.0, 224), "mobilenetv2-0.5-160": (0.5, 160)}


def build(width: float, resolution: int):
    """MobileNetV2 at ``width``/``resolution`` from the shipped spec, and an input batch."""
    import torch

    from archkit.build import build_model
    from archkit.spec import apply_overrides, load_spec

    spec = apply_overrides(load_spec(ROOT / "specs" / "mobilenetv2.yaml"), width=width,
                           resolution=resolution)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec).eval()
    # Latency does not depend on the weights, but the TVM-vs-PyTorch check needs outputs of a
    # sensible size: PyTorch's default initialisation and non-trivial BatchNorm statistics
    # (so folding BN into the convolutions is really checked).
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                module.reset_parameters()
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    return model, x


#: Trials per minute assumed for the first round (the 2-core dev VM under load: 33 trials and
#: the one-off kernel profile took 3.7 min for 1.0/224); later rounds use the rate seen so far.
FIRST_RATE_PER_MIN = 15.0


def tuning_curve(name, model, x, device, minutes: float, points: int, cache_dir: Path,
                 repeats: int, console) -> dict:  # fmt: skip
    """Latency after each round of tuning, up to ``minutes`` of tuning; baselines around it."""
    from archkit.device import host_baselines, measure_latency

    before = host_baselines(model, x, repeats=repeats)
    console.print(f"{name}: pytorch eager {before['pytorch_eager_ms']:.2f} ms, "
                  f"onnxruntime {before['onnxruntime_ms']:.2f} ms")  # fmt: skip
    untuned = measure_latency(model, x, device, repeats=repeats, name=name)
    curve = [{"model": name, "tune_min": 0.0, "trials": 0, "tvm_ms": untuned.median_ms,
              "tvm_p90_ms": untuned.p90_ms, "max_abs_diff": untuned.max_abs_diff}]  # fmt: skip
    console.print(f"{name}: TVM untuned {untuned.median_ms:.2f} ms")
    spent_min, trials_total, rate = 0.0, 0, FIRST_RATE_PER_MIN
    round_min = minutes / points
    while spent_min < minutes - 0.25 * round_min:
        trials = max(8, int(rate * min(round_min, minutes - spent_min)))
        res = measure_latency(model, x, device, tune_trials=trials, cache_dir=cache_dir,
                              repeats=repeats, name=name, progress=False, retune=True)  # fmt: skip
        tuning = res.metadata["tuning"]
        spent_min += tuning["tune_s"] / 60
        trials_total += tuning["trials_run"]
        rate = max(1.0, trials_total / max(spent_min, 1e-3))
        curve.append({"model": name, "tune_min": spent_min, "trials": trials_total,
                      "tvm_ms": res.median_ms, "tvm_p90_ms": res.p90_ms,
                      "max_abs_diff": res.max_abs_diff,
                      "allocation": tuning.get("allocation")})  # fmt: skip
        console.print(f"{name}: {spent_min:.1f} min, {trials_total} trials -> TVM "
                      f"{res.median_ms:.2f} ms ({tuning.get('allocation')} shares)")  # fmt: skip
        if tuning["trials_run"] == 0:
            break
    after = host_baselines(model, x, repeats=repeats)
    return {"model": name, "curve": curve, "baselines_before": before, "baselines_after": after}


def curve_frame(results: list[dict]):
    """Plot data: one row per (model, series, tuning minutes); testable without plotly."""
    import pandas as pd

    rows = []
    for result in results:
        last = max(p["tune_min"] for p in result["curve"])
        for p in result["curve"]:
            rows.append({"model": result["model"], "series": "TVM (MetaSchedule)",
                         "tune_min": p["tune_min"], "ms": p["tvm_ms"], "trials": p["trials"]})
        for key, label in (("onnxruntime_ms", "onnxruntime"),
                           ("pytorch_eager_ms", "PyTorch eager")):  # fmt: skip
            ms = (result["baselines_before"][key] + result["baselines_after"][key]) / 2
            for t in (0.0, last):
                rows.append({"model": result["model"], "series": label, "tune_min": t,
                             "ms": ms, "trials": None})  # fmt: skip
    return pd.DataFrame(rows)


def draw_curve(frame, title: str):
    """Latency vs tuning minutes, one panel per network, log latency axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models = list(dict.fromkeys(frame["model"]))
    fig = make_subplots(rows=1, cols=len(models), subplot_titles=models)
    styles = {"TVM (MetaSchedule)": dict(mode="lines+markers"),
              "onnxruntime": dict(mode="lines", line=dict(dash="dash")),
              "PyTorch eager": dict(mode="lines", line=dict(dash="dot"))}  # fmt: skip
    colors = {"TVM (MetaSchedule)": "#1f77b4", "onnxruntime": "#2ca02c",
              "PyTorch eager": "#d62728"}  # fmt: skip
    for col, model in enumerate(models, start=1):
        for series, style in styles.items():
            part = frame[(frame["model"] == model) & (frame["series"] == series)]
            fig.add_trace(go.Scatter(x=part["tune_min"], y=part["ms"], name=series,
                                     legendgroup=series, showlegend=col == 1,
                                     marker_color=colors[series], **style),
                          row=1, col=col)  # fmt: skip
        fig.update_xaxes(title_text="tuning time (min)", row=1, col=col)
        fig.update_yaxes(title_text="median latency (ms)", type="log", row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", width=1200, height=520)
    return fig


def run_curve(args, console) -> int:
    import torch

    from archkit.device import load_device

    device = load_device("host")
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="archkit-curve-cache-"))
    budgets = ", ".join(f"{name} {minutes:g} min" for name, minutes in args.tuning_curve.items())
    console.print(f"tuning curve: tuning budget {budgets}, target "
                  f"{device.target_dict()}, torch threads {torch.get_num_threads()}, "
                  f"cache {cache_dir}")  # fmt: skip
    results = []
    for name in args.models:
        model, x = build(*MODELS[name])
        console.rule(name)
        results.append(tuning_curve(name, model, x, device, args.tuning_curve[name],
                                    args.curve_points, cache_dir, args.repeats, console))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"tuning_curve_min": args.tuning_curve,
                                           "results": results}, indent=2))  # fmt: skip
    return write_curve(results, args.tuning_curve, Path(args.plot), not args.no_png, console,
                       extra=[args.output])


def curve_markdown(results: list[dict], budgets: dict[str, float]) -> str:
    """Every point of every curve as a table, with the ratio to onnxruntime of the same run."""
    lines = [
        "# TVM tuning curve (MobileNetV2 on this host)",
        "",
        "Written by `benchmarks/latency_host.py --tuning-curve` (see its docstring for the "
        "protocol); plot: [tuning_curve.html](tuning_curve.html), data: "
        "[tuning_curve.csv](tuning_curve.csv). onnxruntime and PyTorch eager are the means of "
        "their medians before and after the curve, in the same run.",
        "",
        "| network | tuning budget (min) | tuning min | trials | TVM median ms | TVM p90 ms | "
        "x onnxruntime | onnxruntime ms | PyTorch eager ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        ort = (result["baselines_before"]["onnxruntime_ms"]
               + result["baselines_after"]["onnxruntime_ms"]) / 2  # fmt: skip
        eager = (result["baselines_before"]["pytorch_eager_ms"]
                 + result["baselines_after"]["pytorch_eager_ms"]) / 2  # fmt: skip
        for p in result["curve"]:
            lines.append(
                f"| {result['model']} | {budgets.get(result['model'], float('nan')):g} | "
                f"{p['tune_min']:.1f} | {p['trials']} | {p['tvm_ms']:.2f} | "
                f"{p['tvm_p90_ms']:.2f} | {p['tvm_ms'] / ort:.1f} | {ort:.2f} | {eager:.2f} |"
            )
    return "\n".join(lines) + "\n"


def write_curve(results: list[dict], budgets: dict[str, float], stem: Path, png: bool, console,
                extra: list[Path] = ()) -> int:
    """The plot (HTML, PNG), its CSV and the Markdown table of ``results``."""
    from archkit.report import save

    frame = curve_frame(results)
    text = ", ".join(f"{name} {minutes:g} min" for name, minutes in budgets.items())
    short = " - SHORT RUN" if max(budgets.values()) < 30 else ""
    title = (f"MobileNetV2 on this host ({os.cpu_count()} cores): TVM latency vs MetaSchedule "
             f"tuning time ({text}){short}")  # fmt: skip
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(curve_markdown(results, budgets))
    written = save(draw_curve(frame, title), stem, png=png)
    for result in results:
        last = result["curve"][-1]
        ort = (result["baselines_before"]["onnxruntime_ms"]
               + result["baselines_after"]["onnxruntime_ms"]) / 2  # fmt: skip
        console.print(f"{result['model']}: TVM {result['curve'][0]['tvm_ms']:.2f} ms untuned -> "
                      f"{last['tvm_ms']:.2f} ms after {last['tune_min']:.1f} min "
                      f"({last['trials']} trials) = {last['tvm_ms'] / ort:.2f}x onnxruntime "
                      f"({ort:.2f} ms)")  # fmt: skip
    console.print("wrote " + ", ".join(str(p) for p in [*written, stem.with_suffix(".csv"),
                                                        stem.with_suffix(".md"), *extra]))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=640,
                    help="MetaSchedule trials per network (0: skip tuning)")  # fmt: skip
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=30, help="timed repeats per measurement")
    ap.add_argument("--cache-dir", type=Path, default=None, help="tuning cache (default: fresh)")
    ap.add_argument("--output", type=Path, default=ROOT / "runs" / "latency_host.json")
    ap.add_argument("--tuning-curve", type=float, nargs="+", default=None, metavar="MINUTES",
                    help="latency vs tuning time, up to MINUTES of tuning per network (one "
                         "value for all, or one per --models entry)")
    ap.add_argument("--curve-points", type=int, default=6,
                    help="tuning rounds (points) per curve, about equal in time")
    ap.add_argument("--plot", default=str(ROOT / "reports" / "tuning_curve"),
                    help="stem of the curve's .html/.png/.csv")
    ap.add_argument("--no-png", action="store_true", help="HTML only (no Chromium needed)")
    ap.add_argument("--replot", type=Path, default=None, metavar="JSON",
                    help="redraw the plot, CSV and Markdown of a finished curve's --output JSON")
    args = ap.parse_args(argv)
    if args.replot is not None:
        from rich.console import Console

        saved = json.loads(args.replot.read_text())
        return write_curve(saved["results"], saved["tuning_curve_min"], Path(args.plot),
                           not args.no_png, Console(width=150))
    if args.tuning_curve is not None:
        from rich.console import Console

        if min(args.tuning_curve) <= 0 or args.curve_points < 1:
            ap.error("--tuning-curve MINUTES and --curve-points must be positive")
        if len(args.tuning_curve) not in (1, len(args.models)):
            ap.error("--tuning-curve takes one MINUTES, or one per --models entry")
        if len(args.tuning_curve) == 1:
            args.tuning_curve = args.tuning_curve * len(args.models)
        args.tuning_curve = dict(zip(args.models, args.tuning_curve, strict=True))
        return run_curve(args, Console(width=150))

    import torch
    from rich.console import Console
    from rich.table import Table

    from archkit.device import host_baselines, load_device, measure_latency

    console = Console(width=150)
    device = load_device("host")
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="archkit-bench-cache-"))
    console.print(
        f"device host: target {device.target_dict()}, threads {device.threads}, "
        f"torch threads {torch.get_num_threads()}, cache {cache_dir}"
    )
    rows = []
    for name in args.models:
        width, resolution = MODELS[name]
        model, x = build(width, resolution)
        row: dict = {"model": name}
        console.rule(name)
        base = host_baselines(model, x, repeats=args.repeats)
        row["pytorch_eager_ms"] = base["pytorch_eager_ms"]
        row["onnxruntime_ms"] = base["onnxruntime_ms"]
        row["baselines"] = base
        console.print(f"pytorch eager {base['pytorch_eager_ms']:.2f} ms, "
                      f"onnxruntime {base['onnxruntime_ms']:.2f} ms")  # fmt: skip

        untuned = measure_latency(model, x, device, repeats=args.repeats, name=name)
        row["tvm_untuned_ms"] = untuned.median_ms
        row["tvm_untuned"] = untuned.to_dict()
        console.print(f"TVM untuned {untuned.median_ms:.2f} ms "
                      f"(max abs diff {untuned.max_abs_diff:.2g})")  # fmt: skip

        if args.trials > 0:
            t0 = time.perf_counter()
            tuned = measure_latency(
                model, x, device, tune_trials=args.trials, cache_dir=cache_dir,
                repeats=args.repeats, name=name,
            )  # fmt: skip
            tuning = tuned.metadata["tuning"]
            row["tvm_tuned_ms"] = tuned.median_ms
            row["tvm_tuned"] = tuned.to_dict()
            row["tune_minutes"] = tuning["tune_s"] / 60
            row["wall_minutes"] = (time.perf_counter() - t0) / 60
            row["trials_run"] = tuning["trials_run"]
            row["tasks"] = f"{tuning['tasks_tuned']} tuned / {tuning['tasks_reused']} reused"
            console.print(
                f"TVM tuned {tuned.median_ms:.2f} ms after {tuning['trials_run']} trials "
                f"({row['tasks']}), tuning {row['tune_minutes']:.1f} min"
            )
        rows.append(row)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"rows": rows, "trials": args.trials}, indent=2))

    table = Table(
        title=f"MobileNetV2 on this host ({os.cpu_count()} cores), median ms (x = ratio to "
        f"onnxruntime); tuning budget {args.trials} trials/network"
    )
    for col in ("model", "PyTorch eager", "onnxruntime", "TVM untuned", "TVM tuned",
                "trials run", "layers", "tuning min"):  # fmt: skip
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in rows:
        ort = row["onnxruntime_ms"]

        def cell(key: str, ort: float = ort, row: dict = row) -> str:
            return f"{row[key]:.2f} ({row[key] / ort:.1f}x)" if key in row else "-"

        table.add_row(
            row["model"], cell("pytorch_eager_ms"), f"{ort:.2f} (1.0x)", cell("tvm_untuned_ms"),
            cell("tvm_tuned_ms"), str(row.get("trials_run", "-")), row.get("tasks", "-"),
            f"{row['tune_minutes']:.1f}" if "tune_minutes" in row else "-",
        )  # fmt: skip
    console.print(table)
    console.print(f"JSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
