"""Operators and primitives: one registry each; a spec lowers to a :class:`Network` of them."""

from archkit.ops._ir import Block, Network, Node, Shape
from archkit.ops._lower import lower
from archkit.ops._operators import NUM_CLASSES, OPERATORS, FieldRule, Operator
from archkit.ops._primitives import PRIMITIVES, Primitive, conv_out_size

__all__ = [
    "Block",
    "FieldRule",
    "NUM_CLASSES",
    "Network",
    "Node",
    "OPERATORS",
    "Operator",
    "PRIMITIVES",
    "Primitive",
    "Shape",
    "conv_out_size",
    "lower",
]
