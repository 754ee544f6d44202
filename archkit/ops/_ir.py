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

__all__ = ["Shape", "Node", "Block", "Network"]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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

    def attr(self, key: str) -> Any:
        return self.attrs[key]


@dataclass(frozen=True)
class Block:
    """One repeat of one spec row."""

    index: int
    row: Row
    repeat: int
    in_shape: Shape
    out_shape: Shape
    nodes: tuple[Node, ...]
    output: str

    @property
    def name(self) -> str:
        return f"{self.index}"


@dataclass(frozen=True)
class Network:
    """A spec lowered to blocks, ready to count or to build."""

    spec: Spec
    input_shape: Shape
    blocks: tuple[Block, ...]

    @property
    def output_shape(self) -> Shape:
        return self.blocks[-1].out_shape if self.blocks else self.input_shape

    def nodes(self):
        """Yield ``(block, node)`` pairs in execution order."""
        for block in self.blocks:
            for node in block.nodes:
                yield block, node
