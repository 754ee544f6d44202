"""Lower a spec to a :class:`~archkit.ops.Network`: every repeat of every row, with exact shapes."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from archkit.errors import SpecError
from archkit.ops._ir import INPUT, Block, Network, Shape, tensor_id
from archkit.ops._operators import OPERATORS, BlockGraph
from archkit.spec._model import Row, Spec

__all__ = ["lower"]

_AFTER_FC = ("fc", "dropout")


@lru_cache(maxsize=512)
def lower(spec: Spec) -> Network:
    """Expand ``spec`` into blocks of primitive nodes, validating every shape on the way.

    Rows chain (each reads the previous row's output) unless a row reads a named feature map with
    ``from:``. With ``spec.output_stride`` set, the backbone's strides follow TF-slim's atrous
    rule (DeepLab, Section 6.3): once the product of the strides so far equals the output stride,
    every later block runs at stride 1 with its (depthwise) convolution dilated by the product of
    the strides it replaced before it; the block that first drops its stride keeps the previous
    dilation. The backbone ends at the first head row (``aspp``, ``ssd_head``, ``upsample``):
    rows from there on run as written.

    The network's outputs are the tensors that heads export (box and class maps of SSD prediction
    layers) and, if the last block exports nothing, the last block's output.

    Raises:
        SpecError: a row does not fit the tensor it receives (groups that do not divide the
            channels, a spatial size that reaches zero, a shortcut between unequal shapes, a
            ``from:`` that names no earlier feature map...).
    """
    input_shape = Shape(spec.in_channels, spec.resolution, spec.resolution)
    blocks: list[Block] = []
    named: dict[str, list[Block]] = {}
    shapes: dict[str, Shape] = {INPUT: input_shape}  # every tensor id so far
    previous = INPUT
    after_fc = False
    current_stride, rate = 1, 1
    in_backbone = spec.output_stride is not None
    for row in spec.rows:
        op = OPERATORS[row.op]
        in_backbone = in_backbone and not op.head

        def fail(message: str, field: str | None, row=row) -> SpecError:
            return SpecError(message, source=spec.source, row=row.index, op=row.op, field=field)

        if after_fc and row.op not in _AFTER_FC:
            raise fail("only fc or dropout rows may follow an fc row", "op")
        op.check(row, fail)
        if row.name is not None and row.name in named:
            raise fail(f"the name {row.name!r} is already used by row "
                       f"{named[row.name][0].row.index}", "name")
        source = previous if row.from_feature is None else _resolve(row.from_feature, named, fail)
        first = len(blocks)
        for repeat in range(row.repeats):
            stride = row.stride if repeat == 0 else 1
            dilation, replaced = 1, 1
            if in_backbone and current_stride >= spec.output_stride:
                stride, dilation, rate, replaced = 1, rate, rate * stride, stride
            else:
                current_stride *= stride
            lowered_row = _dilated(row, dilation, replaced, op, fail)
            graph = BlockGraph(shapes[source], fail)
            output = op.lower(graph, spec, lowered_row, repeat, stride)
            block = Block(len(blocks), row, repeat, graph.shapes["x"], graph.shapes[output],
                          tuple(graph.nodes), output, source, op.exports)
            blocks.append(block)
            shapes.update((tensor_id(block.index, n), s) for n, s in graph.shapes.items())
            source = block.output_id
        if row.name is not None:
            named[row.name] = blocks[first:]
        previous = source
        after_fc = after_fc or row.op == "fc"
    outputs = [tensor_id(b.index, name) for b in blocks for name in b.exports]
    if blocks and blocks[-1].output_id not in outputs:
        outputs.append(blocks[-1].output_id)
    _check_all_used(blocks, outputs, spec)
    return Network(spec, input_shape, tuple(blocks), tuple(outputs))


def _check_all_used(blocks: list[Block], outputs: list[str], spec: Spec) -> None:
    """Every computed tensor must be read or returned: a tracer (fvcore, ONNX, torch.export)
    drops dead layers, so counting them would disagree with every runtime."""
    read = set(outputs) | {b.source for b in blocks}
    for block in blocks:
        read.update(tensor_id(block.index, i) for n in block.nodes for i in n.inputs)
    for block in blocks:
        for node in block.nodes:
            if tensor_id(block.index, node.name) not in read:
                what = ("output" if node.name == block.output else f"node {node.name!r}")
                raise SpecError(
                    f"the {what} of repeat {block.repeat} is never used (no later row reads it "
                    "and it is not an output of the network): remove the row, or read it with "
                    "from:", source=spec.source, row=block.row.index, op=block.row.op,
                )


def _dilated(row: Row, dilation: int, replaced_stride: int, op, fail) -> Row:
    """``row`` with its dilation multiplied by the output-stride rule's rate."""
    attrs = {rule.attr for rule in op.fields}
    if "dilation" not in attrs:
        if "stride" in attrs and (dilation > 1 or replaced_stride > 1):
            # A strided window that cannot be dilated (a pool, a shuffle unit) would change the
            # receptive field silently.
            raise fail(f"output_stride replaces strides by dilation here, but a {row.op} row "
                       "cannot be dilated (raise output_stride or move the row before it)", "s")
        return row  # no spatial window (pooling to 1x1, fc, heads, upsampling)
    if dilation == 1 or row.kernel == 1:  # TF-slim leaves 1x1 convolutions undilated
        return row
    return dataclasses.replace(row, dilation=(row.dilation or 1) * dilation)


def _resolve(reference: str, named: dict[str, list[Block]], fail) -> str:
    """The tensor id a ``from:`` reference names (``name``, ``name.repeat`` or
    ``name.repeat.node``)."""
    name, _, rest = reference.partition(".")
    if name not in named:
        known = ", ".join(named) or "none"
        raise fail(f"no earlier row is named {name!r} (named rows so far: {known})", "from")
    row_blocks = named[name]
    if not rest:
        return row_blocks[-1].output_id
    repeat_text, _, node = rest.partition(".")
    repeat = int(repeat_text)
    if repeat >= len(row_blocks):
        raise fail(f"{name!r} has {len(row_blocks)} repeat(s) (0 to {len(row_blocks) - 1}), "
                   f"got {repeat}", "from")
    block = row_blocks[repeat]
    if not node:
        return block.output_id
    nodes = [n.name for n in block.nodes]
    if node not in nodes:
        raise fail(f"block {name}.{repeat} ({block.row.op}) has no node {node!r} "
                   f"(nodes: {', '.join(nodes)})", "from")
    return tensor_id(block.index, node)
