"""The latency model: per-kind kernel regressors, summed, and a network correction.

Prediction for a network:

    latency_ms = offset_ms + sum over kernels k of (scale[kind(k)] * kernel_ms(k) + per_kernel_ms)

``kernel_ms`` is, per kernel kind, a linear baseline on MAdds and bytes moved times a
gradient-boosted tree correction (xgboost; nn-Meter uses random forests) over the kernel's shape
features, trained on per-kernel times of whole-network runs. The baseline alone extrapolates
like a roofline; trees alone cannot extrapolate at all (on a synthetic device whose kernel
time is linear in MAdds, trees alone were 4.4% off on MobileNetV2 1.0/224 at the edge of the
training range; the hybrid is exact to rounding).
``scale``, ``per_kernel_ms`` and ``offset_ms`` are fitted on end-to-end times (with kernel
predictions made out of fold, so the correction sees the regressors' real errors): they learn
what a plain sum misses (time between kernels, the runtime's per-run overhead, profiling's
own cost) instead of assuming it is zero. Adapting to a new device keeps the regressors and
refits only the correction on a few end-to-end measurements (HELP's idea, with the old device's
kernel predictions as the device description).

Stored as JSON: conditions, protocol, the correction, per kind the feature ranges seen and
xgboost's own JSON model. No pickle: a file written by one xgboost loads in the next.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from archkit.device._latency._conditions import Conditions, TimingProtocol
from archkit.device._latency._errors import LatencyModelError
from archkit.device._latency._kernels import FEATURES, block_kernels

__all__ = ["FORMAT", "LatencyModel", "Prediction", "fit_model"]

FORMAT = "archkit-latency-model"
FORMAT_VERSION = 2

#: Features whose training range is checked (a kernel outside it is an extrapolation).
_RANGE_FEATURES = ("in_channels", "out_channels", "kernel", "stride", "in_height", "madds")
#: Kinds with fewer training kernels than this are predicted by their linear baseline alone.
_MIN_SAMPLES = 20
_XGB_PARAMS = {
    "max_depth": 6,
    "eta": 0.08,
    "subsample": 0.9,
    "min_child_weight": 2,
    "objective": "reg:squarederror",
    "nthread": 1,
    "seed": 0,
}
_XGB_ROUNDS = 400


@dataclass(frozen=True)
class Prediction:
    """A prediction with its parts.

    Attributes:
        latency_ms: The predicted end-to-end latency.
        blocks_ms: Per block (one repeat of one spec row), its share (kernels, corrected).
        offset_ms: The per-run overhead not owned by any block.
        extrapolations: Kernels outside the ranges the model was trained on.
    """

    latency_ms: float
    blocks_ms: tuple[float, ...]
    offset_ms: float
    extrapolations: tuple[str, ...] = ()


#: Features of the per-kind linear baseline (work and memory traffic), plus a constant.
_LINEAR = ("madds", "in_bytes", "out_bytes", "weight_bytes")
_LINEAR_INDEX = [FEATURES.index(name) for name in _LINEAR]


def _baseline(x: Any, linear: Any) -> Any:
    """The linear baseline in us: non-negative weights on work and traffic, plus a constant."""
    return x[:, _LINEAR_INDEX] @ linear[:-1] + linear[-1]


@dataclass
class _Kind:
    """One kernel kind's regressor: a linear baseline on MAdds and bytes moved (a roofline
    that extrapolates sensibly to wider or larger kernels than measured), times a tree
    ensemble's correction (xgboost on log((time + 1) / (baseline + 1))) that learns what the
    line misses: cache effects, vectorisation widths, thread splits."""

    samples: int
    ranges: dict[str, tuple[float, float]]
    linear: tuple[float, ...]
    booster: Any = None  # xgboost.Booster, or None: the baseline alone
    booster_json: Any = None

    def predict_us(self, rows: list[tuple[float, ...]]) -> list[float]:
        import numpy as np

        x = np.asarray(rows, dtype=np.float64)
        base = _baseline(x, np.asarray(self.linear))
        if self.booster is None:
            return [max(0.0, float(v)) for v in base]
        log_ratio = self.booster.inplace_predict(x)
        return [max(0.0, (float(b) + 1.0) * math.exp(float(r)) - 1.0)
                for b, r in zip(base, log_ratio, strict=True)]


def _load_booster(obj: Any) -> Any:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(obj).encode()))
    booster.set_param({"nthread": 1})
    return booster


def _fit_linear(x: Any, y: Any) -> Any:
    """Non-negative weights, relative error (each row divided by its time + 1 us)."""
    import numpy as np
    from scipy.optimize import nnls

    design = np.column_stack([x[:, _LINEAR_INDEX], np.ones(len(x))])
    scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
    w = 1.0 / (y + 1.0)
    coef, _ = nnls(design / scale * w[:, None], y * w)
    return coef / scale


def _train_kind(rows: list[tuple[float, ...]], targets_us: list[float]) -> _Kind:
    import numpy as np

    x = np.asarray(rows, dtype=np.float64)
    y = np.maximum(np.asarray(targets_us, dtype=np.float64), 0.0)
    ranges = {
        name: (float(x[:, FEATURES.index(name)].min()), float(x[:, FEATURES.index(name)].max()))
        for name in _RANGE_FEATURES
    }
    linear = _fit_linear(x, y)
    if len(rows) < _MIN_SAMPLES:
        return _Kind(len(rows), ranges, tuple(float(v) for v in linear))
    import xgboost as xgb

    # Log ratio: a kernel's error counts relative to its size, so a 20 us kernel is fitted as
    # carefully as a 2 ms one.
    base = np.maximum(_baseline(x, linear), 0.0)
    target = np.log((y + 1.0) / (base + 1.0))
    booster = xgb.train(_XGB_PARAMS, xgb.DMatrix(x, label=target), _XGB_ROUNDS)
    return _Kind(len(rows), ranges, tuple(float(v) for v in linear), booster=booster)


def _kernel_table(records: list[dict[str, Any]]) -> dict[str, tuple[list, list, list]]:
    """Per kind: (feature rows, measured us, network index) over every profiled record."""
    table: dict[str, tuple[list, list, list]] = {}
    for index, record in enumerate(records):
        times = record["kernels_us"]
        for block, node, kind, features in record["kernels"]:
            rows, ys, nets = table.setdefault(kind, ([], [], []))
            rows.append(tuple(features))
            ys.append(times.get(f"{block}:{node}", 0.0))
            nets.append(index)
    return table


def _network_sums(records: list[dict[str, Any]], kinds: list[str],
                  predictions: dict[str, dict[int, list[float]]]) -> tuple[Any, Any]:
    """Per network: predicted kernel ms summed per kind (n x K), and its kernel count (n)."""
    import numpy as np

    sums = np.zeros((len(records), len(kinds)))
    counts = np.zeros(len(records))
    for i, record in enumerate(records):
        counts[i] = len(record["kernels"])
        for j, kind in enumerate(kinds):
            sums[i, j] = sum(predictions.get(kind, {}).get(i, [])) / 1e3
    return sums, counts


def _fit_correction(sums: Any, counts: Any, y_ms: Any, kinds: list[str],
                    prior: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit offset, per-kernel time and per-kind scales on end-to-end times (relative error).

    First one scale for all kinds (3 parameters, or 2 when adapting: the per-kernel time
    scales with the kernels); then per-kind scales, pulled toward that one scale by a ridge
    penalty whose strength is chosen by leave-one-out (or 10-fold) cross-validation.
    """
    import numpy as np

    y = np.asarray(y_ms, dtype=np.float64)
    n, k = sums.shape
    total = sums.sum(axis=1)
    base_cols = np.column_stack([total, counts, np.ones(n)])
    w = 1.0 / y
    if prior is not None:
        # Adapting: keep the old per-kernel time in the kernels' units (scaled with them).
        old_c = prior["per_kernel_ms"]
        base_cols = np.column_stack([total + old_c * counts, np.ones(n)])
    theta0, *_ = np.linalg.lstsq(base_cols * w[:, None], y * w, rcond=None)
    if prior is not None:
        scale0, offset0 = float(theta0[0]), float(theta0[1])
        per_kernel0 = old_c * scale0
    else:
        scale0, per_kernel0, offset0 = (float(v) for v in theta0)
    scale0 = max(scale0, 1e-3)

    # Then every parameter at once, per-kind scales (and the per-kernel time) pulled toward
    # the one-scale fit: theta = theta0 + delta.
    design = np.column_stack([sums, counts, np.ones(n)]) * w[:, None]
    theta0_full = np.concatenate([np.full(k, scale0), [per_kernel0, offset0]])
    residual = y * w - design @ theta0_full
    penalised = np.concatenate([np.ones(k + 1), [0.0]])
    penalty_scale = np.maximum((design**2).mean(axis=0), 1e-12) * penalised + 1e-12

    def solve(lam: float, rows: Any) -> Any:
        a = design[rows].T @ design[rows] + lam * np.diag(penalty_scale) * rows.sum()
        return np.linalg.solve(a, design[rows].T @ residual[rows])

    folds = np.arange(n) % min(n, 10)
    errors = {}
    for lam in (0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1e4):
        err = 0.0
        for f in range(min(n, 10)):
            train, test = folds != f, folds == f
            if train.sum() < 3:
                continue
            delta = solve(lam, train)
            err += float(((residual[test] - design[test] @ delta) ** 2).sum())
        errors[lam] = err
    # The best penalty whose scales are all positive (a negative scale on a kind the networks
    # barely vary is a fit to noise); the strongest penalty always is (it is the one scale).
    used = sums.any(axis=0)
    best_lam = max(errors)
    for lam in sorted(errors, key=errors.get):
        theta = theta0_full + solve(lam, np.ones(n, dtype=bool))
        if (theta[:k][used] > 0).all():
            best_lam = lam
            break
    theta = theta0_full + solve(best_lam, np.ones(n, dtype=bool))
    scales = {kind: float(theta[j]) for j, kind in enumerate(kinds)}
    return {
        "offset_ms": float(theta[k + 1]),
        "per_kernel_ms": float(theta[k]),
        "scale": scales,
        "ridge": best_lam,
        "one_scale": scale0,
    }


