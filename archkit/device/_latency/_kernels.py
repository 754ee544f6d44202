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

__all__ = [
    "FEATURES",
    "FEATURES_VERSION",
    "BYTES_PER_ELEMENT",
    "block_kernels",
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
    groups = node.attrs["groups"]
    c_in = node.in_shapes[0].channels
    if groups > 1 and groups == c_in == node.out_shape.channels:
        return "conv_dw"
    if groups > 1:
        return "conv_grouped"
    return "conv_1x1" if node.attrs["kernel"] == 1 else "conv_kxk"


def _features(node: Any, feeds_add: bool, primitives: Any) -> tuple[float, ...]:
    prim = primitives[node.prim]
    shapes = node.in_shapes
    x = shapes[0]
    y = node.out_shape
    attrs = node.attrs
    if len(shapes) == 1:
        in_channels, in_elements = x.channels, x.channels * x.height * x.width
    else:
        in_channels = sum(s.channels for s in shapes)
        in_elements = sum(s.channels * s.height * s.width for s in shapes)
    weight_elements = prim.params(node) + 2 * prim.bn_channels(node)
    return (
        float(in_channels),
        float(y.channels),
        float(attrs.get("kernel", 0)),
        float(attrs.get("stride", 1)),
        float(attrs.get("groups", 1)),
        float(x.height),
        float(x.width),
        float(y.height),
        float(y.width),
        float(prim.madds(node)),
        float(in_elements * BYTES_PER_ELEMENT),
        float(y.channels * y.height * y.width * BYTES_PER_ELEMENT),
        float(weight_elements * BYTES_PER_ELEMENT),
        0.0 if attrs.get("activation", "none") == "none" else 1.0,
        1.0 if feeds_add else 0.0,
        float(len(node.inputs)),
    )


def block_kernels(block: Any) -> list[tuple[str, str, tuple[float, ...]]]:
    """``(node name, kind, features)`` for every node of one lowered block, in order."""
    from archkit.ops import PRIMITIVES

    read_by_add = {i for n in block.nodes if n.prim == "add" for i in n.inputs}
    return [
        (node.name, kernel_kind(node), _features(node, node.name in read_by_add, PRIMITIVES))
        for node in block.nodes
    ]


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
