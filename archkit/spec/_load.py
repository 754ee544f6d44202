"""YAML -> :class:`Spec`: the decoder, which depends on no other archkit layer.

YAML is read with ``yaml.safe_load`` (no tags that construct Python objects). Every mistake becomes
one :class:`~archkit.errors.SpecError` naming the file, the row and the field. The keys a row may
carry are an argument (``row_fields``, declared by the operators in ``archkit.ops``), so the
decoder needs no operator registry; ``archkit.ops`` composes decoding with lowering into
``load_spec``, ``parse_spec`` and ``apply_overrides``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from archkit.errors import SpecError
from archkit.spec._fields import COMMON_FIELDS, NUM_CLASSES, FieldRule
from archkit.spec._model import Row, Spec

__all__ = [
    "decode_spec", "read_spec_text", "override_spec", "safe_load_yaml", "MAX_RESOLUTION",
    "MAX_WIDTH",
]

#: The keys each row kind accepts (besides ``op`` and :data:`COMMON_FIELDS`), by operator name.
RowFields = Mapping[str, Sequence[FieldRule]]

MAX_FILE_BYTES = 1 << 20
MAX_RESOLUTION = 4096
MAX_WIDTH = 8.0
MAX_ROWS = 256
_TOP_KEYS = ("name", "description", "input", "num_classes", "width", "channel_rounding",
             "output_stride", "layers")
#: DeepLab's output strides are powers of two (each stride-2 layer halves the map).
_OUTPUT_STRIDES = (1, 2, 4, 8, 16, 32, 64)
MAX_LIST_ITEMS = 16
_INPUT_KEYS = ("resolution", "channels")
_ROUNDING_KEYS = ("divisor", "min_ratio")
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               tuple: "a list"}


def read_spec_text(path: str | Path) -> str:
    """The text of a spec file.

    Raises:
        SpecError: the file cannot be read, is too large or is not UTF-8.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the spec: {exc.strerror or exc}", source=source) from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"file is larger than {MAX_FILE_BYTES} bytes", source=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise SpecError(reason, source=source) from None


