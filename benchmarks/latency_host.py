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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=640,
                    help="MetaSchedule trials per network (0: skip tuning)")  # fmt: skip
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=30, help="timed repeats per measurement")
    ap.add_argument("--cache-dir", type=Path, default=None, help="tuning cache (default: fresh)")
    ap.add_argument("--output", type=Path, default=ROOT / "runs" / "latency_host.json")
    args = ap.parse_args(argv)

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
