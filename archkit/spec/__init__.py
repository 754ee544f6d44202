"""Declarative specs: Table-2-style rows decoded once into frozen dataclasses."""

from archkit.spec._load import apply_overrides, load_spec, parse_spec
from archkit.spec._model import WIDTH_SCALING, Row, Spec, make_divisible, scale_channels

__all__ = [
    "Row",
    "Spec",
    "WIDTH_SCALING",
    "apply_overrides",
    "load_spec",
    "make_divisible",
    "parse_spec",
    "scale_channels",
]