def safe_load_yaml(text: str, source: str, error: type[SpecError] = SpecError) -> Any:
    """``yaml.safe_load`` (no tags that construct Python objects), every failure an ``error``
    naming ``source`` and, where YAML knows it, the line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise error(f"not valid YAML{at}: {problem}", source=source) from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise error(f"not valid YAML: {type(exc).__name__}", source=source) from None


def decode_spec(text: str, source: str, row_fields: RowFields) -> Spec:
    """Decode spec text into a :class:`Spec`: every key, type and bound checked, the network's
    shapes not (lowering checks those: ``archkit.ops.parse_spec`` does both).

    Args:
        text: the YAML text (see ``docs/spec.md`` for the format).
        source: the file name that error messages name.
        row_fields: the keys each operator accepts, by operator name (``op`` values not in it
            are unknown operators).

    Raises:
        SpecError: naming the file, the row and the field.
    """
    return _decode(safe_load_yaml(text, source), source, row_fields)


def override_spec(
    spec: Spec,
    *,
    width: float | None = None,
    resolution: int | None = None,
    expansion: float | None = None,
) -> Spec:
    """``spec`` with a new width multiplier, input resolution or expansion ratio, each checked
    against its bounds (the network's shapes are not checked: see
    ``archkit.ops.apply_overrides``).

    ``expansion`` replaces the ratio of every row that :attr:`Row.has_expansion` (``t: 1`` rows,
    like MobileNetV2's first bottleneck, keep theirs).
    """
    changes: dict[str, Any] = {}
    if width is not None:
        _check_number(width, "--width", spec.source, 0.0, MAX_WIDTH, exclusive=True)
        changes["width"] = float(width)
    if resolution is not None:
        _check_int(resolution, "--resolution", spec.source, 1, MAX_RESOLUTION)
        changes["resolution"] = int(resolution)
    if expansion is not None:
        _check_number(expansion, "--expansion", spec.source, 0.0, 64.0, exclusive=True)
        changes["rows"] = tuple(
            dataclasses.replace(row, expansion=float(expansion)) if row.has_expansion else row
            for row in spec.rows
        )
    return dataclasses.replace(spec, **changes)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 40, 40


def _show(value: Any) -> str:
    """A short, safe rendering of a user's value for an error message.

    Bounded whatever the input: YAML aliases can build structures of billions of elements and
    integers of thousands of digits (whose ``str`` Python refuses).
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**15:
        return f"an integer of {value.bit_length()} bits"
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"


def _finite(value: int | float) -> bool:
    # math.isfinite raises OverflowError for integers beyond a float's range; integers are finite.
    return isinstance(value, int) or math.isfinite(value)


def _check_int(value: Any, field: str, source: str | None, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"must be an integer, got {_show(value)}", source=source, field=field)
    if not lo <= value <= hi:
        raise SpecError(f"must be between {lo} and {hi}, got {_show(value)}", source=source,
                        field=field)


def _check_number(
    value: Any, field: str, source: str | None, lo: float, hi: float, *, exclusive: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise SpecError(f"must be a finite number, got {_show(value)}", source=source, field=field)
    if value < lo or (exclusive and value == lo) or value > hi:
        bound = f"above {lo}" if exclusive else f"at least {lo}"
        raise SpecError(f"must be {bound} and at most {hi}, got {_show(value)}", source=source,
                        field=field)


def _mapping(value: Any, what: str, source: str, keys: tuple[str, ...], **where: Any) -> Mapping:
    if not isinstance(value, Mapping):
        raise SpecError(f"must be a mapping, got {_kind(value)}", source=source, field=what,
                        **where)
    for key in value:
        if key not in keys:
            allowed = ", ".join(keys)
            raise SpecError(f"unknown key {_show(key)} (allowed: {allowed})", source=source,
                            field=what if what else str(key), **where)
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _decode(data: Any, source: str, row_fields: RowFields) -> Spec:
    if not isinstance(data, Mapping):
        raise SpecError(f"the top level must be a mapping of keys, got {_kind(data)}",
                        source=source)
    for key in data:
        if key not in _TOP_KEYS:
            raise SpecError(f"unknown key {_show(key)} (allowed: {', '.join(_TOP_KEYS)})",
                            source=source, field=str(key))
    name = data.get("name", Path(source).stem if source != "<string>" else "spec")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"must be a non-empty string, got {_show(name)}", source=source,
                        field="name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError("must be a string", source=source, field="description")

    inp = _mapping(data.get("input", {}), "input", source, _INPUT_KEYS)
    resolution = inp.get("resolution", 224)
    _check_int(resolution, "input.resolution", source, 1, MAX_RESOLUTION)
    in_channels = inp.get("channels", 3)
    _check_int(in_channels, "input.channels", source, 1, 64)
    num_classes = data.get("num_classes", 1000)
    _check_int(num_classes, "num_classes", source, 1, 100_000)
    width = data.get("width", 1.0)
    _check_number(width, "width", source, 0.0, MAX_WIDTH, exclusive=True)
    rounding = _mapping(data.get("channel_rounding", {}), "channel_rounding", source,
                        _ROUNDING_KEYS)
    divisor = rounding.get("divisor", 8)
    _check_int(divisor, "channel_rounding.divisor", source, 1, 256)
    min_ratio = rounding.get("min_ratio", 0.9)
    _check_number(min_ratio, "channel_rounding.min_ratio", source, 0.0, 1.0)
    output_stride = data.get("output_stride")
    if output_stride is not None:
        _check_int(output_stride, "output_stride", source, 1, _OUTPUT_STRIDES[-1])
        if output_stride not in _OUTPUT_STRIDES:
            allowed = ", ".join(map(str, _OUTPUT_STRIDES))
            raise SpecError(f"must be a power of two (one of {allowed}), got {output_stride}",
                            source=source, field="output_stride")

    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SpecError(f"must be a non-empty list of rows, got {_kind(layers)}", source=source,
                        field="layers")
    if len(layers) > MAX_ROWS:
        raise SpecError(f"at most {MAX_ROWS} rows, got {len(layers)}", source=source,
                        field="layers")
    rows = tuple(
        _decode_row(raw, index, source, row_fields) for index, raw in enumerate(layers)
    )
    return Spec(name=name.strip(), rows=rows, resolution=resolution, in_channels=in_channels,
                num_classes=num_classes, width=float(width), divisor=divisor,
                min_ratio=float(min_ratio), source=source, description=description,
                output_stride=output_stride)


def _decode_row(raw: Any, index: int, source: str, row_fields: RowFields) -> Row:
    if not isinstance(raw, Mapping):
        raise SpecError(f"a row must be a mapping with an 'op' key, got {_kind(raw)}",
                        source=source, row=index)
    op_name = raw.get("op")
    if not isinstance(op_name, str) or op_name not in row_fields:
        known = ", ".join(row_fields)
        raise SpecError(f"unknown operator {_show(op_name)} (known: {known})", source=source,
                        row=index, field="op")
    rules = {rule.key: rule for rule in (*row_fields[op_name], *COMMON_FIELDS)}
    for key in raw:
        if key != "op" and key not in rules:
            allowed = ", ".join(["op", *rules]) if rules else "op"
            raise SpecError(f"unknown key {_show(key)} for {op_name} (allowed: {allowed})",
                            source=source, row=index, op=op_name, field=str(key))
    values: dict[str, Any] = {}
    for key, rule in rules.items():
        value = raw.get(key, rule.default)
        where = {"source": source, "row": index, "op": op_name, "field": key}
        if value is None and rule.optional:
            continue
        if value is None:
            raise SpecError(f"is required ({rule.help or key})", **where)
        if rule.allow_classes and value == NUM_CLASSES:
            values[rule.attr] = value
            continue
        value = _coerce(value, rule, where)
        values[rule.attr] = value
    return Row(op=op_name, index=index, **values)


def _coerce(value: Any, rule: FieldRule, where: dict[str, Any]) -> Any:
    if rule.kind is tuple:
        if not isinstance(value, list | tuple):
            raise SpecError(f"must be a list ({_TYPE_NAMES[rule.item]} each), got {_show(value)}",
                            **where)
        if len(value) > MAX_LIST_ITEMS:
            raise SpecError(f"at most {MAX_LIST_ITEMS} items, got {len(value)}", **where)
        item_rule = dataclasses.replace(rule, kind=rule.item, item=None)
        items = tuple(_coerce(item, item_rule, where) for item in value)
        if len(set(items)) != len(items):
            raise SpecError(f"items must be distinct, got {_show(list(value))}", **where)
        return items
    kind = rule.kind
    ok = (
        isinstance(value, bool)
        if kind is bool
        else (not isinstance(value, bool) and isinstance(value, int | float) and
              _finite(value))
        if kind is float
        else (not isinstance(value, bool) and isinstance(value, kind))
    )
    if not ok:
        extra = f" or {rule.key}: num_classes" if rule.allow_classes else ""
        raise SpecError(f"must be {_TYPE_NAMES[kind]}{extra}, got {_show(value)}", **where)
    if rule.choices and value not in rule.choices:
        choices = ", ".join(map(str, rule.choices))
        raise SpecError(f"must be one of {choices}, got {_show(value)}", **where)
    if rule.minimum is not None and (
        value < rule.minimum or (rule.exclusive_minimum and value == rule.minimum)
    ):
        cmp = "above" if rule.exclusive_minimum else "at least"
        raise SpecError(f"must be {cmp} {rule.minimum}, got {_show(value)}", **where)
    if rule.maximum is not None and value > rule.maximum:
        raise SpecError(f"must be at most {rule.maximum}, got {_show(value)}", **where)
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        raise SpecError(f"must match {rule.pattern} ({rule.help or rule.key}), got {_show(value)}",
                        **where)
    return float(value) if kind is float else value
