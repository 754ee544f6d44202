"""Accuracy estimators (``--objective``): one registry, one small interface.

An estimator turns a candidate spec (and its analytic costs) into a number to maximize:

- ``published``: ImageNet top-1 (%) predicted from MAdds and parameters by a least-squares model
  calibrated on the published MobileNetV2 and MobileNetV1 checkpoints (:mod:`archkit.reference`).
- ``proxy``: log10 of the SynFlow score of the built model (training-free; any search space).
- ``train``: validation accuracy (%) after a few epochs on an ImageFolder data set.

New estimators register in :data:`ESTIMATORS` and must pass
:func:`archkit.search.testing.check_estimator`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from archkit._data import shipped_file
from archkit.cost import Costs, count
from archkit.reference import TFSLIM_MOBILENET_V1, TFSLIM_MOBILENET_V2
from archkit.reference import TFSLIM_MOBILENET_V2_EXPANSION as CALIBRATED_EXPANSION
from archkit.search._errors import SearchInputError
from archkit.search._space import SearchSpace
from archkit.spec import Spec, apply_overrides, load_spec

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "Estimator",
    "PublishedEstimator",
    "ProxyEstimator",
    "TrainEstimator",
    "make_estimator",
    "published_calibration",
]


@dataclass(frozen=True)
class Estimate:
    """One candidate's objective value.

    Attributes:
        value: the number to maximize (top-1 % for ``published`` and ``train``).
        calibrated: False when the estimator extrapolates for this candidate, True when it is
            inside the estimator's calibration, None when the notion does not apply.
        note: why it is extrapolating (empty when calibrated).
    """

    value: float
    calibrated: bool | None = None
    note: str = ""


class Estimator(ABC):
    """The interface every ``--objective`` implements."""

    #: The ``--objective`` name.
    name: ClassVar[str] = ""
    #: What the value means, for tables (``top-1 % (published model)``).
    label: ClassVar[str] = ""
    #: Whether :meth:`estimate` builds a torch model (slow; needs torch).
    needs_model: ClassVar[bool] = False

    def prepare(self, space: SearchSpace) -> SearchSpace:
        """Check that the estimator applies to ``space``; return the space to search.

        Raises:
            SearchInputError: the estimator cannot score this space.
        """
        return space

    @abstractmethod
    def estimate(self, spec: Spec, costs: Costs) -> Estimate:
        """Score one candidate (``costs`` is ``count(spec)``)."""

    def describe(self) -> dict[str, Any]:
        """Settings and quality figures recorded in ``run.json``."""
        return {"name": self.name, "label": self.label}


# --- published -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The fitted published-accuracy model and its leave-one-out errors (top-1 points)."""

    coefficients: tuple[float, ...]
    loo_mae: float
    loo_rmse: float
    loo_max: float
    fit_rmse: float
    points: int
    #: (family, width, resolution, exact madds, exact params, published top-1, LOO prediction)
    rows: tuple[tuple[str, float, int, int, int, float, float], ...]


@functools.cache
def _family_spec(family: str) -> Spec:
    # The architectures the checkpoints were trained with are the shipped specs.
    return load_spec(shipped_file("specs", family))


def _features(family: str, madds: float, params: float) -> list[float]:
    # Top-1 is close to linear in log MAdds at fixed width and saturates; a full quadratic in
    # (log MAdds, log params) with a family offset had the lowest leave-one-out error of the forms
    # tried (linear: 1.44 points MAE, +log MAdds^2: 0.64, full quadratic: 0.45).
    lm = math.log(madds / 1e8)
    lp = math.log(params / 1e6)
    return [1.0, 1.0 if family == "mobilenetv1" else 0.0, lm, lp, lm * lm, lp * lp, lm * lp]


@functools.cache
def published_calibration() -> Calibration:
    """Fit the published-accuracy model on the exact counts of all 38 published checkpoints."""
    import numpy as np

    rows, features, targets = [], [], []
    published = (("mobilenetv2", TFSLIM_MOBILENET_V2), ("mobilenetv1", TFSLIM_MOBILENET_V1))
    for family, table in published:
        base = _family_spec(family)
        for row in table:
            # Features are exact analytic counts: the published MACs are truncated to whole
            # millions and the published parameters follow TF-slim's convention.
            costs = count(apply_overrides(base, width=row.width, resolution=row.resolution))
            rows.append((family, row.width, row.resolution, costs.madds, costs.params, row.top1))
            features.append(_features(family, costs.madds, costs.params))
            targets.append(row.top1)
    x, y = np.array(features), np.array(targets)
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    loo = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        loo[i] = x[i] @ np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
    errors = loo - y
    return Calibration(
        coefficients=tuple(float(c) for c in coef),
        loo_mae=float(np.abs(errors).mean()),
        loo_rmse=float(np.sqrt((errors**2).mean())),
        loo_max=float(np.abs(errors).max()),
        fit_rmse=float(np.sqrt(((x @ coef - y) ** 2).mean())),
        points=len(y),
        rows=tuple((*r, float(p)) for r, p in zip(rows, loo, strict=True)),
    )


