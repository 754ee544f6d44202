"""Search spaces: a base spec and the ranges to explore, decoded once into frozen dataclasses.

A search space file (``search_spaces/*.yaml``)::

    name: mobilenetv2
    base: ../specs/mobilenetv2.yaml        # relative to this file
    width: {low: 0.35, high: 1.4}          # continuous; {low, high, step}; {choices: [...]}; 1.0
    resolution: {low: 96, high: 224, step: 16}
    expansion: {low: 2, high: 10, step: 1, per_stage: false}
    repeats: {change: [-1, 1]}             # optional: each stage's n may move by this much

Every mistake becomes one :class:`~archkit.search.SearchSpaceError` that names the file and the
field, like a bad spec does.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from archkit.errors import SpecError
from archkit.search._errors import SearchSpaceError
from archkit.spec import Row, Spec, apply_overrides, load_spec, parse_spec
from archkit.spec._load import MAX_RESOLUTION, MAX_WIDTH, safe_load_yaml

__all__ = [
    "Range",
    "SearchSpace",
    "Stage",
    "load_search_space",
    "parse_search_space",
    "REPEATABLE_OPS",
    "resolve_space",
]

_TOP_KEYS = ("name", "description", "base", "width", "resolution", "expansion", "repeats")
_RANGE_KEYS = ("low", "high", "step", "choices")
#: Operators whose rows are stages with a repeat count ``n`` a search may change.
REPEATABLE_OPS = ("bottleneck", "dwsep", "shuffle")
MAX_EXPANSION = 64.0
MAX_CHOICES = 1000


@dataclass(frozen=True)
class Range:
    """One searched quantity: a continuous or stepped interval, or a list of choices.

    Attributes:
        name: the Optuna parameter name (``width``, ``resolution``, ``expansion_3`` ...).
        low, high: bounds (inclusive) of an interval; ``None`` for a list of choices.
        step: grid step of the interval; ``None`` for a continuous one.
        choices: the allowed values of a list (a single value is a fixed quantity).
        integer: values are integers (resolutions, repeats, whole expansion ratios).
    """

    name: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[float, ...] | None = None
    integer: bool = False

    def suggest(self, trial: Any) -> float:
        """Draw this quantity for an Optuna trial."""
        if self.choices is not None:
            if len(self.choices) == 1:
                return self.choices[0]
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1)
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)

    @property
    def extremes(self) -> tuple[float, ...]:
        """The smallest and largest value (used to check a space before searching)."""
        if self.choices is not None:
            return (min(self.choices), max(self.choices))
        return (self.low, self.high)

    def values(self, limit: int = 200) -> tuple[float, ...]:
        """All values of a list or stepped interval (at most ``limit``, evenly thinned)."""
        if self.choices is not None:
            return tuple(sorted(self.choices))
        if self.step is None:
            count = limit
            step = (self.high - self.low) / max(1, count - 1)
        else:
            count = int(round((self.high - self.low) / self.step)) + 1
            step = self.step
        values = [self.low + i * step for i in range(count)]
        if len(values) > limit:
            values = [values[round(i * (len(values) - 1) / (limit - 1))] for i in range(limit)]
        cast = int if self.integer else float
        return tuple(cast(round(v, 10)) for v in values)


@dataclass(frozen=True)
class Stage:
    """One searchable row of the base spec: its expansion and/or repeat count range."""

    row: int
    op: str
    expansion: Range | None = None
    repeats: Range | None = None


@dataclass(frozen=True)
class SearchSpace:
    """A base spec and the ranges a search explores.

    ``expansion`` is the global expansion ratio (``None`` when the space searches it per stage
    or not at all); per-stage ranges live in ``stages``.
    """

    name: str
    base: Spec
    width: Range
    resolution: Range
    expansion: Range | None = None
    stages: tuple[Stage, ...] = ()
    source: str | None = dataclasses.field(default=None, compare=False)
    description: str = dataclasses.field(default="", compare=False)

    @property
    def ranges(self) -> tuple[Range, ...]:
        """Every searched quantity, in the order a trial draws them."""
        out = [self.width, self.resolution]
        if self.expansion is not None:
            out.append(self.expansion)
        for stage in self.stages:
            out.extend(r for r in (stage.expansion, stage.repeats) if r is not None)
        return tuple(out)

    def suggest(self, trial: Any) -> dict[str, float]:
        """Draw one candidate's parameters from an Optuna trial."""
        return {r.name: r.suggest(trial) for r in self.ranges}

    def candidate(self, params: Mapping[str, float]) -> Spec:
        """The spec of one candidate (``params`` as :meth:`suggest` returns them).

        Raises:
            SpecError: the candidate is not a valid network (e.g. a map shrinks below 1x1).
        """
        rows = list(self.base.rows)
        for stage in self.stages:
            row = rows[stage.row]
            changes: dict[str, Any] = {}
            if stage.expansion is not None:
                changes["expansion"] = float(params[stage.expansion.name])
            if stage.repeats is not None:
                changes["repeats"] = int(params[stage.repeats.name])
            rows[stage.row] = dataclasses.replace(row, **changes)
        spec = dataclasses.replace(self.base, rows=tuple(rows), name=f"{self.base.name}-candidate")
        expansion = params.get("expansion") if self.expansion is not None else None
        return apply_overrides(
            spec,
            width=float(params["width"]),
            resolution=int(params["resolution"]),
            expansion=None if expansion is None else float(expansion),
        )

    def corners(self) -> list[dict[str, float]]:
        """The candidates at the extremes of every range (checked when the space is loaded)."""
        names = [r.name for r in self.ranges]
        return [
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(r.extremes for r in self.ranges))
        ]

    def smallest(self) -> dict[str, float]:
        """The candidate with every range at its low end (the cheapest the space holds)."""
        return {r.name: r.extremes[0] for r in self.ranges}


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a search space file (its ``base`` path is relative to the file).

    Raises:
        SearchSpaceError: the file cannot be read, is not YAML, or names bad ranges.
        SpecError: the base spec is invalid.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SearchSpaceError(
            f"cannot read the search space: {exc.strerror or exc}", source=source
        ) from None
    except UnicodeDecodeError as exc:
        raise SearchSpaceError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source
        ) from None
    return parse_search_space(text, source=source, base_dir=Path(path).parent)


