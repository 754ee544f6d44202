"""Shared fixtures: the shipped specs and their families, built models (cached per session),
fvcore analyses, and a generator of random valid specs for property tests.

Reference values in these tests come from outside archkit: fvcore's trace of the built model,
``sum(p.numel())``, onnxruntime, PyTorch forward hooks, the papers and TF-slim's published tables.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import archkit

# The specs that ship with the archkit under test (a source checkout).
ROOT = Path(archkit.__file__).resolve().parents[1]
SPECS_DIR = ROOT / "specs"
SHIPPED = sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))

# Hypothesis: no example database churn in CI, and a generous default deadline (building and
# tracing a model takes a fraction of a second; the parser fuzz sets its own tight deadline).
settings.register_profile(
    "archkit",
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "archkit"))


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Variant:
    """A shipped spec with optional overrides; ``id`` is the pytest id."""

    spec_name: str
    width: float | None = None
    resolution: int | None = None

    @property
    def id(self) -> str:
        parts = [self.spec_name]
        if self.width is not None:
            parts.append(f"w{self.width:g}")
        if self.resolution is not None:
            parts.append(f"r{self.resolution}")
        return "-".join(parts)

    def load(self):
        from archkit.spec import apply_overrides, load_spec

        spec = load_spec(SPECS_DIR / f"{self.spec_name}.yaml")
        if self.width is None and self.resolution is None:
            return spec
        return apply_overrides(spec, width=self.width, resolution=self.resolution)


#: Shipped specs above this many MAdds (segmentation at 512x512, detection at 320x320) are built
#: at ``REDUCED_RESOLUTION`` for the model-based tests, to keep the suite within minutes on two
#: cores; test_native_resolution_forward still runs each of them once as shipped.
HEAVY_MADDS = 1_000_000_000
REDUCED_RESOLUTION = 160


def _shipped_variant(name: str) -> Variant:
    from archkit.cost import count
    from archkit.spec import load_spec

    if count(load_spec(SPECS_DIR / f"{name}.yaml")).madds > HEAVY_MADDS:
        return Variant(name, resolution=REDUCED_RESOLUTION)
    return Variant(name)


#: Every shipped spec (as shipped, or at REDUCED_RESOLUTION when heavy), then the published
#: families (MobileNetV2 0.35..1.4 and 96..224, MobileNetV1 0.25..1.0, ShuffleNet 1x/1.5x/2x).
FAMILY: tuple[Variant, ...] = (
    *(_shipped_variant(name) for name in SHIPPED),
    *(Variant("mobilenetv2", w, 224) for w in (0.35, 0.5, 0.75, 1.3, 1.4)),
    *(Variant("mobilenetv2", 1.0, r) for r in (96, 160)),
    *(Variant("mobilenetv1", w, 224) for w in (0.25, 0.5, 0.75)),
    Variant("mobilenetv1", 1.0, 128),
    *(Variant("shufflenet_g3", w, 224) for w in (1.5, 2.0)),
)


def family_params() -> list:
    return [pytest.param(v, id=v.id) for v in FAMILY]


class ModelCache:
    """Builds each variant's model once per session (eval mode, BatchNorm statistics calibrated so
    that activations are O(1) and output comparisons are not vacuous) and traces it with fvcore
    once."""

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._flops: dict[str, Any] = {}
        self._hooks: dict[str, Any] = {}

    def spec(self, variant: Variant):
        return variant.load()

    def model(self, variant: Variant):
        if variant.id not in self._models:
            from archkit.build import build_model

            spec = variant.load()
            model = build_model(spec)
            calibrate(model, spec)
            self._models[variant.id] = model
        return self._models[variant.id]

    def hooks(self, variant: Variant):
        """``(peak live elements, per-operation records)`` of one forward pass (see
        :func:`measure_peak_live_elements`)."""
        if variant.id not in self._hooks:
            from archkit.build import example_input

            spec = variant.load()
            self._hooks[variant.id] = measure_peak_live_elements(
                self.model(variant), example_input(spec)
            )
        return self._hooks[variant.id]

    def flops(self, variant: Variant):
        if variant.id not in self._flops:
            from archkit.build import example_input

            spec = variant.load()
            self._flops[variant.id] = fvcore_analysis(self.model(variant), example_input(spec))
        return self._flops[variant.id]


@pytest.fixture(scope="session")
def models() -> ModelCache:
    return ModelCache()


def calibrate(model, spec, batch: int = 2, seed: int = 1) -> None:
    """BatchNorm statistics that make output comparisons non-vacuous (see
    :func:`archkit.build.calibrate_batchnorm`)."""
    from archkit.build import calibrate_batchnorm

    calibrate_batchnorm(model, spec, batch=batch, seed=seed)


def fvcore_analysis(model, x):
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model.eval(), x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


#: Operators fvcore counts that carry multiply-adds; archkit counts conv and linear only, so any
#: other one appearing in a trace means a layer archkit does not model.
FVCORE_MAC_OPS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum", "mm", "baddbmm")


def fvcore_madds(counter: dict[str, int]) -> int:
    return int(counter.get("conv", 0)) + int(counter.get("linear", 0))


# --------------------------------------------------------------------------- random specs


class Chooser:
    """What the spec generator needs from a source of randomness.

    Two implementations: :class:`RandomChooser` (``random.Random``, for deterministic share
    measurements) and :class:`DataChooser` (hypothesis ``st.data()``, for shrinking).
    """

    def integer(self, lo: int, hi: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def pick(self, options: Sequence[Any]) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def flip(self, p: float = 0.5) -> bool:
        return self.integer(0, 999) < int(p * 1000)


class RandomChooser(Chooser):
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[Any]) -> Any:
        return self.rng.choice(list(options))


class DataChooser(Chooser):
    def __init__(self, data) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[Any]) -> Any:
        return self.data.draw(st.sampled_from(list(options)))


_BODY_OPS = ("conv2d", "bottleneck", "dwsep", "shuffle", "maxpool", "dropout")
_KERNELS = (1, 3, 5)


def random_spec_dict(
    ch: Chooser,
    *,
    resolutions: tuple[int, int] = (16, 96),
    max_body_rows: int = 5,
    max_channels: int = 48,
) -> dict[str, Any]:
    """A random spec (as the dict YAML would hold) that is *usually* valid.

    Validity is not guaranteed (a width multiplier can break a group count or a shuffle unit's
    channel equation): callers parse it and discard what archkit rejects. The channel bookkeeping
    here only steers the generator towards valid specs; it is not an oracle.
    """
    in_channels = ch.integer(1, 4)
    spec: dict[str, Any] = {
        "name": f"random{ch.integer(0, 10**6)}",
        "input": {"resolution": ch.integer(*resolutions), "channels": in_channels},
        "num_classes": ch.integer(1, 20),
        "width": ch.pick((0.5, 0.75, 1.0, 1.0, 1.0, 1.25, 1.5)),
        "channel_rounding": {
            "divisor": ch.pick((1, 2, 4, 8)),
            "min_ratio": ch.pick((0.9, 0.9, 0.75, 1.0)),
        },
    }
    if ch.flip(0.2):
        del spec["channel_rounding"]
    rows: list[dict[str, Any]] = []
    channels = in_channels  # unscaled guess of the current channel count
    for _ in range(ch.integer(1, max_body_rows)):
        op = ch.pick(_BODY_OPS)
        row: dict[str, Any] = {"op": op}
        if op == "conv2d":
            c = ch.integer(1, max_channels)
            groups = ch.pick((1, 1, 1, 2, 3, 4))
            if groups > 1:
                c = max(groups, c - c % groups)
            row.update(c=c, n=ch.integer(1, 2), s=ch.pick((1, 2)), kernel=ch.pick(_KERNELS))
            if groups > 1:
                row["groups"] = groups
            if ch.flip(0.2):
                row["dilation"] = 2
            if ch.flip(0.3):
                row["activation"] = ch.pick(("relu6", "relu", "none"))
            if ch.flip(0.3):
                row["bn"] = ch.flip()
            if ch.flip(0.3):
                row["bias"] = ch.flip()
            if ch.flip(0.2):
                row["width_scaling"] = ch.pick(("full", "grow_only", "none"))
            channels = c
        elif op == "bottleneck":
            c = ch.integer(1, max_channels)
            row.update(
                t=ch.pick((1, 1.5, 2, 3, 4, 6)),
                c=c,
                n=ch.integer(1, 3),
                s=ch.pick((1, 2)),
                kernel=ch.pick(_KERNELS),
            )
            if ch.flip(0.15):
                row["dilation"] = 2
            if ch.flip(0.2):
                row["activation"] = ch.pick(("relu6", "relu", "none"))
            if ch.flip(0.2):
                row["width_scaling"] = ch.pick(("full", "grow_only", "none"))
            channels = c
        elif op == "dwsep":
            c = ch.integer(1, max_channels)
            row.update(c=c, n=ch.integer(1, 2), s=ch.pick((1, 2)), kernel=ch.pick(_KERNELS))
            if ch.flip(0.2):
                row["activation"] = ch.pick(("relu6", "relu", "none"))
            channels = c
        elif op == "shuffle":
            groups = ch.pick((1, 2, 3, 4))
            t = ch.pick((0.25, 0.5))
            stride = ch.pick((1, 2, 2))
            if stride == 1:
                c = channels
            else:
                step = groups * (4 if t == 0.25 else 2)
                c = channels + step * ch.integer(1, 4)
            row.update(
                c=c, n=ch.integer(1, 2), s=stride, groups=groups, t=t, kernel=ch.pick(_KERNELS)
            )
            if ch.flip(0.3):
                row["group_first_pw"] = ch.flip()
            channels = c
        elif op == "maxpool":
            row.update(kernel=ch.pick(_KERNELS), s=ch.pick((1, 2)))
        elif op == "dropout":
            row["p"] = ch.pick((0.0, 0.1, 0.5))
        rows.append(row)
    tail = ch.pick(("none", "avgpool", "fc", "fc", "dropout_fc", "conv_fc", "fc_fc"))
    if tail != "none":
        if tail == "conv_fc":
            rows.append(
                {
                    "op": "conv2d",
                    "c": ch.integer(1, max_channels),
                    "kernel": 1,
                    "width_scaling": "grow_only",
                }
            )
        rows.append({"op": "avgpool"})
        if tail == "dropout_fc":
            rows.append({"op": "dropout", "p": 0.2})
        if tail in ("fc", "dropout_fc", "conv_fc", "fc_fc"):
            rows.append(
                {"op": "fc"}
                if ch.flip(0.7)
                else {"op": "fc", "c": ch.integer(1, 30), "bias": ch.flip()}
            )
        if tail == "fc_fc":
            rows.append({"op": "dropout"})
            rows.append({"op": "fc", "c": "num_classes"})
    spec["layers"] = rows
    return spec


def dump_yaml(spec: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


def try_parse(spec_dict: dict[str, Any], source: str = "random.yaml"):
    """``(spec, None)`` when archkit accepts the dict (as YAML text), else ``(None, SpecError)``."""
    from archkit.errors import SpecError
    from archkit.spec import parse_spec

    try:
        return parse_spec(dump_yaml(spec_dict), source=source), None
    except SpecError as exc:
        return None, exc


@pytest.fixture(scope="session")
def specgen() -> SimpleNamespace:
    """Spec generation helpers for tests in any subfolder (usable inside ``@given`` tests)."""
    return SimpleNamespace(
        random_spec_dict=random_spec_dict,
        RandomChooser=RandomChooser,
        DataChooser=DataChooser,
        dump_yaml=dump_yaml,
        try_parse=try_parse,
    )


# --------------------------------------------------------------------------- references


def tf_slim_make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """TF-slim's ``_make_divisible`` (research/slim/nets/mobilenet/mobilenet.py), restated."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    # Make sure that round down does not go down by more than 10%.
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@pytest.fixture(scope="session")
def references() -> SimpleNamespace:
    return SimpleNamespace(make_divisible=tf_slim_make_divisible)