class LatencyModel:
    """A fitted latency model for one (device, runtime); see the module docstring.

    Build one with :func:`fit_model` (or ``archkit latency build``), read one with
    :meth:`from_json`. :meth:`predict` caches each block's prediction by the block's
    configuration, so a search that revisits block shapes pays for each shape once.
    """

    def __init__(self, conditions: Conditions, protocol: TimingProtocol, kinds: dict[str, _Kind],
                 correction: dict[str, Any], built: dict[str, Any]) -> None:
        self.conditions = conditions
        self.protocol = protocol
        self.kinds = kinds
        self.correction = correction
        self.built = built
        self._scale = dict(correction["scale"])
        self._per_kernel_ms = float(correction["per_kernel_ms"])
        self._offset_ms = float(correction["offset_ms"])
        # block key -> (contribution ms, output shape (c, h, w), extrapolation notes)
        self._blocks: dict[tuple, tuple[float, tuple[int, int, int], tuple[str, ...]]] = {}
        # (kind, features) -> corrected ms: channel counts are rounded to multiples of 8 and
        # resolutions stepped, so a new block is mostly made of kernels seen before.
        self._kernels: dict[tuple[str, tuple[float, ...]], float] = {}

    # ------------------------------------------------------------------ prediction

    @property
    def device(self) -> str:
        return self.conditions.device

    @property
    def runtime(self) -> str:
        return self.conditions.runtime

    @staticmethod
    def _walkable(spec: Any) -> bool:
        # Plain chains: each block depends only on its row, the spec's channel rules and the
        # shape it receives. Output-stride dilation, ``from:`` and heads go through lower().
        if spec.output_stride is not None:
            return False
        from archkit.ops import OPERATORS

        return all(r.from_feature is None and not OPERATORS[r.op].head for r in spec.rows)

    def predict(self, spec: Any) -> float:
        """Predicted end-to-end latency of ``spec`` in ms (no device is contacted).

        Raises:
            LatencyModelError: The network has a kernel kind the model never measured.
        """
        blocks = self._blocks
        if self._walkable(spec):
            consts = (spec.width, spec.divisor, spec.min_ratio, spec.num_classes)
            shape = (spec.in_channels, spec.resolution, spec.resolution)
            total = self._offset_ms
            for row in spec.rows:
                for repeat in range(row.repeats):
                    entry = blocks.get((consts, row, repeat == 0, shape))
                    if entry is None:
                        return self.explain(spec).latency_ms
                    total += entry[0]
                    shape = entry[1]
            return total
        return self.explain(spec).latency_ms

    def explain(self, spec: Any) -> Prediction:
        """The prediction with per-block parts and extrapolation notes (lowers the spec)."""
        from archkit.ops import lower

        network = lower(spec)
        consts = (spec.width, spec.divisor, spec.min_ratio, spec.num_classes)
        keys = []
        missing: dict[tuple, Any] = {}
        for block in network.blocks:
            s = block.in_shape
            key = (consts, block.row, block.repeat == 0, (s.channels, s.height, s.width))
            if not self._walkable(spec):
                key = (*key, spec.resolution, block.source, block.index, spec.output_stride)
            keys.append(key)
            if key not in self._blocks and key not in missing:
                missing[key] = block
        if missing:
            self._fill(missing)
        parts = [self._blocks[key] for key in keys]
        notes = tuple(dict.fromkeys(note for part in parts for note in part[2]))
        blocks_ms = tuple(part[0] for part in parts)
        return Prediction(self._offset_ms + sum(blocks_ms), blocks_ms, self._offset_ms, notes)

    def _fill(self, missing: dict[tuple, Any]) -> None:
        by_kind: dict[str, list[tuple[tuple, tuple[float, ...]]]] = {}
        notes: dict[tuple, list[str]] = {key: [] for key in missing}
        for key, block in missing.items():
            for name, kind, features in block_kernels(block):
                if kind not in self.kinds:
                    known = ", ".join(sorted(self.kinds))
                    raise LatencyModelError(
                        f"the {self.device}/{self.runtime} latency model never measured a "
                        f"{kind!r} kernel (row {block.row.index}, {block.row.op}, node {name}); "
                        f"it knows: {known}. Build it from a search space with such rows: "
                        f"archkit latency build {self.device} --runtime {self.runtime} "
                        "--space FILE"
                    )
                by_kind.setdefault(kind, []).append((key, features))
                ranges = self.kinds[kind].ranges
                for feature, (lo, hi) in ranges.items():
                    value = features[FEATURES.index(feature)]
                    if value < lo or value > hi:
                        notes[key].append(
                            f"row {block.row.index} ({block.row.op}) {name}: {kind} {feature} "
                            f"{value:g} outside the measured {lo:g}..{hi:g}"
                        )
        kernels = self._kernels
        for kind, items in by_kind.items():
            new = list(dict.fromkeys(f for _, f in items if (kind, f) not in kernels))
            if new:
                scale = self._scale.get(kind, self.correction.get("one_scale", 1.0))
                for features, us in zip(new, self.kinds[kind].predict_us(new), strict=True):
                    kernels[(kind, features)] = scale * us / 1e3 + self._per_kernel_ms
        contribution = dict.fromkeys(missing, 0.0)
        for kind, items in by_kind.items():
            for key, features in items:
                contribution[key] += kernels[(kind, features)]
        for key, block in missing.items():
            s = block.out_shape
            self._blocks[key] = (contribution[key], (s.channels, s.height, s.width),
                                 tuple(notes[key]))

    # ------------------------------------------------------------------ adapting

    def adapted(self, records: list[dict[str, Any]], conditions: Conditions,
                built: dict[str, Any]) -> LatencyModel:
        """A model for another device: these kernel regressors, a correction refitted on
        ``records`` (end-to-end times measured on the new device)."""
        import numpy as np

        kinds = sorted(self.kinds)
        sums = np.zeros((len(records), len(kinds)))
        counts = np.zeros(len(records))
        for i, record in enumerate(records):
            counts[i] = len(record["kernels"])
            for _block, _node, kind, features in record["kernels"]:
                if kind not in self.kinds:
                    raise LatencyModelError(f"{kind!r} kernels are unknown to the model")
                sums[i, kinds.index(kind)] += self.kinds[kind].predict_us([features])[0] / 1e3
        y = np.asarray([r["e2e_ms"] for r in records])
        correction = _fit_correction(sums, counts, y, kinds, prior=self.correction)
        return LatencyModel(conditions, self.protocol, self.kinds, correction, built)

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        kinds = {}
        for name, kind in self.kinds.items():
            entry: dict[str, Any] = {
                "samples": kind.samples,
                "ranges": {k: list(v) for k, v in kind.ranges.items()},
                "linear": {"features": list(_LINEAR), "weights_us": list(kind.linear[:-1]),
                           "constant_us": kind.linear[-1]},
            }
            if kind.booster is not None:
                entry["xgboost"] = kind.booster_json or json.loads(kind.booster.save_raw("json"))
                entry["target"] = "log((us + 1) / (linear_us + 1))"
            kinds[name] = entry
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "device": self.device,
            "runtime": self.runtime,
            "conditions": self.conditions.to_dict(),
            "protocol": self.protocol.to_dict(),
            "built": self.built,
            "features": list(FEATURES),
            "correction": self.correction,
            "kinds": kinds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "<model>") -> LatencyModel:
        """Read :meth:`to_json`'s form.

        Raises:
            LatencyModelError: Not a latency model, another format version, other features.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyModelError(f"{source}: not an archkit latency model")
        if data.get("format_version") != FORMAT_VERSION or data.get("features") != list(FEATURES):
            raise LatencyModelError(
                f"{source}: written by another archkit (format {data.get('format_version')}, "
                f"features {data.get('features')}); rebuild it with archkit latency build "
                f"{data.get('device')} --runtime {data.get('runtime')}"
            )
        kinds = {}
        for name, entry in data["kinds"].items():
            ranges = {k: (float(v[0]), float(v[1])) for k, v in entry["ranges"].items()}
            linear = (*entry["linear"]["weights_us"], entry["linear"]["constant_us"])
            booster = _load_booster(entry["xgboost"]) if "xgboost" in entry else None
            kinds[name] = _Kind(entry["samples"], ranges, tuple(float(v) for v in linear),
                                booster=booster, booster_json=entry.get("xgboost"))
        return cls(Conditions.from_dict(data["conditions"]),
                   TimingProtocol.from_dict(data["protocol"]), kinds, data["correction"],
                   data.get("built", {}))


def fit_model(records: list[dict[str, Any]], conditions: Conditions, protocol: TimingProtocol,
              built: dict[str, Any], folds: int = 5) -> tuple[LatencyModel, dict[str, Any]]:
    """Fit kernel regressors on per-kernel times and the correction on end-to-end times.

    Args:
        records: Measured networks (see :mod:`archkit.device._latency._store`); those with
            per-kernel times train the regressors, all of them the correction.
        conditions: What they were measured under.
        protocol: How.
        built: Build summary stored with the model.
        folds: Networks are split into this many folds; each fold's kernel predictions come
            from regressors trained without it (out of fold), for the correction.

    Returns:
        The model, and fit statistics (in-sample error of the whole model, out of fold).

    Raises:
        LatencyModelError: Too few networks with per-kernel times.
    """
    import numpy as np

    profiled = [r for r in records if r.get("kernels_us")]
    if len(profiled) < max(3, folds):
        raise LatencyModelError(
            f"{len(profiled)} measured networks with per-kernel times; a model needs at least "
            f"{max(3, folds)}: run archkit latency build longer (it resumes)"
        )
    table = _kernel_table(profiled)
    kinds = sorted(table)
    out_of_fold: dict[str, dict[int, list[float]]] = {kind: {} for kind in kinds}
    fold_of = np.arange(len(profiled)) % folds
    for f in range(folds):
        for kind in kinds:
            rows, ys, nets = table[kind]
            train = [i for i, n in enumerate(nets) if fold_of[n] != f]
            test = [i for i, n in enumerate(nets) if fold_of[n] == f]
            if not test:
                continue
            if not train:
                predicted = [0.0] * len(test)
            else:
                model = _train_kind([rows[i] for i in train], [ys[i] for i in train])
                predicted = model.predict_us([rows[i] for i in test])
            for i, p in zip(test, predicted, strict=True):
                out_of_fold[kind].setdefault(nets[i], []).append(p)
    sums, counts = _network_sums(profiled, kinds, out_of_fold)
    y = np.asarray([r["e2e_ms"] for r in profiled])
    correction = _fit_correction(sums, counts, y, kinds)
    fitted = {kind: _train_kind(table[kind][0], table[kind][1]) for kind in kinds}
    model = LatencyModel(conditions, protocol, fitted, correction, built)

    scales = np.asarray([correction["scale"][k] for k in kinds])
    oof_pred = correction["offset_ms"] + correction["per_kernel_ms"] * counts + sums @ scales
    rel = np.abs(oof_pred - y) / y
    stats = {
        "networks": len(profiled),
        "kernels": int(sum(len(t[0]) for t in table.values())),
        "kinds": {kind: len(table[kind][0]) for kind in kinds},
        "out_of_fold_within_10pct": float((rel <= 0.10).mean()),
        "out_of_fold_within_5pct": float((rel <= 0.05).mean()),
        "out_of_fold_mean_error": float(rel.mean()),
        "out_of_fold_worst_error": float(rel.max()),
    }
    return model, stats
