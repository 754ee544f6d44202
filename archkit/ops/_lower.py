"""Lower a spec to a :class:`~archkit.ops.Network`: every repeat of every row, with exact shapes."""

from __future__ import annotations

from functools import lru_cache

from archkit.errors import SpecError
from archkit.ops._ir import Block, Network, Shape
from archkit.ops._operators import OPERATORS, BlockGraph
from archkit.spec._model import Spec

__all__ = ["lower"]

_AFTER_FC = ("fc", "dropout")


@lru_cache(maxsize=512)
def lower(spec: Spec) -> Network:
    """Expand ``spec`` into blocks of primitive nodes, validating every shape on the way.

    Raises:
        SpecError: a row does not fit the tensor it receives (groups that do not divide the
            channels, a spatial size that reaches zero, a shortcut between unequal shapes...).
    """
    shape = Shape(spec.in_channels, spec.resolution, spec.resolution)
    input_shape = shape
    blocks: list[Block] = []
    after_fc = False
    for row in spec.rows:
        op = OPERATORS[row.op]

        def fail(message: str, field: str | None, row=row) -> SpecError:
            return SpecError(message, source=spec.source, row=row.index, op=row.op, field=field)

        if after_fc and row.op not in _AFTER_FC:
            raise fail("only fc or dropout rows may follow an fc row", "op")
        for repeat in range(row.repeats):
            stride = row.stride if repeat == 0 else 1
            graph = BlockGraph(shape, fail)
            output = op.lower(graph, spec, row, repeat, stride)
            out_shape = graph.shapes[output]
            blocks.append(
                Block(len(blocks), row, repeat, shape, out_shape, tuple(graph.nodes), output)
            )
            shape = out_shape
        after_fc = after_fc or row.op == "fc"
    return Network(spec, input_shape, tuple(blocks))