def parse_search_space(
    text: str, source: str = "<string>", base_dir: str | Path | None = None
) -> SearchSpace:
    """Parse and validate search space text (see ``docs/search.md``).

    ``base`` may be a path (relative to ``base_dir``) or an inline spec mapping.
    """
    data = safe_load_yaml(text, source, SearchSpaceError)
    if not isinstance(data, Mapping):
        raise SearchSpaceError(
            f"the top level must be a mapping of keys, got {_kind(data)}", source=source
        )
    for key in data:
        if key not in _TOP_KEYS:
            raise SearchSpaceError(
                f"unknown key {key!r} (allowed: {', '.join(_TOP_KEYS)})",
                source=source,
                field=str(key),
            )
    base = _load_base(data.get("base"), source, base_dir)
    name = data.get("name", base.name)
    if not isinstance(name, str) or not name.strip():
        raise SearchSpaceError(
            f"must be a non-empty string, got {name!r}", source=source, field="name"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SearchSpaceError("must be a string", source=source, field="description")

    width = _range(
        data.get("width", base.width), "width", source, lo=0.0, hi=MAX_WIDTH, exclusive_lo=True
    )
    resolution = _range(
        data.get("resolution", base.resolution),
        "resolution",
        source,
        lo=1,
        hi=MAX_RESOLUTION,
        integer=True,
    )
    expansion, per_stage = _expansion(data.get("expansion"), source)
    stages = _stages(base, expansion if per_stage else None, data.get("repeats"), source)
    if expansion is not None and not any(
        row.has_expansion for row in base.rows
    ):
        raise SearchSpaceError(
            "the base spec has no bottleneck row with t > 1 to expand",
            source=source,
            field="expansion",
        )
    space = SearchSpace(
        name=name.strip(),
        base=base,
        width=width,
        resolution=resolution,
        expansion=None if per_stage else expansion,
        stages=stages,
        source=source,
        description=description,
    )
    _check_corners(space, source)
    return space


def _load_base(value: Any, source: str, base_dir: str | Path | None) -> Spec:
    if value is None:
        raise SearchSpaceError(
            "is required (a spec file path, relative to the search space file, or an inline spec)",
            source=source,
            field="base",
        )
    if isinstance(value, Mapping):
        return parse_spec(yaml.safe_dump(dict(value)), source=f"{source}: base")
    if not isinstance(value, str) or not value.strip():
        raise SearchSpaceError(
            f"must be a spec file path or a mapping, got {value!r}", source=source, field="base"
        )
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise SearchSpaceError(
            f"spec file {str(path)!r} does not exist", source=source, field="base"
        )
    return load_spec(path)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _range(
    value: Any,
    name: str,
    source: str,
    *,
    lo: float,
    hi: float,
    exclusive_lo: bool = False,
    integer: bool = False,
    param: str | None = None,
    extra_keys: tuple[str, ...] = (),
) -> Range:
    param = param or name

    def fail(message: str, field: str = name) -> SearchSpaceError:
        return SearchSpaceError(message, source=source, field=field)

    def check(v: Any, field: str) -> float:
        if not _is_number(v):
            raise fail(f"must be a number, got {v!r}", field)
        if integer and not float(v).is_integer():
            raise fail(f"must be a whole number, got {v!r}", field)
        if v < lo or (exclusive_lo and v == lo) or v > hi:
            bound = f"above {lo:g}" if exclusive_lo else f"at least {lo:g}"
            raise fail(f"must be {bound} and at most {hi:g}, got {v!r}", field)
        return int(v) if integer else float(v)

    if _is_number(value):
        return Range(param, choices=(check(value, name),), integer=integer)
    if isinstance(value, list):
        value = {"choices": value}
    if not isinstance(value, Mapping):
        raise fail(
            f"must be a number, a list, or a mapping with low/high[/step] or choices, "
            f"got {_kind(value)}"
        )
    for key in value:
        if key not in (*_RANGE_KEYS, *extra_keys):
            allowed = ", ".join((*_RANGE_KEYS, *extra_keys))
            raise fail(f"unknown key {key!r} (allowed: {allowed})", f"{name}.{key}")
    if "choices" in value:
        if any(k in value for k in ("low", "high", "step")):
            raise fail("give either choices or low/high[/step], not both")
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise fail(f"must be a non-empty list, got {_kind(choices)}", f"{name}.choices")
        if len(choices) > MAX_CHOICES:
            raise fail(f"at most {MAX_CHOICES} choices, got {len(choices)}", f"{name}.choices")
        picked = tuple(check(v, f"{name}.choices[{i}]") for i, v in enumerate(choices))
        if len(set(picked)) != len(picked):
            raise fail(f"choices must be distinct, got {list(picked)}", f"{name}.choices")
        return Range(param, choices=picked, integer=integer)
    for key in ("low", "high"):
        if key not in value:
            raise fail("is required (or give choices)", f"{name}.{key}")
    low = check(value["low"], f"{name}.low")
    high = check(value["high"], f"{name}.high")
    if low > high:
        raise fail(f"low must not exceed high, got low {low:g} and high {high:g}")
    step = value.get("step")
    if step is None:
        if integer:
            step = 1
    else:
        if not _is_number(step) or step <= 0 or (integer and not float(step).is_integer()):
            kind = "a positive whole number" if integer else "a positive number"
            raise fail(f"must be {kind}, got {step!r}", f"{name}.step")
        span = (high - low) / step
        if not math.isclose(span, round(span), abs_tol=1e-9):
            raise fail(
                f"high - low ({high - low:g}) must be a multiple of step ({step:g})", f"{name}.step"
            )
        step = int(step) if integer else float(step)
    if low == high:
        return Range(param, choices=(low,), integer=integer)
    return Range(param, low=low, high=high, step=step, integer=integer)


def _expansion(value: Any, source: str) -> tuple[Range | None, bool]:
    if value is None:
        return None, False
    per_stage = False
    if isinstance(value, Mapping) and "per_stage" in value:
        per_stage = value["per_stage"]
        if not isinstance(per_stage, bool):
            raise SearchSpaceError(
                f"must be true or false, got {per_stage!r}",
                source=source,
                field="expansion.per_stage",
            )
        value = {k: v for k, v in value.items() if k != "per_stage"}
    whole = _all_whole(value)
    rng = _range(
        value, "expansion", source, lo=0.0, hi=MAX_EXPANSION, exclusive_lo=True, integer=whole
    )
    return rng, per_stage


def _all_whole(value: Any) -> bool:
    if _is_number(value):
        return float(value).is_integer()
    if isinstance(value, list):
        return all(_is_number(v) and float(v).is_integer() for v in value)
    if isinstance(value, Mapping):
        if "choices" in value:
            return _all_whole(value["choices"])
        nums = [value.get(k) for k in ("low", "high", "step") if value.get(k) is not None]
        return all(_is_number(v) and float(v).is_integer() for v in nums)
    return False


def _stages(base: Spec, expansion: Range | None, repeats: Any, source: str) -> tuple[Stage, ...]:
    change: tuple[int, int] | None = None
    if repeats is not None:
        if not isinstance(repeats, Mapping) or set(repeats) - {"change"}:
            raise SearchSpaceError(
                "must be a mapping {change: [low, high]} (the change of each stage's n)",
                source=source,
                field="repeats",
            )
        value = repeats.get("change")
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or value[0] > value[1]
            or value[0] > 0
            or value[1] < 0
        ):
            raise SearchSpaceError(
                f"must be two whole numbers [low, high] with low <= 0 <= high, got {value!r}",
                source=source,
                field="repeats.change",
            )
        change = (value[0], value[1])
    stages = []
    for row in base.rows:
        if row.op not in REPEATABLE_OPS:
            continue
        exp = None
        if expansion is not None and row.has_expansion:
            exp = dataclasses.replace(expansion, name=f"expansion_{row.index}")
        rep = _repeat_range(row, change)
        if exp is not None or rep is not None:
            stages.append(Stage(row=row.index, op=row.op, expansion=exp, repeats=rep))
    return tuple(stages)


