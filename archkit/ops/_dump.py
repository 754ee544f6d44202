"""Spec -> YAML text that :func:`archkit.spec.parse_spec` reads back to an equal spec.

The writer is the inverse of the validated reader (:mod:`archkit.ops._validate`): both need the
operator registry's field rules, so both live in ops; ``archkit.spec.dump_spec`` re-exports it.
"""

from __future__ import annotations

from typing import Any

import yaml

from archkit.ops._operators import OPERATORS
from archkit.spec import COMMON_FIELDS, Spec

__all__ = ["dump_spec"]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _rules(op: str) -> tuple[Any, ...]:
    # Keys every operator accepts (row names, ``from:``) live apart from the operator's own.
    return (*OPERATORS[op].fields, *COMMON_FIELDS)


def dump_spec(spec: Spec, comment: str = "") -> str:
    """YAML text of ``spec``: row keys in the spec language (t, c, n, s ...), defaults omitted.

    Args:
        spec: any valid spec.
        comment: lines written as a ``#`` comment at the top (provenance of a winner).
    """
    layers = []
    for row in spec.rows:
        entry: dict[str, Any] = {"op": row.op}
        for rule in _rules(row.op):
            value = getattr(row, rule.attr)
            if value is None or value == rule.default:
                continue
            entry[rule.key] = _plain(value)
        layers.append(entry)
    data: dict[str, Any] = {"name": spec.name}
    if spec.description:
        data["description"] = spec.description
    data["input"] = {"resolution": spec.resolution, "channels": spec.in_channels}
    data["num_classes"] = spec.num_classes
    data["width"] = spec.width
    data["channel_rounding"] = {"divisor": spec.divisor, "min_ratio": spec.min_ratio}
    if getattr(spec, "output_stride", None) is not None:
        data["output_stride"] = spec.output_stride
    head = yaml.safe_dump(
        {k: v for k, v in data.items()}, sort_keys=False, default_flow_style=None, width=100
    )
    rows = "".join(
        "  - "
        + yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=1000).strip()
        + "\n"
        for entry in layers
    )
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    return f"{header}{head}layers:\n{rows}"
