"""archkit's analytic ``count`` (and ``cost_table``) against fvcore's ``FlopCountAnalysis``.

For MobileNetV2 1.0/224, MobileNetV1 1.0/224 and ShuffleNet 1x (g=3) this times, as medians
over repeats:

- ``count``: archkit's analytic totals from the spec (the lowering cache is cleared before each
  repeat, so every run lowers the spec from scratch);
- ``cost_table``: the per-layer table (``cost_table(spec).layers``), also uncached;
- ``fvcore (trace only)``: ``FlopCountAnalysis(model, x).by_operator()`` on an already built model;
- ``fvcore (build + trace)``: ``build_model(spec)`` then the same.

It asserts that archkit's MAdds equal fvcore's ``conv + linear`` exactly and its parameters equal
``sum(p.numel())``, prints one table with the speed-up ratios, and checks the issue's goal: at least
100x faster than fvcore (build + trace) for MobileNetV2.

Usage: ``python benchmarks/count_vs_fvcore.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from archkit.build import build_model, example_input
from archkit.cost import cost_table, count
from archkit.ops import lower
from archkit.spec import load_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"
NETWORKS = (
    ("MobileNetV2 1.0/224", "mobilenetv2.yaml"),
    ("MobileNetV1 1.0/224", "mobilenetv1.yaml"),
    ("ShuffleNet 1x g=3", "shufflenet_g3.yaml"),
)
GOAL_SPEEDUP = 100.0


def median_seconds(
    fn: Callable[[], object], repeats: int, setup: Callable[[], None] = lambda: None
) -> float:
    times = []
    for _ in range(repeats):
        setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fvcore_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return dict(analysis.by_operator())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="repeats per timing (median)")
    parser.add_argument(
        "--fvcore-repeats", type=int, default=3, help="repeats for the (slow) fvcore timings"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_grad_enabled(False)

    def clear() -> None:
        lower.cache_clear()

    rows = []
    for label, filename in NETWORKS:
        spec = load_spec(SPECS / filename)
        x = example_input(spec)
        model = build_model(spec).eval()

        costs = count(spec)
        by_op = fvcore_counts(model, x)
        fv_madds = by_op.get("conv", 0) + by_op.get("linear", 0)
        torch_params = sum(p.numel() for p in model.parameters())
        assert costs.madds == fv_madds, (label, costs.madds, fv_madds)
        assert costs.params == torch_params, (label, costs.params, torch_params)
        layers = cost_table(spec).layers
        assert int(layers["madds"].sum()) == fv_madds

        t_count = median_seconds(lambda spec=spec: count(spec), args.repeats, clear)
        t_profile = median_seconds(lambda spec=spec: cost_table(spec).layers, args.repeats, clear)
        t_trace = median_seconds(lambda m=model, x=x: fvcore_counts(m, x), args.fvcore_repeats)
        t_build_trace = median_seconds(
            lambda spec=spec, x=x: fvcore_counts(build_model(spec).eval(), x), args.fvcore_repeats
        )
        rows.append((label, costs.madds, costs.params, t_count, t_profile, t_trace, t_build_trace))

    header = (
        f"{'network':<21} {'MAdds':>12} {'params':>10} {'count ms':>9} {'profile ms':>10} "
        f"{'fvcore ms':>10} {'build+fv ms':>11} {'fv/count':>9} {'b+fv/count':>10} "
        f"{'b+fv/profile':>12}"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of "
        f"{args.repeats} (archkit) and {args.fvcore_repeats} (fvcore) runs; "
        "archkit timings with the lowering cache cleared"
    )
    print(header)
    print("-" * len(header))
    for label, madds, params, tc, tp, tt, tbt in rows:
        print(
            f"{label:<21} {madds:>12,} {params:>10,} {tc * 1e3:>9.2f} {tp * 1e3:>10.2f} "
            f"{tt * 1e3:>10.1f} {tbt * 1e3:>11.1f} {tt / tc:>8.0f}x {tbt / tc:>9.0f}x "
            f"{tbt / tp:>11.0f}x"
        )
    print("MAdds == fvcore conv + linear and params == sum(p.numel()) for every network: OK")

    v2 = rows[0]
    speedup = v2[6] / v2[3]
    verdict = "met" if speedup >= GOAL_SPEEDUP else "NOT met"
    print(
        f"goal: count >= {GOAL_SPEEDUP:.0f}x faster than fvcore (build + trace) on MobileNetV2: "
        f"{speedup:.0f}x, {verdict}"
    )
    return 0 if speedup >= GOAL_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
