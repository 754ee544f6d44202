"""Does pinning onnxruntime's threads to cores make its 2-thread timings repeat better here?

Six small MobileNets (0.4-2 ms, where the 2-thread latency model errs most) are each loaded
twice with the latency protocol's session options (``TimingProtocol``: 2 intra-op threads, no
spinning): plainly, and pinned (the calling thread to core 0 with ``os.sched_setaffinity``,
onnxruntime's second thread to core 1 with ``session.intra_op_thread_affinities``). Every round
times each network in both modes back to back (the order alternating), as the protocol times
one network: 10 warm-up runs, the median of 15 repeats of at least 25 ms. Repeatability is the
share of pairs of rounds whose medians agree within +-10%, per mode, and each network's
slowest / fastest round; the 1-minute load average is printed per round.

Run (from the repo root, on an otherwise idle machine)::

    .venv/bin/python benchmarks/ort_pinning.py --rounds 8
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NETWORKS = (
    ("mobilenetv2", 0.5, 96),
    ("mobilenetv2", 0.75, 128),
    ("mobilenetv1", 0.5, 128),
    ("mobilenetv2", 1.0, 160),
    ("mobilenetv1", 0.75, 96),
    ("mobilenetv2", 0.35, 128),
)


def _sessions(folder: Path) -> list[tuple[str, dict, object, object]]:
    import numpy as np
    import onnxruntime as ort

    from archkit.build import build_model, example_input, export_onnx
    from archkit.device._latency._conditions import TimingProtocol
    from archkit.device._latency._runtimes import _ort_options
    from archkit.spec import apply_overrides, load_spec

    protocol = TimingProtocol()
    out = []
    for i, (name, width, resolution) in enumerate(NETWORKS):
        spec = apply_overrides(load_spec(ROOT / "specs" / f"{name}.yaml"), width=width,
                               resolution=resolution)
        path = export_onnx(spec, folder / f"{i}.onnx", model=build_model(spec).eval())
        feed = {"input": example_input(spec).numpy().astype(np.float32)}
        plain = ort.InferenceSession(str(path), _ort_options(2, protocol),
                                     providers=["CPUExecutionProvider"])
        options = _ort_options(2, protocol)
        # One entry per thread onnxruntime creates (threads - 1), 1-based processor ids.
        options.add_session_config_entry("session.intra_op_thread_affinities", "2")
        pinned = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        out.append((f"{name} {width}/{resolution}", feed, plain, pinned))
    return out


def _median_ms(session, feed, cores: set[int]) -> float:
    from archkit.device._latency._conditions import TimingProtocol

    protocol = TimingProtocol()
    os.sched_setaffinity(0, cores)
    for _ in range(protocol.warmup_runs):
        session.run(None, feed)
    start = time.perf_counter()
    session.run(None, feed)
    number = max(1, int(protocol.min_repeat_ms / 1e3 / max(time.perf_counter() - start, 1e-6)))
    repeats = []
    for _ in range(protocol.repeats):
        start = time.perf_counter()
        for _ in range(number):
            session.run(None, feed)
        repeats.append((time.perf_counter() - start) / number)
    return statistics.median(repeats) * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two cores", file=sys.stderr)
        return 2
    every = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory() as folder:
        sessions = _sessions(Path(folder))
        times: dict[tuple[int, str], list[float]] = {}
        try:
            for r in range(args.rounds):
                for i, (_, feed, plain, pinned) in enumerate(sessions):
                    modes = [("plain", plain, every), ("pinned", pinned, {min(every)})]
                    if (r + i) % 2:
                        modes.reverse()
                    for mode, session, cores in modes:
                        times.setdefault((i, mode), []).append(_median_ms(session, feed, cores))
                print(f"round {r + 1}/{args.rounds}: load average {os.getloadavg()[0]:.2f}",
                      flush=True)
        finally:
            os.sched_setaffinity(0, every)
    for mode in ("plain", "pinned"):
        agree, spreads = [], []
        print(f"\n{mode}: per-round medians (ms)")
        for i, (name, *_rest) in enumerate(sessions):
            rounds = times[(i, mode)]
            spreads.append(max(rounds) / min(rounds))
            agree += [abs(a - b) / a <= 0.10 for a, b in itertools.combinations(rounds, 2)]
            print(f"  {name:22s} " + " ".join(f"{t:.3f}" for t in rounds))
        print(f"{mode}: pairs of rounds within +-10%: {sum(agree) / len(agree):.1%}; "
              f"slowest / fastest round per network: median {statistics.median(spreads):.2f}x, "
              f"worst {max(spreads):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
