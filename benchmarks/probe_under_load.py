"""Does the probe slow down as much as the networks it watches when the other core is busy?

The timing protocol divides each network's time by its group's probe ratio (docs/latency.md,
measurement protocol), which assumes a slow spell slows every network of the group by the
probe's factor. This script makes spells on purpose and checks that. The measuring process is
pinned to core 0 and times, as ``host-1t`` does (onnxruntime, one thread, the protocol's
session options and :func:`_time_group`: median of ``repeats`` timings of at least
``min_repeat_ms``), the probe (MobileNetV2 0.5/128) and networks from 0.2 to 20 ms, once per
condition in every round, the conditions in a new random order each round:

- ``idle``: nothing else runs;
- ``spin``: a Python busy loop pinned to core 1 (the other core's ALUs; no memory traffic);
- ``l3``: core 1 copies 8 MiB arrays back and forth (the shared L3 thrashed, little DRAM);
- ``dram``: core 1 copies 128 MiB arrays (memory bandwidth, and the L3 flushed).

It prints, per network and condition, the slowdown against ``idle`` (median over rounds, and
the range), and what is left after dividing by the probe's slowdown in the same timing, which
is the error probe normalization leaves in a measurement taken during such a spell.

Run (from the repo root, on an otherwise idle machine; about two minutes)::

    .venv/bin/python benchmarks/probe_under_load.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (spec file, width, resolution) of the networks timed beside the probe, smallest first.
NETWORKS = (
    ("mobilenetv1", 0.25, 128),
    ("mobilenetv2", 0.35, 96),
    ("mobilenetv2", 0.75, 160),
    ("mobilenetv1", 0.75, 192),
    ("mobilenetv2", 1.0, 224),
    ("mobilenetv2", 1.4, 224),
    ("mobilenetv1", 1.0, 224),
)

#: Each condition's program for the other core (None: nothing runs).
HOGS = {
    "idle": None,
    "spin": "while True:\n    pass\n",
    "l3": (
        "import numpy as np\n"
        "a = np.ones(1 << 20); b = np.empty_like(a)\n"  # 8 MiB each
        "while True:\n    np.copyto(b, a); np.copyto(a, b)\n"
    ),
    "dram": (
        "import numpy as np\n"
        "a = np.ones(1 << 24); b = np.empty_like(a)\n"  # 128 MiB each
        "while True:\n    np.copyto(b, a); np.copyto(a, b)\n"
    ),
}


def _hog(code: str | None) -> subprocess.Popen | None:
    if code is None:
        return None
    pinned = f"import os\nos.sched_setaffinity(0, {{1}})\n{code}"
    process = subprocess.Popen([sys.executable, "-c", pinned])
    time.sleep(1.0)  # started, its arrays allocated and touched
    return process


def measure(rounds: int, seed: int) -> list[dict]:
    from archkit.device._latency._conditions import TimingProtocol
    from archkit.device._latency._runtimes import _prepare_onnxruntime, _time_group, probe_spec
    from archkit.spec import apply_overrides, load_spec

    os.sched_setaffinity(0, {0})
    protocol = TimingProtocol()
    specs = [probe_spec()] + [
        apply_overrides(load_spec(ROOT / "specs" / f"{name}.yaml"), width=w, resolution=r)
        for name, w, r in NETWORKS
    ]
    names = ["probe"] + [f"{name} {w}/{r}" for name, w, r in NETWORKS]
    order = random.Random(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="archkit-probe-load-") as tmp:
        prepared = []
        for i, spec in enumerate(specs):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            prepared.append(_prepare_onnxruntime(spec, 1, protocol, False, folder))
        for r in range(rounds):
            conditions = list(HOGS)
            order.shuffle(conditions)
            for condition in conditions:
                hog = _hog(HOGS[condition])
                try:
                    samples = _time_group(prepared, protocol)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                ms = {n: statistics.median(s) for n, s in zip(names, samples, strict=True)}
                rows.append({"round": r, "condition": condition, "ms": ms})
                print(
                    f"round {r} {condition:5s} probe {ms['probe']:.3f} ms, "
                    f"largest {ms[names[-1]]:.2f} ms",
                    flush=True,
                )
    return rows


def report(rows: list[dict]) -> None:
    names = list(rows[0]["ms"])
    conditions = [c for c in HOGS if c != "idle"]
    idle = {}
    for row in rows:
        if row["condition"] == "idle":
            idle[row["round"]] = row["ms"]
    print(
        "\nslowdown against idle in the same round, median (range) over rounds; "
        "after dividing by the probe's slowdown in the same timing\n"
    )
    header = (
        "| network | idle ms | "
        + " | ".join(f"{c}: slowdown | {c}: left after the probe" for c in conditions)
        + " |"
    )
    print(header)
    print("|---|---:|" + "---:|---:|" * len(conditions))
    for name in names:
        cells = []
        for condition in conditions:
            slow, left = [], []
            for row in rows:
                if row["condition"] != condition:
                    continue
                base = idle[row["round"]]
                s = row["ms"][name] / base[name]
                p = row["ms"]["probe"] / base["probe"]
                slow.append(s)
                left.append(s / p)
            cells.append(f"{statistics.median(slow):.2f} ({min(slow):.2f}-{max(slow):.2f})")
            cells.append(
                f"{statistics.median(left) - 1:+.1%} ({min(left) - 1:+.1%} to {max(left) - 1:+.1%})"
            )
        base_ms = statistics.median(r[name] for r in idle.values())
        print(f"| {name} | {base_ms:.3f} | " + " | ".join(cells) + " |")
    spread = [
        max(r[n] for r in idle.values()) / min(r[n] for r in idle.values()) - 1 for n in names
    ]
    print(
        f"\nidle rounds against each other (the measurement's own spread): "
        f"{min(spread):.1%} to {max(spread):.1%} between the fastest and slowest round"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, help="write the measurements as JSON")
    ap.add_argument("--load", type=Path, help="report measurements saved with --save")
    args = ap.parse_args(argv)
    if os.cpu_count() is None or os.cpu_count() < 2:
        ap.error("needs two cores: one measures, the other runs the load")
    rows = json.loads(args.load.read_text()) if args.load else measure(args.rounds, args.seed)
    if args.save:
        args.save.write_text(json.dumps(rows, indent=1))
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