class PublishedEstimator(Estimator):
    """ImageNet top-1 predicted from exact MAdds and params, calibrated on published checkpoints.

    Candidates that are not exactly a published family at some width and resolution inside the
    published ranges (another expansion ratio, other repeats, other channels) still get a number,
    but ``calibrated`` is False and ``note`` says why.
    """

    name = "published"
    label = "top-1 % (published-calibrated model)"
    RANGES: ClassVar[dict[str, tuple[tuple[float, float], tuple[int, int]]]] = {
        "mobilenetv2": ((0.35, 1.4), (96, 224)),
        "mobilenetv1": ((0.25, 1.0), (128, 224)),
    }

    def __init__(self) -> None:
        self.family: str | None = None

    def prepare(self, space: SearchSpace) -> SearchSpace:
        ops = {row.op for row in space.base.rows}
        if "bottleneck" in ops:
            self.family = "mobilenetv2"
        elif "dwsep" in ops:
            self.family = "mobilenetv1"
        else:
            raise SearchInputError(
                "objective",
                f"published is calibrated on MobileNetV2 and MobileNetV1 only; "
                f"the base of search space {space.name!r} has neither bottleneck nor dwsep rows "
                f"(use {{objective}} proxy or train)",
            )
        return space

    def estimate(self, spec: Spec, costs: Costs) -> Estimate:
        family = self.family or (
            "mobilenetv2" if any(r.op == "bottleneck" for r in spec.rows) else "mobilenetv1"
        )
        cal = published_calibration()
        value = sum(
            c * f
            for c, f in zip(
                cal.coefficients, _features(family, costs.madds, costs.params), strict=True
            )
        )
        reasons = self._outside(family, spec)
        return Estimate(float(value), calibrated=not reasons, note="; ".join(reasons))

    def _outside(self, family: str, spec: Spec) -> list[str]:
        (w_lo, w_hi), (r_lo, r_hi) = self.RANGES[family]
        reasons = []
        if not w_lo - 1e-9 <= spec.width <= w_hi + 1e-9:
            reasons.append(f"width {spec.width:g} outside {w_lo:g}..{w_hi:g}")
        if not r_lo <= spec.resolution <= r_hi:
            reasons.append(f"resolution {spec.resolution} outside {r_lo}..{r_hi}")
        reference = _family_spec(family)
        same_shape = (
            len(spec.rows) == len(reference.rows)
            and spec.num_classes == reference.num_classes
            and spec.in_channels == reference.in_channels
        )
        if not same_shape:
            return [*reasons, f"not the published {family} architecture"]
        expansions = sorted(
            {
                r.expansion
                for r in spec.rows
                if r.op == "bottleneck"
                and r.expansion not in (1.0, None)
                and r.expansion != CALIBRATED_EXPANSION
            }
        )
        if expansions:
            shown = ", ".join(f"{t:g}" for t in expansions)
            reasons.append(f"expansion {shown} (published: {CALIBRATED_EXPANSION:g} only)")
        for row, ref in zip(spec.rows, reference.rows, strict=True):
            if row.repeats != ref.repeats:
                reasons.append(f"row {row.index} repeats {row.repeats} (published {ref.repeats})")
        normalized = tuple(
            dataclasses.replace(r, expansion=ref.expansion, repeats=ref.repeats)
            for r, ref in zip(spec.rows, reference.rows, strict=True)
        )
        if normalized != reference.rows or (spec.divisor, spec.min_ratio) != (
            reference.divisor,
            reference.min_ratio,
        ):
            reasons.append(f"layers differ from the published {family}")
        return reasons

    def describe(self) -> dict[str, Any]:
        cal = published_calibration()
        return {
            **super().describe(),
            "family": self.family,
            "calibration_points": cal.points,
            "loo_mae_top1": round(cal.loo_mae, 3),
            "loo_rmse_top1": round(cal.loo_rmse, 3),
            "loo_max_abs_error_top1": round(cal.loo_max, 3),
            "fit_rmse_top1": round(cal.fit_rmse, 3),
            "calibrated_ranges": {
                k: {"width": list(w), "resolution": list(r), "expansion": CALIBRATED_EXPANSION}
                for k, (w, r) in self.RANGES.items()
            },
        }


