"""Operators and primitives: one registry each; a spec lowers to a :class:`Network` of them.

This layer also owns validated loading (:func:`load_spec`, :func:`parse_spec`,
:func:`apply_overrides`) and its inverse, :func:`dump_spec`: the spec decoder below it checks
keys and types, lowering checks shapes.
"""

from archkit.ops import _heads  # noqa: F401  (registers the head operators)
from archkit.ops._dump import dump_spec
from archkit.ops._ir import INPUT, Block, Network, Node, Shape, tensor_id
from archkit.ops._lower import lower
from archkit.ops._operators import OPERATORS, BlockGraph, Operator
from archkit.ops._primitives import (
    PRIMITIVES,
    NoArithmetic,
    Primitive,
    conv_out_size,
    node_costs,
)
from archkit.ops._validate import apply_overrides, load_spec, parse_spec
from archkit.spec._fields import COMMON_FIELDS, NUM_CLASSES, FieldRule

__all__ = [
    "Block",
    "BlockGraph",
    "COMMON_FIELDS",
    "FieldRule",
    "INPUT",
    "NUM_CLASSES",
    "Network",
    "NoArithmetic",
    "Node",
    "OPERATORS",
    "Operator",
    "PRIMITIVES",
    "Primitive",
    "Shape",
    "apply_overrides",
    "conv_out_size",
    "dump_spec",
    "load_spec",
    "lower",
    "node_costs",
    "parse_spec",
    "tensor_id",
]
