"""Where a cold latency prediction of MobileNetV2 1.0/224 spends its time, and (``--compare``)
the prediction path against stop 25's, side by side in one process.

Parts, over ``--runs`` runs with every cache of the model emptied before each (the spec lowered
and counted beforehand, as a search's candidates are: it counts each candidate's MAdds before
it asks for its latency): the whole ``LatencyModel.predict``; the kernel rows of all its blocks
(``block_rows``); their float array; the regressors on them (``_Regressors.predict_us``); and,
apart, lowering a spec never lowered. What is left of ``predict`` after rows, array and
regressors is walking, keying and summing the blocks. Medians and 10th percentiles in
microseconds; the garbage collector off while timing, as ``timeit`` does.

``--compare`` times five ways of predicting, taking turns call by call (the machine's drift
falls on all of them alike), cold (``--runs`` MobileNetV2s each, at most 100, caches emptied
before every call) and over one stream of ``--stream`` random candidates of the three
MobileNet spaces (each candidate made and counted just before, then predicted by each way with
its own caches):

- ``stop 25``: the prediction path of stop 25 (commit a49dfb3): its ``block_rows``, read from
  git, which computed every node's costs itself; and its ``_fill`` and ``_predict_kernels``
  (frozen below): each new kernel's row looked up in a kernel cache, the unknown ones
  predicted, every block summed in Python;
- ``stop 25, costs kept``: the same with this checkout's ``block_rows``, which reads the costs
  the count left on the nodes: against ``stop 26``, what the kernel cache's removal alone does;
- ``stop 26``: stop 26's path (no kernel cache; the blocks summed by one ``reduceat``), its
  ``_kernel_ms`` frozen below (the rows' array made by ``np.fromiter``);
- ``now``: this checkout's path (the rows packed as int64 by ``struct``, then converted);
- ``now, not counted`` (cold only): the same on specs not counted first, so their nodes'
  costs are computed inside ``predict``.

Run (from the repo root, on a built host/onnxruntime model)::

    .venv/bin/python benchmarks/cold_prediction_parts.py --cache-dir runs/latency-cache
    .venv/bin/python benchmarks/cold_prediction_parts.py --cache-dir runs/latency-cache --compare
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from itertools import chain
from pathlib import Path
from struct import pack
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=300,
                    help="cold predictions (with --compare: per way; at most 100, so every "
                         "spec's lowering stays in lower's cache of 512)")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--stream", type=int, default=1000)
    args = ap.parse_args(argv)

    from archkit.device import load_latency_model

    model = load_latency_model("host", runtime="onnxruntime", cache_dir=args.cache_dir)
    gc.collect()
    gc.disable()
    try:
        if args.compare:
            return compare(model, min(args.runs, 100), args.stream)
        return parts(model, args.runs)
    finally:
        gc.enable()


def _mobilenetv2s(count_them: bool, runs: int, offset: int = 0) -> list[Any]:
    """``runs`` MobileNetV2 1.0/224 specs never seen (widths 1 + a few 1e-9), lowered when
    made and, with ``count_them``, counted."""
    from archkit.cost import count
    from archkit.spec import apply_overrides, load_spec

    base = load_spec(ROOT / "specs" / "mobilenetv2.yaml")
    specs = [apply_overrides(base, width=1.0 + (offset + i) * 1e-9, resolution=224)
             for i in range(runs)]
    if count_them:
        for spec in specs:
            count(spec)
    return specs


def parts(model: Any, runs: int) -> int:
    import numpy as np

    from archkit.device._latency._kernels import block_rows
    from archkit.ops import lower
    from archkit.spec import apply_overrides, load_spec

    specs = _mobilenetv2s(True, min(runs, 500))
    model.predict(specs[0])  # the regressors built once, as any process does
    kind_ids = model._forest.index
    blocks = lower(specs[0]).blocks
    times: dict[str, list[float]] = {k: [] for k in ("predict", "rows", "array", "regressors",
                                                     "lowering a new spec")}
    clock = time.perf_counter
    for spec in specs:
        model._forget()
        start = clock()
        model.predict(spec)
        times["predict"].append(clock() - start)
        start = clock()
        rows = [block_rows(block, kind_ids) for block in blocks]
        times["rows"].append(clock() - start)
        flat = list(chain.from_iterable(rows))
        start = clock()
        ints = np.frombuffer(pack(f"{len(flat) * len(flat[0])}q", *chain.from_iterable(flat)),
                             dtype=np.int64).reshape(len(flat), -1)
        x = ints.astype(np.float64)
        kinds = ints[:, -1]
        times["array"].append(clock() - start)
        start = clock()
        model._forest.predict_us(x, kinds)
        times["regressors"].append(clock() - start)
    base = load_spec(ROOT / "specs" / "mobilenetv2.yaml")
    for i in range(100):
        spec = apply_overrides(base, width=1.0 + (i + 1) * 1e-7, resolution=224)
        lower.cache_clear()
        start = clock()
        lower(spec)
        times["lowering a new spec"].append(clock() - start)
    nodes = sum(len(block.nodes) for block in blocks)
    print(f"MobileNetV2 1.0/224: {len(blocks)} blocks, {nodes} nodes, {len(set(flat))} "
          "distinct kernels")
    for name, values in times.items():
        print(f"{name:22s} median {statistics.median(values) * 1e6:7.1f} us, "
              f"p10 {np.percentile(values, 10) * 1e6:7.1f} us")
    return 0


#: The commit whose prediction path ``--compare`` times beside this checkout's.
STOP_25 = "a49dfb3"


def _stop25_block_rows() -> Any:
    """Stop 25's ``block_rows``, executed from its source in git (it computed each node's
    costs itself)."""
    import subprocess

    path = "archkit/device/_latency/_kernels.py"
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{STOP_25}:{path}"],
                            capture_output=True, text=True, check=True).stdout
    namespace: dict[str, Any] = {"__name__": "stop25_kernels"}
    exec(compile(source, f"{STOP_25}:{path}", "exec"), namespace)  # noqa: S102 - our own code
    return namespace["block_rows"]


def _stop25(model: Any, block_rows: Any) -> Any:
    """``model`` predicting the way stop 25 did: a frozen copy of its ``_fill`` and
    ``_predict_kernels`` (the kernel cache they kept), with ``block_rows``."""
    import numpy as np

    from archkit.device._latency._model import LatencyModel

    class Stop25(LatencyModel):
        def _fill(self, new_blocks):
            kind_ids = self._forest.index
            listed = [block_rows(block, kind_ids) for block, _, _ in new_blocks]
            flat = list(chain.from_iterable(listed))
            times = list(map(self._kernels.get, flat))
            if None in times:
                at = [i for i, t in enumerate(times) if t is None]
                for i, t in zip(at, self._predict_kernels([flat[i] for i in at]), strict=True):
                    times[i] = t
            blocks, by_shape = self._blocks, self._blocks_by_shape
            parts = []
            end = 0
            for (block, key, shape_key), rows in zip(new_blocks, listed, strict=True):
                start, end = end, end + len(rows)
                s = block.out_shape
                part = (sum(times[start:end]), (s.channels, s.height, s.width))
                blocks[key] = part
                if shape_key is not None:
                    by_shape[shape_key] = part
                parts.append(part)
            return parts

        def _predict_kernels(self, new):
            forest = self._forest
            x = np.fromiter(chain.from_iterable(new), dtype=np.float64,
                            count=len(new) * len(new[0])).reshape(len(new), -1)
            kinds = x[:, -1].astype(np.intp)
            kernel_us = forest.predict_us(x, kinds)
            scale = self._kind_scale[kinds]
            if self._size_edges_us:
                scale = scale * self._size_scale[np.searchsorted(self._size_edges, kernel_us)]
            times = (scale * kernel_us / 1e3 + self._per_kernel_ms).tolist()
            self._kernels.update(zip(new, times, strict=True))
            return times

        def _forget(self):
            super()._forget()
            self._kernels.clear()

    old = Stop25.from_json(model.to_json())
    old._kernels = {}
    return old


def _stop26(model: Any) -> Any:
    """``model`` predicting the way stop 26 did: a frozen copy of its ``_kernel_ms``, which
    made the rows' float array with ``np.fromiter`` (now: packed as int64 by ``struct``)."""
    import numpy as np

    from archkit.device._latency._model import LatencyModel

    class Stop26(LatencyModel):
        def _kernel_ms(self, rows):
            if not rows:
                return np.zeros(0)
            x = np.fromiter(chain.from_iterable(rows), dtype=np.float64,
                            count=len(rows) * len(rows[0])).reshape(len(rows), -1)
            kinds = x[:, -1].astype(np.intp)
            kernel_us = self._forest.predict_us(x, kinds)
            scale = self._kind_scale_ms[kinds]
            if self._size_edges_us:
                scale = scale * self._size_scale[np.searchsorted(self._size_edges, kernel_us)]
            return scale * kernel_us + self._per_kernel_ms

    return Stop26.from_json(model.to_json())


