"""YAML -> :class:`Spec`: the decoder, which depends on no other archkit layer.

YAML is read the way every archkit file is (``archkit._schema``: no tags that construct Python
objects, no key twice in one mapping). Every mistake becomes one :class:`~archkit.errors.SpecError`
naming the file, the row and the field. The keys a row may carry are an argument (``row_fields``,
declared by the operators in ``archkit.ops``), so the decoder needs no operator registry;
``archkit.ops`` composes decoding with lowering into ``load_spec``, ``parse_spec`` and
``apply_overrides``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archkit import _schema as schema
from archkit.errors import SpecError
from archkit.spec._fields import COMMON_FIELDS, NUM_CLASSES, FieldRule
from archkit.spec._model import Row, Spec

__all__ = [
    "decode_spec", "read_spec_text", "override_spec", "MAX_RESOLUTION", "MAX_WIDTH",
]

#: The keys each row kind accepts (besides ``op`` and :data:`COMMON_FIELDS`), by operator name.
RowFields = Mapping[str, Sequence[FieldRule]]

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
    return schema.read_text(path, schema.Where(str(path), SpecError), "spec")


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
    data = schema.load_yaml(text, schema.Where(source, SpecError), rows="layers")
    return _decode(data, source, row_fields)


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
    at = schema.Where(spec.source, SpecError)
    if width is not None:
        changes["width"] = schema.check_number(width, at, "--width", 0.0, MAX_WIDTH, exclusive=True)
    if resolution is not None:
        changes["resolution"] = schema.check_int(resolution, at, "--resolution", 1, MAX_RESOLUTION)
    if expansion is not None:
        ratio = schema.check_number(expansion, at, "--expansion", 0.0, 64.0, exclusive=True)
        changes["rows"] = tuple(
            dataclasses.replace(row, expansion=ratio) if row.has_expansion else row
            for row in spec.rows
        )
    return dataclasses.replace(spec, **changes)


def _decode(data: Any, source: str, row_fields: RowFields) -> Spec:
    at = schema.Where(source, SpecError)
    if not isinstance(data, Mapping):
        raise at.fail(f"the top level must be a mapping of keys, got {schema.kind(data)}")
    schema.check_keys(data, _TOP_KEYS, at)
    default_name = Path(source).stem if source != "<string>" else "spec"
    name = schema.check_string(data.get("name", default_name), at, "name", non_empty=True)
    description = schema.check_string(data.get("description", ""), at, "description")

    inp = schema.check_mapping(data.get("input", {}), at, "input")
    schema.check_keys(inp, _INPUT_KEYS, at.inside("input"))
    resolution = schema.check_int(inp.get("resolution", 224), at, "input.resolution", 1,
                                  MAX_RESOLUTION)
    in_channels = schema.check_int(inp.get("channels", 3), at, "input.channels", 1, 64)
    num_classes = schema.check_int(data.get("num_classes", 1000), at, "num_classes", 1, 100_000)
    width = schema.check_number(data.get("width", 1.0), at, "width", 0.0, MAX_WIDTH, exclusive=True)
    rounding = schema.check_mapping(data.get("channel_rounding", {}), at, "channel_rounding")
    schema.check_keys(rounding, _ROUNDING_KEYS, at.inside("channel_rounding"))
    divisor = schema.check_int(rounding.get("divisor", 8), at, "channel_rounding.divisor", 1, 256)
    min_ratio = schema.check_number(rounding.get("min_ratio", 0.9), at,
                                    "channel_rounding.min_ratio", 0.0, 1.0)
    output_stride = data.get("output_stride")
    if output_stride is not None:
        schema.check_int(output_stride, at, "output_stride", 1, _OUTPUT_STRIDES[-1])
        if output_stride not in _OUTPUT_STRIDES:
            allowed = ", ".join(map(str, _OUTPUT_STRIDES))
            raise at.fail(f"must be a power of two (one of {allowed}), got {output_stride}",
                          "output_stride")

    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        raise at.fail(f"must be a non-empty list of rows, got {schema.kind(layers)}", "layers")
    if len(layers) > MAX_ROWS:
        raise at.fail(f"at most {MAX_ROWS} rows, got {len(layers)}", "layers")
    rows = tuple(
        _decode_row(raw, at.at_row(index), row_fields) for index, raw in enumerate(layers)
    )
    return Spec(name=name.strip(), rows=rows, resolution=resolution, in_channels=in_channels,
                num_classes=num_classes, width=width, divisor=divisor, min_ratio=min_ratio,
                source=source, description=description, output_stride=output_stride)


def _decode_row(raw: Any, at: schema.Where, row_fields: RowFields) -> Row:
    if not isinstance(raw, Mapping):
        raise at.fail(f"a row must be a mapping with an 'op' key, got {schema.kind(raw)}")
    op_name = raw.get("op")
    if not isinstance(op_name, str) or op_name not in row_fields:
        known = ", ".join(row_fields)
        close = schema.did_you_mean(op_name, row_fields)
        raise at.fail(f"unknown operator {schema.show(op_name)}{close} (known: {known})", "op")
    at = at.at_row(at.row, op_name)
    rules = {rule.key: rule for rule in (*row_fields[op_name], *COMMON_FIELDS)}
    schema.check_keys(raw, ["op", *rules], at, owner=f"for {op_name}")
    values: dict[str, Any] = {}
    for key, rule in rules.items():
        value = raw.get(key, rule.default)
        if value is None and rule.optional:
            continue
        if value is None:
            raise at.fail(f"is required ({rule.help or key})", key)
        if rule.allow_classes and value == NUM_CLASSES:
            values[rule.attr] = value
            continue
        values[rule.attr] = _coerce(value, rule, at)
    return Row(op=op_name, index=at.row, **values)


def _coerce(value: Any, rule: FieldRule, at: schema.Where) -> Any:
    field = rule.key
    if rule.kind is tuple:
        if not isinstance(value, list | tuple):
            item = _TYPE_NAMES[rule.item]
            raise at.fail(f"must be a list ({item} each), got {schema.show(value)}", field)
        if len(value) > MAX_LIST_ITEMS:
            raise at.fail(f"at most {MAX_LIST_ITEMS} items, got {len(value)}", field)
        item_rule = dataclasses.replace(rule, kind=rule.item, item=None)
        items = tuple(_coerce(item, item_rule, at) for item in value)
        if len(set(items)) != len(items):
            raise at.fail(f"items must be distinct, got {schema.show(list(value))}", field)
        return items
    expected = rule.kind
    ok = (
        isinstance(value, bool)
        if expected is bool
        else schema.is_number(value)
        if expected is float
        else (not isinstance(value, bool) and isinstance(value, expected))
    )
    if not ok:
        extra = f" or {rule.key}: num_classes" if rule.allow_classes else ""
        raise at.fail(f"must be {_TYPE_NAMES[expected]}{extra}, got {schema.show(value)}", field)
    if rule.choices and value not in rule.choices:
        choices = ", ".join(map(str, rule.choices))
        raise at.fail(f"must be one of {choices}, got {schema.show(value)}"
                      f"{schema.did_you_mean(value, map(str, rule.choices))}", field)
    if rule.minimum is not None and (
        value < rule.minimum or (rule.exclusive_minimum and value == rule.minimum)
    ):
        cmp = "above" if rule.exclusive_minimum else "at least"
        raise at.fail(f"must be {cmp} {rule.minimum}, got {schema.show(value)}", field)
    if rule.maximum is not None and value > rule.maximum:
        raise at.fail(f"must be at most {rule.maximum}, got {schema.show(value)}", field)
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        what = rule.help or rule.key
        raise at.fail(f"must match {rule.pattern} ({what}), got {schema.show(value)}", field)
    return float(value) if expected is float else value