# --- proxy -----------------------------------------------------------------------------------


class ProxyEstimator(Estimator):
    """log10 SynFlow (Tanaka et al., 2020) of the built model: training-free, data-free.

    SynFlow is the sum over parameters of ``|theta * dR/dtheta|`` where ``R`` is the sum of the
    outputs of the network with every weight replaced by its absolute value, fed an all-ones input.
    It is computed in float64 with BatchNorm in eval mode (identity at initialization) and ReLU6
    replaced by ReLU: with all-positive weights the activations grow past 6 and ReLU6 would cut
    every gradient, scoring every deep network zero.
    """

    name = "proxy"
    label = "log10 SynFlow score"
    needs_model = True

    def estimate(self, spec: Spec, costs: Costs) -> Estimate:
        return Estimate(synflow_log10(spec))


def synflow_log10(spec: Spec, seed: int = 0) -> float:
    """log10 of the SynFlow score of ``spec``'s model (see :class:`ProxyEstimator`).

    Computed in float32 (three times faster than float64 on CPU); recomputed in float64 only if
    float32 overflows (scores of MobileNetV2 1.4 at 224 are about 1e33, float32 holds 3e38).
    """
    score = _synflow(spec, seed, "float32")
    if not math.isfinite(score):
        score = _synflow(spec, seed, "float64")
    if not math.isfinite(score):
        return float("inf")
    return math.log10(score) if score > 0 else float("-inf")


def _synflow(spec: Spec, seed: int, dtype_name: str) -> float:
    import torch
    from torch import nn

    from archkit.build import build_model

    dtype = getattr(torch, dtype_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(module, child_name, nn.ReLU())
    model = model.to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    x = torch.ones(1, spec.in_channels, spec.resolution, spec.resolution, dtype=dtype)
    model(x).sum().backward()
    with torch.no_grad():
        total = sum(
            (p * p.grad).abs().to(torch.float64).sum()
            for p in model.parameters()
            if p.grad is not None
        )
    return float(total)


# --- train -----------------------------------------------------------------------------------


class TrainEstimator(Estimator):
    """Validation accuracy (%) after a short training run on an ImageFolder data set.

    Args:
        data: a folder with one sub-folder per class (or ``train/`` and ``val/`` folders that
            each have one per class), images readable by PIL.
        epochs: training epochs per candidate.
        batch_size: mini-batch size.
        lr: AdamW learning rate (cosine-decayed to zero).
        val_fraction: share of images held out when there is no ``val/`` folder.
        seed: seeds the split, the weights and the batch order.
        max_images: read at most this many images per split (a cap for quick runs).
    """

    name = "train"
    label = "validation top-1 % (short training)"
    needs_model = True

    def __init__(
        self,
        data: str | Path | None = None,
        *,
        epochs: int = 3,
        batch_size: int = 32,
        lr: float = 5e-3,
        val_fraction: float = 0.2,
        seed: int = 0,
        max_images: int | None = None,
    ) -> None:
        if data is None:
            raise SearchInputError(
                "objective_options.data",
                "{objective} train needs {objective_options.data} DIR "
                "(an ImageFolder: one sub-folder per class)",
            )
        from archkit.search._train import ImageFolderData

        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, lr, seed
        self.data = ImageFolderData(
            data, val_fraction=val_fraction, seed=seed, max_images=max_images
        )

    def prepare(self, space: SearchSpace) -> SearchSpace:
        # The classifier must have one output per class of the data set; costs and winners then
        # describe the network that was actually trained.
        base = dataclasses.replace(space.base, num_classes=len(self.data.classes))
        return dataclasses.replace(space, base=base)

    def estimate(self, spec: Spec, costs: Costs) -> Estimate:
        from archkit.search._train import train_and_evaluate

        accuracy = train_and_evaluate(
            spec,
            self.data,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
        )
        return Estimate(accuracy)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "data": str(self.data.root),
            "classes": len(self.data.classes),
            "train_images": len(self.data.train),
            "val_images": len(self.data.val),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
        }


#: ``--objective`` name -> estimator class.
ESTIMATORS: dict[str, Callable[..., Estimator]] = {
    "published": PublishedEstimator,
    "proxy": ProxyEstimator,
    "train": TrainEstimator,
}


def make_estimator(name: str, **options: Any) -> Estimator:
    """Create the estimator ``name`` (``published``, ``proxy``, ``train``)."""
    if name not in ESTIMATORS:
        raise SearchInputError(
            "objective", f"unknown objective {name!r} (known: {', '.join(ESTIMATORS)})"
        )
    if name != "train":
        options = {}
    return ESTIMATORS[name](**options)
