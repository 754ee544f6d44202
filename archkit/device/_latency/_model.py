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
own cost) instead of assuming it is zero. Adapting to a new device (HELP's idea: a few networks
on the new device, the old device's model as the prior) boosts each old regressor on with the
kernel times of a few profiled networks and refits the correction; from end-to-end times alone
it keeps the regressors and refits the correction with scales by kernel size.

Stored as JSON: conditions, protocol, the correction, per kind the feature ranges seen and
xgboost's own JSON model. No pickle: a file written by one xgboost loads in the next.
Predicting reads the trees from that JSON (:mod:`~archkit.device._latency._trees`: onnxruntime's
tree ensemble where installed, a numpy walk otherwise) and evaluates every kind in one call: no
xgboost at prediction time, and a cold MobileNetV2 1.0/224 (no block or kernel seen) costs about
150 microseconds on this host (reports/latency_predictor.md), not one ~100 us xgboost call per
kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from itertools import accumulate, chain
from operator import attrgetter
from struct import pack
from typing import Any, NoReturn

from archkit.device._latency._conditions import (
    Conditions,
    TimingProtocol,
    at_probe_reference,
    probe_reference,
)
from archkit.device._latency._errors import LatencyModelError
from archkit.device._latency._kernels import FEATURES, block_counts, block_rows
from archkit.device._latency._trees import tree_sums
from archkit.ops import OPERATORS, lower
from archkit.spec import Row

__all__ = ["FORMAT", "LatencyModel", "Prediction", "calmer_measurements", "fit_model"]

FORMAT = "archkit-latency-model"
FORMAT_VERSION = 2

#: Features whose training range is checked (a kernel outside it is an extrapolation).
_RANGE_FEATURES = ("in_channels", "out_channels", "kernel", "stride", "in_height", "madds")
#: The checked features are among the first this many.
_CHECKED = max(FEATURES.index(name) for name in _RANGE_FEATURES) + 1
#: Kinds with fewer training kernels than this are predicted by their linear baseline alone.
_MIN_SAMPLES = 20
_XGB_PARAMS = {
    "max_depth": 6,
    "eta": 0.3,
    "subsample": 0.9,
    "min_child_weight": 2,
    "objective": "reg:squarederror",
    "nthread": 1,
    "seed": 0,
}
#: At most this many trees per kind; fewer when the validation kernels stop improving for
#: ``_XGB_EARLY_STOPPING`` rounds (0: always this many). A prediction's cost is in its trees:
#: on 356 host/onnxruntime networks (benchmarks/predictor_speed.py) 400 trees at eta 0.08 and
#: early-stopped ones at eta 0.3 (1 to 84 trees per kind) were equally accurate out of fold.
_XGB_ROUNDS = 200
_XGB_EARLY_STOPPING = 20


#: Early stopping validates on whole networks from this many networks up (fewer: every fifth
#: kernel).
_GROUPED_FROM = 50

#: Whether adapting from profiled networks fits per-kind scales (ridge toward one scale, as a
#: build does) or one scale for every kind. One: the carried-on trees already learned the new
#: device's kernels, and 20 networks barely tell per-kind scales apart (the stem, the pool and
#: the classifier run once in every network, as the offset does). On 5 draws of 20 networks
#: scored on 60 held-out networks measured in the same session (benchmarks/adapt_variants.py,
#: docs/latency.md), one scale was never worse and lifted the worst draw from 36.7% to 65.0%
#: within +-10% (its ridge had picked scales of 0.8 to 3.3).
_ADAPT_PER_KIND = False

#: Networks an adaptation needs at least: its correction fits one scale, a per-kernel time and
#: an offset to whole networks (fewer networks than parameters fit anything exactly).
ADAPT_MIN_NETWORKS = 3


def calmer_measurements(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per network (by fingerprint), in first-measured order: of a network measured
    more than once (an adaptation measures each of its networks twice, minutes apart), the
    measurement taken on the calmer machine: the one whose group's probe ran faster where
    both have a probe, else the faster end-to-end time (noise only ever adds time). Two
    measurements on different boards (a farm's passes) are not a calm and a busy moment but
    two boards, and a faster board's probe is faster too: the first is kept."""
    kept: dict[str, dict[str, Any]] = {}
    for record in records:
        fingerprint = record["fingerprint"]
        old = kept.get(fingerprint)
        if old is None:
            kept[fingerprint] = record
        elif record.get("server") != old.get("server"):
            continue
        elif record.get("probe_ms") and old.get("probe_ms"):
            if record["probe_ms"] < old["probe_ms"]:
                kept[fingerprint] = record
        elif record["e2e_ms"] < old["e2e_ms"]:
            kept[fingerprint] = record
    return list(kept.values())


def _validation_fifth(networks: Any) -> Any:
    """Which kernels early stopping validates on (the others train): those of every fifth
    network (in order of first appearance) where there are at least ``_GROUPED_FROM`` networks,
    every fifth kernel below.

    Whole networks, not every fifth kernel: networks share most kernel shapes, so a kernel
    held out alone has its twin in training, the validation error keeps falling, and the
    rounds are overfitted. On host/onnxruntime's 328 networks, validating on every fifth
    kernel chose 111 conv_1x1 trees and 30 conv_dw trees (94% of 100 held-out networks within
    +-10%, 96.0% out of fold); on every fifth network 29 and 12 (96%, 97.6%). With a few
    networks (an adaptation's 20) a fifth is 4 networks, too few to choose by: adapting
    host-1t/onnxruntime from 20 networks, grouped, gave 68.3% of 60 held-out networks within
    +-10%, by kernel 86.7%.
    """
    import numpy as np

    listed = np.asarray(networks).tolist()
    order = {n: i for i, n in enumerate(dict.fromkeys(listed))}
    if len(order) < _GROUPED_FROM:
        return np.arange(len(listed)) % 5 == 0
    return np.asarray([order[n] % 5 == 0 for n in listed], dtype=bool)


#: The fields of a spec row that its blocks' nodes depend on (with the block's first-repeat
#: flag, the shape it receives and the spec's channel rules), as one tuple: all but how often
#: it repeats, where it is and its feature-map name.
_ROW_CONFIG = attrgetter(*(f.name for f in fields(Row)
                           if f.name not in ("repeats", "index", "name")))


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
#: The same features as a slice (they are adjacent): a view of a row array, not a copy.
_LINEAR_COLUMNS = slice(_LINEAR_INDEX[0], _LINEAR_INDEX[-1] + 1)
if FEATURES[_LINEAR_COLUMNS] != _LINEAR:
    raise ImportError("the linear baseline's features must be adjacent in FEATURES")


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
    booster_json: Any = None  # xgboost's JSON model (save_raw("json")), or None: the line alone
    _forest: Any = field(default=None, init=False, repr=False, compare=False)

    def predict_us(self, rows: list[tuple[float, ...]]) -> list[float]:
        import numpy as np

        if self._forest is None:
            self._forest = _Regressors({"kind": self})
        x = np.zeros((len(rows), len(FEATURES) + 1))
        x[:, :-1] = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
        return self._forest.predict_us(x).tolist()


class _Regressors:
    """Every kind's regressor, evaluated for rows of all kinds at once.

    Rows are ``(n, features + 1)`` float64 arrays, the last column the row's kind (its index in
    :attr:`index`).
    """

    def __init__(self, kinds: dict[str, _Kind]) -> None:
        import numpy as np

        self.index = {name: i for i, name in enumerate(kinds)}
        self.linear = np.asarray([kind.linear for kind in kinds.values()], dtype=np.float64)
        self.trees = tree_sums([kind.booster_json for kind in kinds.values()], len(FEATURES))

    def predict_us(self, x: Any, kinds: Any = None) -> Any:
        """Kernel times in us of the rows ``x`` (``kinds``: their last column as indices)."""
        import numpy as np

        if kinds is None:
            kinds = x[:, -1].astype(np.intp)
        linear = self.linear[kinds]
        base = np.einsum("ij,ij->i", x[:, _LINEAR_COLUMNS], linear[:, :-1]) + linear[:, -1]
        # A kind without trees has margin 0: (base + 1) * 1 - 1 is its line (to rounding).
        return np.maximum((base + 1.0) * np.exp(self.trees.margin(x)) - 1.0, 0.0)


def _fit_linear(x: Any, y: Any) -> Any:
    """Non-negative weights, relative error (each row divided by its time + 1 us)."""
    import numpy as np
    from scipy.optimize import nnls

    design = np.column_stack([x[:, _LINEAR_INDEX], np.ones(len(x))])
    scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
    w = 1.0 / (y + 1.0)
    coef, _ = nnls(design / scale * w[:, None], y * w)
    return coef / scale


def _train_kind(rows: list[tuple[float, ...]], targets_us: list[float],
                networks: Any = None) -> _Kind:
    """A kind's regressor on its kernels' feature rows and times; ``networks`` (each kernel's
    network) groups early stopping's validation kernels by network (:func:`_validation_fifth`;
    ``None``: every fifth kernel)."""
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
    rounds = _XGB_ROUNDS
    if _XGB_EARLY_STOPPING:
        # Rounds chosen on a validation fifth of the kernels, then refitted on all of them.
        valid = (np.arange(len(x)) % 5 == 0 if networks is None
                 else _validation_fifth(networks))
        trial = xgb.train(_XGB_PARAMS, xgb.DMatrix(x[~valid], label=target[~valid]), rounds,
                          evals=[(xgb.DMatrix(x[valid], label=target[valid]), "valid")],
                          early_stopping_rounds=_XGB_EARLY_STOPPING, verbose_eval=False)
        rounds = trial.best_iteration + 1
    booster = xgb.train(_XGB_PARAMS, xgb.DMatrix(x, label=target), rounds)
    return _Kind(len(rows), ranges, tuple(float(v) for v in linear),
                 booster_json=json.loads(booster.save_raw("json")))


def _continue_kind(old: _Kind, rows: list[tuple[float, ...]], targets_us: list[float],
                   networks: Any = None) -> _Kind:
    """``old``'s regressor carried to another device: its trees boosted on with the new device's
    kernel times (xgboost starts from the old trees' margin and adds trees for what differs).

    The linear baseline stays the old device's: the new trees learn the ratio to it, as the old
    ones did. How many trees are added is chosen on a validation fifth of the kernels (none when
    they do not help); fewer than ``_MIN_SAMPLES`` kernels keep the old regressor as it is.
    """
    if len(rows) < _MIN_SAMPLES:
        return old
    import numpy as np
    import xgboost as xgb

    x = np.asarray(rows, dtype=np.float64)
    # The measured ranges now cover both devices' kernels.
    ranges = {}
    for name in _RANGE_FEATURES:
        column = x[:, FEATURES.index(name)]
        low, high = old.ranges[name]
        ranges[name] = (min(low, float(column.min())), max(high, float(column.max())))

    y = np.maximum(np.asarray(targets_us, dtype=np.float64), 0.0)
    base = np.maximum(_baseline(x, np.asarray(old.linear)), 0.0)
    target = np.log((y + 1.0) / (base + 1.0))

    def start() -> Any:
        if old.booster_json is None:
            return None
        booster = xgb.Booster()
        booster.load_model(bytearray(json.dumps(old.booster_json).encode()))
        return booster

    valid = np.arange(len(x)) % 5 == 0 if networks is None else _validation_fifth(networks)
    held_out = xgb.DMatrix(x[valid], label=target[valid])
    first = start()
    old_rounds = 0 if first is None else first.num_boosted_rounds()
    old_rmse = float(np.sqrt(np.mean(
        ((first.predict(held_out) if first is not None else 0.0) - target[valid]) ** 2)))
    trial = xgb.train(_XGB_PARAMS, xgb.DMatrix(x[~valid], label=target[~valid]), _XGB_ROUNDS,
                      evals=[(held_out, "valid")], early_stopping_rounds=_XGB_EARLY_STOPPING,
                      verbose_eval=False, xgb_model=first)
    rounds = trial.best_iteration + 1 - old_rounds
    if rounds <= 0 or trial.best_score >= old_rmse:
        return _Kind(old.samples + len(rows), ranges, old.linear, booster_json=old.booster_json)
    booster = xgb.train(_XGB_PARAMS, xgb.DMatrix(x, label=target), rounds, xgb_model=start())
    return _Kind(old.samples + len(rows), ranges, old.linear,
                 booster_json=json.loads(booster.save_raw("json")))


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


def _out_of_fold(table: dict[str, tuple[list, list, list]], networks: int, folds: int,
                 train: Any) -> dict[str, dict[int, list[float]]]:
    """Per kind, per network: its kernels' times predicted by a regressor trained without the
    network's fold (networks are dealt round-robin into ``folds``). ``train(kind, rows, us,
    networks)`` gives the regressor (rows may be empty), or None: those kernels are predicted
    0."""
    import numpy as np

    fold_of = np.arange(networks) % folds
    predicted: dict[str, dict[int, list[float]]] = {kind: {} for kind in table}
    for f in range(folds):
        for kind, (rows, ys, nets) in table.items():
            test = [i for i, n in enumerate(nets) if fold_of[n] == f]
            if not test:
                continue
            fitted = [i for i, n in enumerate(nets) if fold_of[n] != f]
            model = train(kind, [rows[i] for i in fitted], [ys[i] for i in fitted],
                          [nets[i] for i in fitted])
            times = ([0.0] * len(test) if model is None
                     else model.predict_us([rows[i] for i in test]))
            for i, p in zip(test, times, strict=True):
                predicted[kind].setdefault(nets[i], []).append(p)
    return predicted


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


#: The smallest scale a correction fit keeps (kernel sums never count negatively).
_MIN_SCALE = 1e-3


def _fit_correction(sums: Any, counts: Any, y_ms: Any, kinds: list[str],
                    prior: dict[str, Any] | None = None, per_kind: bool = True
                    ) -> dict[str, Any]:
    """Fit offset, per-kernel time and per-kind scales on end-to-end times (relative error).

    First one scale for all kinds (3 parameters, or 2 with a ``prior``: the old per-kernel
    time scales with the kernels); then (``per_kind``) per-kind scales, pulled toward that
    one scale by a ridge penalty whose strength is chosen by leave-one-out (or 10-fold)
    cross-validation. A scale the data push to zero or below is held at 1e-3 and the other
    parameters refitted with it.
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
    if scale0 < _MIN_SCALE:
        # Held, and the rest refitted with it (the unclamped fit's offset and per-kernel time
        # belong to its scale, not to this one).
        scale0 = _MIN_SCALE
        rest, *_ = np.linalg.lstsq(base_cols[:, 1:] * w[:, None],
                                   (y - scale0 * base_cols[:, 0]) * w, rcond=None)
        if prior is not None:
            per_kernel0, offset0 = old_c * scale0, float(rest[0])
        else:
            per_kernel0, offset0 = (float(v) for v in rest)
    if not per_kind:
        return {"offset_ms": offset0, "per_kernel_ms": per_kernel0,
                "scale": dict.fromkeys(kinds, scale0), "ridge": None, "one_scale": scale0}

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


#: Kernel-size bins an adapted correction chooses from (edges in us of the old device's
#: predicted kernel time; () is one scale for every kernel).
SIZE_EDGES_US: tuple[tuple[float, ...], ...] = (
    (), (10.0,), (20.0,), (50.0,), (100.0,), (10.0, 50.0), (20.0, 100.0), (10.0, 30.0, 100.0),
)


def _size_bins(edges: Any, kernel_us: Any) -> Any:
    """Each kernel's bin: 0 below the first edge, len(edges) above the last."""
    import numpy as np

    return np.searchsorted(np.asarray(edges, dtype=np.float64), kernel_us)


def _fit_size_correction(kernel_us: Any, of_record: Any, counts: Any, y_ms: Any,
                         kinds: list[str], prior: dict[str, Any]) -> dict[str, Any]:
    """An adapted correction whose scales follow kernel size instead of kind.

    Moving to another thread count (or core) changes a large kernel's time more than a small
    one's (a small kernel runs on one thread either way), across kinds. Each candidate in
    :data:`SIZE_EDGES_US` is fitted like the kind scales (:func:`_fit_correction`, bins for
    kinds) and scored by leave-one-out over the networks (10 folds above 20 networks); the
    fewest bins within 2% of the best score (or 0.1 points) are refitted on all of them.
    Measured on this host, host -> host-1t from 20 networks: see reports/latency_predictor.md.
    """
    import numpy as np

    n = len(y_ms)
    y = np.asarray(y_ms, dtype=np.float64)

    # Per candidate: each network's predicted kernel ms summed per bin (n x bins).
    binned = {}
    for edges in SIZE_EDGES_US:
        binned[edges] = np.zeros((n, len(edges) + 1))
        np.add.at(binned[edges], (of_record, _size_bins(edges, kernel_us)), kernel_us / 1e3)

    def sums_for(edges: tuple[float, ...], nets: Any) -> Any:
        return binned[edges][nets]

    def fit(edges: tuple[float, ...], nets: Any) -> dict[str, Any]:
        names = [str(b) for b in range(len(edges) + 1)]
        return _fit_correction(sums_for(edges, nets), counts[nets], y[nets], names, prior=prior)

    def predict(correction: dict[str, Any], edges: tuple[float, ...], nets: Any) -> Any:
        scale = np.asarray([correction["scale"][str(b)] for b in range(len(edges) + 1)])
        return (correction["offset_ms"] + correction["per_kernel_ms"] * counts[nets]
                + sums_for(edges, nets) @ scale)

    folds = np.arange(n) % (n if n <= 20 else 10)
    scores = {}
    for edges in SIZE_EDGES_US:
        errors = np.zeros(n)
        for fold in np.unique(folds):
            test, train = folds == fold, folds != fold
            if train.sum() < 3:
                continue
            errors[test] = np.abs(predict(fit(edges, train), edges, test) / y[test] - 1)
        scores[edges] = float(errors.mean())
    # The fewest bins within 2% (or 0.1 points of mean error) of the best score: more bins
    # must earn their parameters.
    least = min(scores.values())
    best = min((e for e in SIZE_EDGES_US if scores[e] <= least * 1.02 + 1e-3), key=len)
    everything = np.ones(n, dtype=bool)
    fitted = fit(best, everything)
    bin_scales = [fitted["scale"][str(b)] for b in range(len(best) + 1)]
    return {
        "offset_ms": fitted["offset_ms"],
        "per_kernel_ms": fitted["per_kernel_ms"],
        "scale": dict.fromkeys(kinds, 1.0),
        "ridge": fitted["ridge"],
        "one_scale": 1.0,
        "size_edges_us": list(best),
        "size_scale": bin_scales,
        "size_cv_error": {"|".join(map(str, e)) or "one": round(v, 5) for e, v in scores.items()},
    }


def _end_to_end(records: list[dict[str, Any]], protocol: TimingProtocol) -> tuple[Any, Any]:
    """The records' end-to-end times (ms) at one probe speed, and that speed.

    With ``probe_normalize`` each time as taken is scaled by the probe's reference time (the
    lower quartile of the probe's times over these records) over its group's probe time.
    A record's stored ``e2e_ms`` is divided by its probe's ratio to the baseline *at the time*,
    which moves as a build goes on (from its first few probe times to the quartile of
    hundreds); the reference is one number for the whole model, stored with it, and the
    evaluation and a search's check of its winners scale their measurements to it too.
    Records without a probe (TVM, RPC boards, files from before it) keep ``e2e_ms``.
    """
    import numpy as np

    reference = (probe_reference([r.get("probe_ms") for r in records])
                 if protocol.probe_normalize else None)
    times = []
    for r in records:
        scaled = at_probe_reference(r.get("e2e_raw_ms"), r.get("probe_ms"), reference)
        times.append(r["e2e_ms"] if scaled is None else scaled)
    return np.asarray(times, dtype=np.float64), reference


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
        # An adapted model's scales by kernel size (see _fit_size_correction); none: one bin.
        self._size_edges_us = tuple(correction.get("size_edges_us", ()))
        self._size_scale: Any = tuple(correction.get("size_scale", (1.0,)))
        # block key -> (contribution ms, output shape (c, h, w))
        self._blocks: dict[tuple, tuple[float, tuple[int, int, int]]] = {}
        # The same parts keyed by what a block's lowering reads from the spec (its output
        # channels after the width multiplier and rounding, the rounding rule) instead of the
        # width: random widths share most blocks' channels (about half the blocks of 1,000
        # random candidates of the three MobileNet spaces).
        self._blocks_by_shape: dict[tuple, tuple[float, tuple[int, int, int]]] = {}
        # Row -> a small int standing for it in block keys: a row is a dataclass of ~30 fields
        # whose hash is recomputed at every lookup, an int's is free. Rows that differ only in
        # what no block of theirs depends on (repeats, index, name) share one: a search over
        # per-stage repeats makes such rows all the time.
        self._row_ids: dict[Any, int] = {}
        self._row_configs: dict[tuple, int] = {}
        # The spec-wide values a block's nodes depend on (width, channel rounding, classes),
        # likewise a small int in block keys: hashed once per prediction, not once per block.
        self._consts_ids: dict[tuple, int] = {}
        self._forest_cache: _Regressors | None = None

    @property
    def _forest(self) -> _Regressors:
        """All kinds' regressors, with the kinds' scales and measured ranges (built on first
        use: fitting makes models it never predicts with)."""
        if self._forest_cache is None:
            import numpy as np

            forest = _Regressors(self.kinds)
            one_scale = self.correction.get("one_scale", 1.0)
            self._kind_scale = np.asarray([self._scale.get(k, one_scale) for k in forest.index])
            self._kind_scale_ms = self._kind_scale / 1e3  # (kernel times are in us)
            self._size_scale = np.asarray(self._size_scale, dtype=np.float64)
            self._size_edges = np.asarray(self._size_edges_us, dtype=np.float64)
            # Per kind, the measured range of each of the first _CHECKED features (unbounded
            # where a feature is not checked): the checked columns of a row array are a view.
            unbounded = (-np.inf, np.inf)
            ranges = [[self.kinds[k].ranges.get(f, unbounded) if f in _RANGE_FEATURES
                       else unbounded for f in FEATURES[:_CHECKED]] for k in forest.index]
            self._low, self._high = np.moveaxis(np.asarray(ranges, dtype=np.float64), 2, 0)
            self._forest_cache = forest
        return self._forest_cache

    # ------------------------------------------------------------------ prediction

    @property
    def device(self) -> str:
        return self.conditions.device

    @property
    def runtime(self) -> str:
        return self.conditions.runtime

    @property
    def probe_reference_ms(self) -> float | None:
        """The probe's time the model's latencies are expressed at (None: no probe)."""
        return self.correction.get("probe_reference_ms")

    def measured_ms(self, measured: Any) -> float:
        """A :class:`~archkit.device._latency._runtimes.Measured` network's time at the
        model's probe reference (its ``e2e_ms`` where either has no probe): what a prediction
        is compared with."""
        scaled = (at_probe_reference(measured.raw_ms, measured.probe_ms, self.probe_reference_ms)
                  if self.protocol.probe_normalize else None)
        return measured.e2e_ms if scaled is None else scaled

    @staticmethod
    def _walkable(spec: Any) -> bool:
        # Plain chains: each block depends only on its row, the spec's channel rules and the
        # shape it receives. Output-stride dilation, ``from:`` and heads go through lower().
        if spec.output_stride is not None:
            return False
        return all(r.from_feature is None and not OPERATORS[r.op].head for r in spec.rows)

    def predict(self, spec: Any) -> float:
        """Predicted end-to-end latency of ``spec`` in ms (no device is contacted).

        Raises:
            LatencyModelError: The network has a kernel kind the model never measured.
        """
        blocks, row_ids = self._blocks, self._row_ids
        walkable = self._walkable(spec)
        if walkable:
            consts = self._consts_ids.get(
                (spec.width, spec.divisor, spec.min_ratio, spec.num_classes))
            if consts is None:
                return self._offset_ms + sum(self._blocks_ms(spec, walkable))
            shape = (spec.in_channels, spec.resolution, spec.resolution)
            total = self._offset_ms
            for row in spec.rows:
                row_id = row_ids.get(row)
                if row_id is None:
                    return self._offset_ms + sum(self._blocks_ms(spec, walkable))
                for repeat in range(row.repeats):
                    entry = blocks.get((consts, row_id, repeat == 0, shape))
                    if entry is None:
                        return self._offset_ms + sum(self._blocks_ms(spec, walkable))
                    total += entry[0]
                    shape = entry[1]
            return total
        return self._offset_ms + sum(self._blocks_ms(spec, walkable))

    def explain(self, spec: Any) -> Prediction:
        """The prediction with per-block parts and extrapolation notes (lowers the spec)."""
        blocks_ms = self._blocks_ms(spec, self._walkable(spec))
        return Prediction(self._offset_ms + sum(blocks_ms), blocks_ms, self._offset_ms,
                          self._extrapolations(spec))

    def _extrapolations(self, spec: Any) -> tuple[str, ...]:
        """A note per kernel feature of ``spec`` outside the range the model measured for the
        kernel's kind (only :meth:`explain` checks: a search's :meth:`predict` does not pay for
        it)."""
        kind_ids = self._forest.index  # (building the ranges on first use)
        low, high = self._low.tolist(), self._high.tolist()
        notes = []
        for block in lower(spec).blocks:
            for name, kind, counts in block_counts(block):
                k = kind_ids[kind]
                notes += [f"row {block.row.index} ({block.row.op}) {name}: {kind} {FEATURES[j]} "
                          f"{value:g} outside the measured {low[k][j]:g}..{high[k][j]:g}"
                          for j, value in enumerate(counts[:_CHECKED])
                          if not low[k][j] <= value <= high[k][j]]
        return tuple(dict.fromkeys(notes))

    def _blocks_ms(self, spec: Any, walkable: bool) -> tuple[float, ...]:
        """Each block's part of the prediction, from the block caches or predicted."""
        network = lower(spec)
        consts = self._consts_ids.setdefault(
            (spec.width, spec.divisor, spec.min_ratio, spec.num_classes), len(self._consts_ids))
        rules = (spec.divisor, spec.min_ratio)
        blocks, by_shape, row_ids = self._blocks, self._blocks_by_shape, self._row_ids
        # Per block its part, or (an int) its position among the blocks this prediction
        # computes (repeats of a row often share one). A row is hashed once per row (its id
        # stands for it in the keys).
        parts: list[Any] = []
        missing: dict[tuple, int] = {}
        new_blocks: list[tuple[Any, tuple, tuple | None]] = []
        row = row_id = None
        for block in network.blocks:
            if block.row is not row:
                row = block.row
                row_id = row_ids.get(row)
                if row_id is None:
                    row_id = row_ids[row] = self._row_configs.setdefault(
                        _ROW_CONFIG(row), len(self._row_configs))
            s = block.in_shape
            key = (consts, row_id, block.repeat == 0, (s.channels, s.height, s.width))
            if not walkable:
                key = (*key, spec.resolution, block.source, block.index, spec.output_stride)
            part = blocks.get(key)
            if part is None:
                part = missing.get(key)
            if part is None:
                shape_key = None
                if walkable:
                    # Another width whose channel rounding gives this block the same channels
                    # (the block's nodes follow from its row, the shape it receives, its
                    # output channels and the rounding rule).
                    shape_key = (block.out_shape.channels, *key[1:], rules)
                    part = by_shape.get(shape_key)
                if part is None:
                    part = missing[key] = len(new_blocks)
                    new_blocks.append((block, key, shape_key))
                else:
                    blocks[key] = part
            parts.append(part)
        if new_blocks:
            filled = self._fill(new_blocks)
            parts = [filled[part] if part.__class__ is int else part for part in parts]
        return tuple(part[0] for part in parts)

    def _fill(self, new_blocks: list[tuple[Any, tuple, tuple | None]]) -> list[tuple]:
        """Predict blocks never seen, into the block caches; their parts, in order.

        Every new block's kernel rows (integer features and the kind's index) are predicted
        in one batch, and each block sums its own (one ``reduceat``). There is no kernel cache:
        hashing every new block's rows to look them up, and storing the new ones, cost more
        than predicting the known ones again in the same batch (without it a cold prediction
        and a stream of random candidates both took about 9% less, side by side:
        ``benchmarks/cold_prediction_parts.py --compare``, ``stop 25, costs kept`` against
        ``now``).
        """
        import numpy as np

        kind_ids = self._forest.index
        listed = []
        for block, _, _ in new_blocks:
            try:
                listed.append(block_rows(block, kind_ids))
            except KeyError:
                self._unknown_kind(block)
        lengths = list(map(len, listed))
        ends = list(accumulate(lengths))
        times = self._kernel_ms(list(chain.from_iterable(listed)))
        if 0 in lengths:  # (a block without nodes: reduceat would give it the next one's)
            sums = [float(times[end - n:end].sum()) for n, end in zip(lengths, ends, strict=True)]
        else:
            sums = np.add.reduceat(times, [end - n for n, end in zip(lengths, ends,
                                                                     strict=True)]).tolist()
        blocks, by_shape = self._blocks, self._blocks_by_shape
        parts = []
        for (block, key, shape_key), total in zip(new_blocks, sums, strict=True):
            s = block.out_shape
            part = (total, (s.channels, s.height, s.width))
            blocks[key] = part
            if shape_key is not None:
                by_shape[shape_key] = part
            parts.append(part)
        return parts

    def _unknown_kind(self, block: Any) -> NoReturn:
        kind_ids = self._forest.index
        name, kind = next((name, kind) for name, kind, _ in block_counts(block)
                          if kind not in kind_ids)
        raise LatencyModelError(
            f"the {self.device}/{self.runtime} latency model never measured a {kind!r} kernel "
            f"(row {block.row.index}, {block.row.op}, node {name}); it knows: "
            f"{', '.join(sorted(kind_ids))}. Build it from a search space with such rows: "
            f"archkit latency build {self.device} --runtime {self.runtime} --space FILE"
        )

    def _kernel_ms(self, rows: list[tuple[int, ...]]) -> Any:
        """Corrected kernel times in ms (a float64 array) of rows of integer features and the
        kind's index, all kinds at once."""
        import numpy as np

        if not rows:
            return np.zeros(0)
        # The integers packed as int64 by struct, then one conversion in numpy: about half the
        # time of ``np.fromiter`` into float64 for MobileNetV2's 65 rows (a cold prediction
        # 0.95-0.98x, side by side: benchmarks/cold_prediction_parts.py --compare).
        values = len(rows) * len(rows[0])
        ints = np.frombuffer(pack(f"{values}q", *chain.from_iterable(rows)),
                             dtype=np.int64).reshape(len(rows), -1)
        x = ints.astype(np.float64)
        kinds = ints[:, -1]
        kernel_us = self._forest.predict_us(x, kinds)
        scale = self._kind_scale_ms[kinds]
        if self._size_edges_us:
            scale = scale * self._size_scale[np.searchsorted(self._size_edges, kernel_us)]
        return scale * kernel_us + self._per_kernel_ms

    def _forget(self) -> None:
        """Empty the block caches (benchmarks time cold predictions with it)."""
        self._blocks.clear()
        self._blocks_by_shape.clear()
        self._row_ids.clear()
        self._row_configs.clear()
        self._consts_ids.clear()

    # ------------------------------------------------------------------ adapting

    def adapted(self, records: list[dict[str, Any]], conditions: Conditions,
                built: dict[str, Any]) -> LatencyModel:
        """A model for another device from ``records`` measured on it.

        Records with per-kernel times (profiled runs, as ``archkit latency build --from``
        takes them) carry each kind's regressor over (:func:`_continue_kind`) and refit the
        correction, as a build does, on kernel predictions made out of fold. Records of end-to-end
        times alone keep the regressors and refit only the correction, with scales by kernel
        size (:func:`_fit_size_correction`). A network measured more than once counts
        once, with its calmer measurement (:func:`calmer_measurements`).
        """
        import numpy as np

        records = calmer_measurements(records)
        if len(records) < ADAPT_MIN_NETWORKS:
            raise LatencyModelError(
                f"adapting {self.device}/{self.runtime} to {conditions.device} needs at least "
                f"{ADAPT_MIN_NETWORKS} networks measured there (the correction fits a scale, a "
                f"per-kernel time and an offset to whole networks), got {len(records)}: "
                "measure more with --networks")
        profiled = [r for r in records if r.get("kernels_us")]
        if profiled:
            return self._adapted_from_kernels(profiled, conditions, built)
        kinds = sorted(self.kinds)
        counts = np.zeros(len(records))
        forest = self._forest
        rows, of_kind, of_record = [], [], []
        for i, record in enumerate(records):
            counts[i] = len(record["kernels"])
            for _block, _node, kind, features in record["kernels"]:
                if kind not in self.kinds:
                    raise LatencyModelError(f"{kind!r} kernels are unknown to the model")
                rows.append(features)
                of_kind.append(forest.index[kind])
                of_record.append(i)
        y, reference = _end_to_end(records, self.protocol)
        if rows:
            kernel_us = forest.predict_us(np.column_stack([np.asarray(rows, dtype=np.float64),
                                                           of_kind]))
            correction = _fit_size_correction(kernel_us, np.asarray(of_record), counts, y,
                                              kinds, self.correction)
        else:  # no kernels to scale: the offset alone
            correction = _fit_correction(np.zeros((len(records), len(kinds))), counts, y, kinds,
                                         prior=self.correction)
        correction["probe_reference_ms"] = reference
        return LatencyModel(conditions, self.protocol, self.kinds, correction, built)

    def _adapted_from_kernels(self, records: list[dict[str, Any]], conditions: Conditions,
                              built: dict[str, Any], folds: int = 5) -> LatencyModel:
        table = _kernel_table(records)
        unknown = sorted(set(table) - set(self.kinds))
        if unknown:
            raise LatencyModelError(f"{', '.join(map(repr, unknown))} kernels are unknown to the "
                                    f"{self.device}/{self.runtime} model")
        kinds = sorted(self.kinds)
        # _continue_kind keeps the old regressor where a fold leaves too few kernels.
        out_of_fold = _out_of_fold(
            table, len(records), min(folds, len(records)),
            lambda kind, rows, ys, nets: _continue_kind(self.kinds[kind], rows, ys, nets))
        sums, counts = _network_sums(records, kinds, out_of_fold)
        y, reference = _end_to_end(records, self.protocol)
        correction = _fit_correction(sums, counts, y, kinds, per_kind=_ADAPT_PER_KIND)
        correction["probe_reference_ms"] = reference
        carried = {kind: _continue_kind(old, *table[kind]) if kind in table else old
                   for kind, old in self.kinds.items()}
        return LatencyModel(conditions, self.protocol, carried, correction, built)

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
            if kind.booster_json is not None:
                entry["xgboost"] = kind.booster_json
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
            LatencyModelError: Not a latency model, another format version, other features,
                trees this module cannot evaluate.
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
            kinds[name] = _Kind(entry["samples"], ranges, tuple(float(v) for v in linear),
                                booster_json=entry.get("xgboost"))
        model = cls(Conditions.from_dict(data["conditions"]),
                    TimingProtocol.from_dict(data["protocol"]), kinds, data["correction"],
                    data.get("built", {}))
        try:
            _ = model._forest  # read the trees now: a model that loads predicts
        except (LatencyModelError, KeyError, TypeError, ValueError, IndexError) as err:
            raise LatencyModelError(
                f"{source}: cannot read its trees ({err}); rebuild it with archkit latency "
                f"build {data.get('device')} --runtime {data.get('runtime')}"
            ) from None
        return model


def fit_model(records: list[dict[str, Any]], conditions: Conditions, protocol: TimingProtocol,
              built: dict[str, Any], folds: int = 5) -> tuple[LatencyModel, dict[str, Any]]:
    """Fit kernel regressors on per-kernel times and the correction on end-to-end times.

    Args:
        records: Measured networks (see :mod:`archkit.device._latency._store`); those with
            per-kernel times train the regressors, all of them the correction. A network
            measured more than once counts once (:func:`calmer_measurements`).
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

    profiled = [r for r in calmer_measurements(records) if r.get("kernels_us")]
    if len(profiled) < max(3, folds):
        raise LatencyModelError(
            f"{len(profiled)} measured networks with per-kernel times; a model needs at least "
            f"{max(3, folds)}: run archkit latency build longer (it resumes)"
        )
    table = _kernel_table(profiled)
    kinds = sorted(table)
    out_of_fold = _out_of_fold(table, len(profiled), folds,
                               lambda kind, rows, ys, nets: (_train_kind(rows, ys, nets)
                                                             if rows else None))
    sums, counts = _network_sums(profiled, kinds, out_of_fold)
    y, reference = _end_to_end(profiled, protocol)
    correction = _fit_correction(sums, counts, y, kinds)
    correction["probe_reference_ms"] = reference
    fitted = {kind: _train_kind(*table[kind]) for kind in kinds}
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