def _repeat_range(row: Row, change: tuple[int, int] | None) -> Range | None:
    if change is None:
        return None
    low, high = max(1, row.repeats + change[0]), row.repeats + change[1]
    if low == high:
        return None
    return Range(f"repeats_{row.index}", low=low, high=high, step=1, integer=True)


def _check_corners(space: SearchSpace, source: str) -> None:
    # Each range is valid on its own; the extremes together must still make valid networks
    # (a resolution too small for five stride-2 stages fails here, not in trial 37).
    corners = space.corners()
    if len(corners) > 64:  # per-stage spaces: check the all-low and all-high corners only
        corners = [space.smallest(), {r.name: r.extremes[1] for r in space.ranges}]
    for params in corners:
        try:
            space.candidate(params)
        except SpecError as exc:
            shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
            raise SearchSpaceError(
                f"the candidate at the edge of the ranges ({shown}) is not "
                f"a valid network: {exc.reason}",
                source=source,
            ) from None


def resolve_space(value: str | Path | None = None) -> tuple[SearchSpace, str]:
    """A search space from a file path or a name: ``./search_spaces/NAME.yaml``, then the
    spaces archkit ships (``mobilenetv2``, the default, ``mobilenetv1`` ...).

    Returns:
        The space and the path of the file it was read from.

    Raises:
        SearchSpaceError: no such file or name, or the file is invalid.
    """
    from archkit._data import shipped_file, shipped_names

    value = str(value or "mobilenetv2")
    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SearchSpaceError("search space file does not exist", source=value)
        return load_search_space(path), str(path)
    local = Path("search_spaces") / f"{value}.yaml"
    found = local if local.is_file() else shipped_file("search_spaces", value)
    if found is None:
        raise SearchSpaceError(
            f"no search space file or shipped space named {value!r} (shipped: "
            f"{', '.join(shipped_names('search_spaces'))})",
            source=value,
        )
    return load_search_space(found), str(found)