def compare(model: Any, runs: int, stream: int) -> int:
    import numpy as np

    from archkit.cost import count
    from archkit.device._latency._kernels import block_rows
    from archkit.device._latency._model import LatencyModel

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from latency_predictor import _candidates

    ways = {"stop 25": _stop25(model, _stop25_block_rows()),
            "stop 25, costs kept": _stop25(model, block_rows),
            "stop 26": _stop26(model),
            "now": LatencyModel.from_json(model.to_json()),
            "now, not counted": LatencyModel.from_json(model.to_json())}
    names = list(ways)
    specs = {name: _mobilenetv2s(name != "now, not counted", runs, offset=j * runs)
             for j, name in enumerate(names)}

    def predict(name: str, spec: Any) -> tuple[float, float]:
        start = time.perf_counter()
        value = ways[name].predict(spec)
        return time.perf_counter() - start, value

    for name in names:
        predict(name, specs[name][0])
    cold: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            ways[name]._forget()
            cold[name].append(predict(name, specs[name][i])[0])
    for way in ways.values():
        way._forget()
    streaming = names[:-1]  # (a stream's specs are counted once: the last way is cold only)
    streamed: dict[str, list[float]] = {name: [] for name in streaming}
    worst = 0.0
    candidates = _candidates(7)
    for i in range(stream):
        candidate = next(candidates).spec
        count(candidate)
        values = {}
        turn = i % len(streaming)
        for name in streaming[turn:] + streaming[:turn]:
            took, values[name] = predict(name, candidate)
            streamed[name].append(took)
        worst = max(worst, *(abs(v - values["stop 25"]) / values["stop 25"]
                             for v in values.values()))
    us = 1e6
    base, base26 = (statistics.median(cold[name]) for name in ("stop 25", "stop 26"))
    print(f"cold MobileNetV2 1.0/224, {runs} calls per way, taking turns (us):")
    for name in names:
        median = statistics.median(cold[name])
        print(f"  {name:20s} median {median * us:7.1f}, "
              f"p10 {np.percentile(cold[name], 10) * us:7.1f}, "
              f"ratio to stop 25 {median / base:.3f}, to stop 26 {median / base26:.3f}")
    print(f"stream of {stream} random candidates, each counted first, taking turns (us):")
    for name in streaming:
        values = streamed[name]
        median = statistics.median(values)
        print(f"  {name:20s} median {median * us:7.1f}, "
              f"mean {statistics.mean(values) * us:7.1f}, "
              f"last 100 mean {statistics.mean(values[-100:]) * us:7.1f}, ratio of medians "
              f"to stop 25 {median / statistics.median(streamed['stop 25']):.3f}, "
              f"to stop 26 {median / statistics.median(streamed['stop 26']):.3f}")
    print(f"largest relative difference of the ways' predictions: {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
