"""Kernels: the lowered network's primitive nodes as rows of shape features.

A kernel here is one primitive node of :func:`archkit.ops.lower` (a conv with its BatchNorm and
activation, an add, a pool, a linear layer...). Which of them a runtime fuses is not assumed: the
per-kernel times measured from whole-network runs say it (a residual add that onnxruntime folds
into the convolution before it is measured at 0 us, and the convolution that absorbed it is
measured with the add's cost), and ``feeds_add`` lets the regressor learn that from the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from archkit.ops import node_costs

__all__ = [
    "FEATURES",
    "FEATURES_VERSION",
    "BYTES_PER_ELEMENT",
    "block_counts",
    "block_kernels",
    "block_rows",
    "kernel_kind",
    "kernel_rows",
    "network_fingerprint",
]

#: Bumped whenever a feature changes meaning: a model file with another version is refused.
FEATURES_VERSION = 1

#: float32 activations and weights, as every runtime here runs them.
BYTES_PER_ELEMENT = 4

#: The numeric features of one kernel, in the order of a feature row.
FEATURES = (
    "in_channels",
    "out_channels",
    "kernel",
    "stride",
    "groups",
    "in_height",
    "in_width",
    "out_height",
    "out_width",
    "madds",
    "in_bytes",
    "out_bytes",
    "weight_bytes",
    "activation",
    "feeds_add",
    "inputs",
)


def kernel_kind(node: Any) -> str:
    """The kind of kernel a node runs as (a regressor is fitted per kind).

    Convolutions are split the way runtimes implement them differently: ``conv_dw``
    (depthwise), ``conv_1x1`` (pointwise), ``conv_kxk`` (dense, kernel > 1) and ``conv_grouped``.
    Every other primitive is its own kind (``add``, ``linear``, ``global_avgpool``...).
    """
    if node.prim != "conv":
        return node.prim
    return _conv_kind(node.attrs["groups"], node.attrs["kernel"], node.in_shapes[0].channels,
                      node.out_shape.channels)


def _conv_kind(groups: int, kernel: int, in_channels: int, out_channels: int) -> str:
    if groups == 1:
        return "conv_1x1" if kernel == 1 else "conv_kxk"
    return "conv_dw" if groups == in_channels == out_channels else "conv_grouped"


def block_rows(block: Any, kind_ids: Any = None) -> list[tuple]:
    """One tuple per node of one lowered block: its features as integers (in :data:`FEATURES`
    order), then its kind, as ``kind_ids[kind]`` where given (the rows a prediction batches;
    a kind it lacks raises ``KeyError``) or as the kind's name.

    Every value is an integer well below 2**53, so ``float`` of each is exact.
    """
    # A cold prediction calls this for every block it has not seen (MobileNetV2: 17 blocks,
    # 55 nodes): each attribute is read once, the costs are those a search's count of the
    # candidate already computed (node_costs), no float is made here, and the row is one
    # tuple display.
    nodes = block.nodes
    read_by_add = {i for n in nodes if n.prim == "add" for i in n.inputs}
    rows = []
    for node in nodes:
        shapes = node.in_shapes
        x = shapes[0]
        y = node.out_shape
        attrs = node.attrs
        prim = node.prim
        x_channels, x_height, x_width = x.channels, x.height, x.width
        out_channels, out_height, out_width = y.channels, y.height, y.width
        if len(shapes) == 1:
            in_channels, in_elements = x_channels, x_channels * x_height * x_width
        else:
            in_channels = sum(s.channels for s in shapes)
            in_elements = sum(s.channels * s.height * s.width for s in shapes)
        madds, params, bn_channels = node_costs(node)
        if prim == "conv":
            kernel, stride, groups = attrs["kernel"], attrs["stride"], attrs["groups"]
            kind = _conv_kind(groups, kernel, x_channels, out_channels)
            active = attrs["activation"] != "none"
        else:
            get = attrs.get
            kernel, stride, groups = get("kernel", 0), get("stride", 1), get("groups", 1)
            kind = prim
            active = get("activation", "none") != "none"
        rows.append((
            in_channels,
            out_channels,
            kernel,
            stride,
            groups,
            x_height,
            x_width,
            out_height,
            out_width,
            madds,
            in_elements * BYTES_PER_ELEMENT,
            out_channels * out_height * out_width * BYTES_PER_ELEMENT,
            (params + 2 * bn_channels) * BYTES_PER_ELEMENT,
            1 if active else 0,
            1 if node.name in read_by_add else 0,
            len(node.inputs),
            kind if kind_ids is None else kind_ids[kind],
        ))
    return rows


def block_counts(block: Any) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(node name, kind, features as integers)`` for every node of one lowered block."""
    return [(node.name, row[-1], row[:-1])
            for node, row in zip(block.nodes, block_rows(block), strict=True)]


def block_kernels(block: Any) -> list[tuple[str, str, tuple[float, ...]]]:
    """``(node name, kind, features)`` for every node of one lowered block, in order."""
    return [(name, kind, tuple(map(float, counts))) for name, kind, counts in block_counts(block)]


def kernel_rows(network: Any) -> Iterator[tuple[int, str, str, tuple[float, ...]]]:
    """``(block index, node name, kind, features)`` for every node of a lowered network."""
    for block in network.blocks:
        for name, kind, features in block_kernels(block):
            yield block.index, name, kind, features


def network_fingerprint(network: Any) -> str:
    """A short digest of what a runtime executes: the input shape and every kernel's features.

    Two specs that lower to the same kernels (the same network drawn from two spaces) share it,
    so ``evaluate`` can skip every network a model was built from.
    """
    digest = hashlib.sha1(repr(network.input_shape).encode())
    for row in kernel_rows(network):
        digest.update(repr(row).encode())
    return digest.hexdigest()[:16]
