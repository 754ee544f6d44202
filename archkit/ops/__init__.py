"""Operators and primitives: one registry each; a spec lowers to a :class:`Network` of them."""

from archkit.ops import _heads  # noqa: F401  (registers the head operators)
from archkit.ops._ir import INPUT, Block, Network, Node, Shape, tensor_id
from archkit.ops._lower import lower
from archkit.ops._operators import COMMON_FIELDS, NUM_CLASSES, OPERATORS, FieldRule, Operator
from archkit.ops._primitives import PRIMITIVES, Primitive, conv_out_size

__all__ = [
    "Block",
    "COMMON_FIELDS",
    "FieldRule",
    "INPUT",
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
    "tensor_id",
]