def measure_peak_live_elements(model, x) -> tuple[int, list[dict[str, Any]]]:
    """Peak activation elements of a forward pass, measured with forward hooks.

    Every primitive module (the children of each block) is one operation. A tensor is identified
    by the Python object: a module that returns its input itself (dropout in eval mode) adds no
    tensor, any other output (a view included: a channel shuffle with one channel per group is a
    reshape that PyTorch does not copy) is a new activation. Each tensor is alive from the
    operation that produces it (the network input from the start) to the last operation that
    reads it; the tensors the model returns (matched by storage, through any final reshape) stay
    alive to the end.
    Returns the peak and the per-operation records.
    """
    import torch

    events: list[dict[str, Any]] = []
    keep: list[Any] = []  # hold every tensor so storage addresses are never reused

    def key(t) -> int:
        return id(t)

    def hook(module, inputs, output, block=-1):
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        keep.extend(tensors)
        keep.append(output)
        events.append(
            {
                "block": block,
                "module": module,
                "ins": [key(t) for t in tensors],
                "in_sizes": [t[0].numel() for t in tensors],
                "out": key(output),
                "out_storage": output.untyped_storage().data_ptr(),
                "out_size": output[0].numel(),
                "out_shape": tuple(output.shape[1:]),
                "in_shapes": [tuple(t.shape[1:]) for t in tensors],
            }
        )

    handles = [
        child.register_forward_hook(functools.partial(hook, block=index))
        for index, block in enumerate(model.blocks)
        for child in block.children()
    ]
    try:
        with torch.no_grad():
            result = model.eval()(x)
    finally:
        for h in handles:
            h.remove()

    size = {key(x): x[0].numel()}
    born = {key(x): -1}
    last_read: dict[int, int] = {}
    for i, ev in enumerate(events):
        for k in ev["ins"]:
            last_read[k] = i
        if ev["out"] not in size:
            size[ev["out"]] = ev["out_size"]
            born[ev["out"]] = i
    # The tensors the model returns stay alive to the end.
    returned = {t.untyped_storage().data_ptr() for t in as_tensors(result)}
    for ev in events:
        if ev["out_storage"] in returned:
            last_read[ev["out"]] = len(events)
    peak = 0
    for i, ev in enumerate(events):
        live = sum(n for k, n in size.items() if born[k] <= i <= last_read.get(k, born[k]))
        ev["live"] = live
        peak = max(peak, live)
    return peak, events


def as_tensors(result) -> list:
    """The tensors a model returns (one tensor, or a tuple/list/dict of them), in order."""
    import torch

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        result = list(result.values())
    return [t for item in result for t in as_tensors(item)]


@pytest.fixture(scope="session")
def peak_meter() -> Callable:
    return measure_peak_live_elements
