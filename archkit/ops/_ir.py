"""The lowered form of a spec: blocks of primitive nodes with exact shapes.

A :class:`Network` is what both the PyTorch builder and the analytic counter walk, so the two
cannot disagree about the architecture; fvcore and ``sum(p.numel())`` check the counter against the
built model independently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from archkit.spec import Row, Spec

__all__ = ["Shape", "Node", "Block", "Network", "INPUT", "tensor_id"]

#: The id of the network's input tensor.
INPUT = "input"


def tensor_id(block: int, name: str) -> str:
    """The network-wide id of tensor ``name`` (a node, or ``"x"``) of block ``block``."""
    return f"{block}:{name}"


@dataclass(frozen=True, slots=True)
class Shape:
    """An activation of one image: ``channels x height x width`` (batch 1)."""

    channels: int
    height: int
    width: int

    @property
    def elements(self) -> int:
        return self.channels * self.height * self.width

    def __str__(self) -> str:
        return f"{self.height}x{self.width}x{self.channels}"


@dataclass(frozen=True, slots=True)
class Node:
    """One primitive computation inside a block (a fused conv-BN-activation, a pool, an add...).

    Tensor names are local to the block; the block's input is called ``"x"``.
    """

    name: str
    prim: str
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: ``(madds, params, bn_channels)`` once :func:`archkit.ops.node_costs` computed them.
    _costs: tuple[int, int, int] | None = field(default=None, init=False, repr=False,
                                                compare=False)

    def attr(self, key: str) -> Any:
        return self.attrs[key]


@dataclass(frozen=True)
class Block:
    """One repeat of one spec row.

    Blocks chain: a block reads the previous block's output unless ``source`` names another
    tensor (a head reading a backbone feature map, see :func:`tensor_id`). ``exports`` are local
    node names whose tensors are outputs of the whole network (a detection head's predictions).
    """

    index: int
    row: Row
    repeat: int
    in_shape: Shape
    out_shape: Shape
    nodes: tuple[Node, ...]
    output: str
    source: str | None = None
    exports: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.index}"

    @property
    def output_id(self) -> str:
        return tensor_id(self.index, self.output)


@dataclass(frozen=True)
class Network:
    """A spec lowered to blocks, ready to count or to build.

    ``outputs`` are the ids (:func:`tensor_id`) of the tensors the model returns, in order; empty
    means the last block's output (a classifier or a backbone: one output).
    """

    spec: Spec
    input_shape: Shape
    blocks: tuple[Block, ...]
    outputs: tuple[str, ...] = ()

    @property
    def output_shape(self) -> Shape:
        """The last block's output shape (the only output of a single-output network)."""
        return self.blocks[-1].out_shape if self.blocks else self.input_shape

    @property
    def output_ids(self) -> tuple[str, ...]:
        """The tensors the model returns, in order (at least one)."""
        if self.outputs:
            return self.outputs
        return (self.blocks[-1].output_id,) if self.blocks else (INPUT,)

    @property
    def output_shapes(self) -> tuple[Shape, ...]:
        return tuple(self.tensor_shape(t) for t in self.output_ids)

    def source_id(self, block: Block) -> str:
        """The tensor ``block`` reads: its ``source``, else the previous block's output."""
        if block.source is not None:
            return block.source
        return self.blocks[block.index - 1].output_id if block.index > 0 else INPUT

    def tensor_shape(self, tensor: str) -> Shape:
        """The shape of a tensor id (:data:`INPUT`, or ``"<block>:<node or x>"``)."""
        if tensor == INPUT:
            return self.input_shape
        index, name = tensor.split(":", 1)
        block = self.blocks[int(index)]
        if name == "x":
            return block.in_shape
        return next(node.out_shape for node in block.nodes if node.name == name)

    def nodes(self):
        """Yield ``(block, node)`` pairs in execution order."""
        for block in self.blocks:
            for node in block.nodes:
                yield block, node
