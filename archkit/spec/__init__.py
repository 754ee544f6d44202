"""Declarative specs: Table-2-style rows decoded once into frozen dataclasses.

The modules of this package import no other archkit layer. :func:`load_spec`, :func:`parse_spec`
and :func:`apply_overrides` also check that the network lowers (and :func:`dump_spec` writes a
spec back with the operators' field rules), which needs the operators one
layer up: they live in ``archkit.ops`` and are re-exported here (and from ``archkit``), imported
on first use so that importing this package imports nothing above it.
"""

from typing import Any

from archkit.spec._fields import COMMON_FIELDS, NUM_CLASSES, FieldRule
from archkit.spec._load import decode_spec
from archkit.spec._model import WIDTH_SCALING, Row, Spec, make_divisible, scale_channels

__all__ = [
    "COMMON_FIELDS",
    "FieldRule",
    "NUM_CLASSES",
    "Row",
    "Spec",
    "WIDTH_SCALING",
    "apply_overrides",
    "decode_spec",
    "dump_spec",
    "load_spec",
    "make_divisible",
    "parse_spec",
    "scale_channels",
]

_VALIDATED = ("apply_overrides", "dump_spec", "load_spec", "parse_spec")


def __getattr__(name: str) -> Any:
    if name in _VALIDATED:
        import archkit.ops

        return getattr(archkit.ops, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
