"""Does a probe network timed in every group tell which 2-thread timings a slow spell spoiled?

``--networks`` random networks of the three MobileNet spaces (seed ``--seed``) are timed as
``archkit latency evaluate`` times held-out networks: groups of 4, in two passes over all of
them (the second in reverse order, minutes later), with the latency protocol's session options
and timing (2 threads, no spinning, median of 15 repeats of at least 25 ms) but with the
protocol's own probe switched off. Instead the probe (MobileNetV2 0.5/128, the protocol's
``PROBE``) is timed as a fifth member of every group, and the script reports:

- the share of networks whose two measurements agree within +-10% (the noise floor), over all
  networks and over those whose two groups' probes both ran within 3%, 5% and 10% of the
  probe's median;
- the same agreement after dividing each measurement by its group's probe time;
- every disagreeing network with its two probe times.

If the disagreements fall in groups with a slow probe, timing such a group again (what the
protocol does with ``probe_tolerance``) removes them.

Run (from the repo root, on an otherwise idle machine)::

    .venv/bin/python benchmarks/ort_probe.py --networks 40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def measure(networks: int, seed: int) -> list[dict[str, float]]:
    """Per network, its two measurements (``a``, ``b``), their groups' probe times and start
    times."""
    from latency_predictor import _candidates

    from archkit.device import load_device
    from archkit.device._latency._conditions import TimingProtocol
    from archkit.device._latency._runtimes import measure_group, probe_spec

    device = load_device("host")
    protocol = dataclasses.replace(TimingProtocol(), probe_tolerance=None)
    probe = probe_spec()
    candidates = _candidates(seed)
    specs = [next(candidates).spec for _ in range(networks)]
    rows: list[dict[str, float]] = [{} for _ in specs]
    size = protocol.interleave
    for tag, order in (("a", list(range(networks))), ("b", list(range(networks))[::-1])):
        for start in range(0, networks, size):
            chosen = order[start:start + size]
            began = time.time()
            probe_result, *results = measure_group([probe, *(specs[i] for i in chosen)], device,
                                                   "onnxruntime", protocol, kernels=False)
            for i, result in zip(chosen, results, strict=True):
                rows[i].update({tag: result.e2e_ms, f"{tag}_probe": probe_result.e2e_ms,
                                f"{tag}_time": began})
            print(f"pass {tag} group {start // size}: probe {probe_result.e2e_ms:.3f} ms, "
                  f"networks {[round(r.e2e_ms, 3) for r in results]}", flush=True)
    return rows


def report(rows: list[dict[str, float]]) -> None:
    probes = [r["a_probe"] for r in rows] + [r["b_probe"] for r in rows]
    typical = statistics.median(probes)

    def agree(r: dict[str, float], a: float, b: float) -> bool:
        return abs(b - a) / a <= 0.10

    def share(chosen: list[dict[str, float]], normalized: bool = False) -> str:
        ok = sum(agree(r, r["a"] / r["a_probe"], r["b"] / r["b_probe"]) if normalized
                 else agree(r, r["a"], r["b"]) for r in chosen)
        return f"{ok}/{len(chosen)} ({ok / max(1, len(chosen)):.1%})"

    print(f"\nprobe: median {typical:.3f} ms, range {min(probes):.3f}-{max(probes):.3f} ms")
    print(f"two measurements within +-10%, all networks: {share(rows)}")
    for tolerance in (0.03, 0.05, 0.10):
        calm = [r for r in rows if all(abs(r[f"{t}_probe"] / typical - 1) <= tolerance
                                       for t in "ab")]
        print(f"  both groups' probes within {tolerance:.0%} of the median: {share(calm)}")
    print(f"  each measurement divided by its group's probe: {share(rows, normalized=True)}")
    print("\ndisagreeing networks (measurement ms, its group's probe ms):")
    for r in rows:
        if not agree(r, r["a"], r["b"]):
            print(f"  {r['a']:.3f} (probe {r['a_probe']:.3f})  vs  {r['b']:.3f} "
                  f"(probe {r['b_probe']:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=40)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--save", type=Path, help="write the measurements as JSON")
    ap.add_argument("--load", type=Path, help="report measurements saved with --save")
    args = ap.parse_args()
    rows = json.loads(args.load.read_text()) if args.load else measure(args.networks, args.seed)
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))
    report(rows)


if __name__ == "__main__":
    main()
