"""Primitive operations: shape rule, cost rule and PyTorch module side by side, in one registry.

Conventions (see docs/costs.md):
- One multiply-add (MAdd) is one multiplication plus one addition of a convolution or a fully
  connected layer: ``H_out * W_out * C_out * (C_in / groups) * k * k`` for a conv and
  ``C_in * C_out`` for a linear layer. Biases, BatchNorm, activations, pooling, residual adds,
  concatenation, channel shuffle and bilinear resizing count as 0 MAdds (the paper's and TF-slim's
  convention, and what fvcore's ``conv`` and ``linear`` handles count).
- Parameters are trainable tensors as PyTorch builds them: conv/linear weights and biases, and
  BatchNorm's weight and bias (2 per channel; running statistics are buffers, not parameters).
  BatchNorm parameters are also reported on their own, so a BN-folded count is one subtraction.
- A conv node is conv + BatchNorm + activation fused into one operation, as inference engines run
  it: its activation memory is its input and its output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from archkit.ops._ir import Node, Shape

__all__ = ["Primitive", "NoArithmetic", "PRIMITIVES", "ACTIVATIONS", "conv_out_size",
           "node_costs"]

ACTIVATIONS = ("relu6", "relu", "none")

Fail = Callable[[str, str | None], Exception]


def conv_out_size(size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """Output length of a 'same'-padded (``padding = dilation * (kernel - 1) // 2``) window."""
    padding = dilation * (kernel - 1) // 2
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class Primitive(ABC):
    """Base class: a primitive knows its output shape, its costs and its PyTorch module.

    Every cost rule is required: a subclass that does not state its MAdds, parameters and
    BatchNorm channels cannot be instantiated (so it cannot be registered), as fvcore reports an
    operator it has no handle for instead of counting it as zero. A primitive without arithmetic
    or weights says so by deriving from :class:`NoArithmetic`.
    """

    name: str = ""
    #: True when the output is a view of the input (no new activation memory).
    alias: bool = False

    @abstractmethod
    def infer(self, attrs: Mapping[str, Any], inputs: tuple[Shape, ...], fail: Fail) -> Shape:
        """The output shape, or ``fail(message, field)`` raised when the inputs do not fit."""

    @abstractmethod
    def madds(self, node: Node) -> int:
        """Multiply-adds of one image (see the conventions above)."""

    @abstractmethod
    def params(self, node: Node) -> int:
        """Parameters other than BatchNorm's."""

    @abstractmethod
    def bn_channels(self, node: Node) -> int:
        """Channels normalized by a BatchNorm inside this node (0 if none)."""

    @abstractmethod
    def module(self, node: Node) -> Any:
        """The ``torch.nn.Module`` that computes ``node`` (imports torch)."""

    def costs(self, node: Node) -> tuple[int, int, int]:
        """``(madds, params, bn_channels)`` in one call (what a counter of every node wants)."""
        return self.madds(node), self.params(node), self.bn_channels(node)


class NoArithmetic(Primitive, ABC):
    """A primitive with no multiply-adds and no parameters by the conventions above (pooling,
    residual adds, concatenation, channel shuffle, bilinear resizing, dropout)."""

    def madds(self, node: Node) -> int:
        return 0

    def params(self, node: Node) -> int:
        return 0

    def bn_channels(self, node: Node) -> int:
        return 0

    def costs(self, node: Node) -> tuple[int, int, int]:
        return 0, 0, 0


class Conv(Primitive):
    """Conv2d (+ BatchNorm) (+ activation), 'same' padding."""

    name = "conv"

    def infer(self, attrs, inputs, fail):
        (x,) = inputs
        groups = attrs["groups"]
        out = attrs["out_channels"]
        if x.channels % groups:
            raise fail(
                f"groups={groups} must divide the input channels, got {x.channels}", "groups"
            )
        if out % groups:
            raise fail(f"groups={groups} must divide the output channels, got {out}", "groups")
        k, s, d = attrs["kernel"], attrs["stride"], attrs.get("dilation", 1)
        h, w = conv_out_size(x.height, k, s, d), conv_out_size(x.width, k, s, d)
        if h < 1 or w < 1:
            raise fail(f"spatial size reaches zero ({x.height}x{x.width} in, kernel {k})", "kernel")
        return Shape(out, h, w)

    def costs(self, node):
        # The one home of the conv formulas: a latency prediction reads them for every new
        # kernel, so the attributes are read once.
        (x,) = node.in_shapes
        y = node.out_shape
        attrs = node.attrs
        out, k = y.channels, attrs["kernel"]
        weight = out * (x.channels // attrs["groups"]) * k * k
        return (y.height * y.width * weight, weight + (out if attrs["bias"] else 0),
                out if attrs["bn"] else 0)

    def madds(self, node):
        return self.costs(node)[0]

    def params(self, node):
        return self.costs(node)[1]

    def bn_channels(self, node):
        return self.costs(node)[2]

    def module(self, node):
        from archkit.ops import _modules

        return _modules.conv_bn_act(node)


class Linear(Primitive):
    """Fully connected layer on a 1x1 map (flattens its input)."""

    name = "linear"

    def infer(self, attrs, inputs, fail):
        (x,) = inputs
        if (x.height, x.width) != (1, 1):
            raise fail(
                f"a fully connected layer needs a 1x1 input, got {x.height}x{x.width} "
                "(add an avgpool row before it)",
                "op",
            )
        return Shape(attrs["out_features"], 1, 1)

    def madds(self, node):
        return node.in_shapes[0].channels * node.out_shape.channels

    def params(self, node):
        return self.madds(node) + (node.out_shape.channels if node.attr("bias") else 0)

    def bn_channels(self, node):
        return 0

    def module(self, node):
        from archkit.ops import _modules

        return _modules.classifier(node)


class GlobalAvgPool(NoArithmetic):
    name = "global_avgpool"

    def infer(self, attrs, inputs, fail):
        return Shape(inputs[0].channels, 1, 1)

    def module(self, node):
        import torch.nn as nn

        return nn.AdaptiveAvgPool2d(1)


class Pool(NoArithmetic):
    """Max or average pooling with a window, 'same' padding (avg counts the padding, as PyTorch)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def infer(self, attrs, inputs, fail):
        (x,) = inputs
        k, s = attrs["kernel"], attrs["stride"]
        h, w = conv_out_size(x.height, k, s), conv_out_size(x.width, k, s)
        if h < 1 or w < 1:
            raise fail(f"spatial size reaches zero ({x.height}x{x.width} in, kernel {k})", "kernel")
        return Shape(x.channels, h, w)

    def module(self, node):
        import torch.nn as nn

        k, s = node.attr("kernel"), node.attr("stride")
        cls = nn.MaxPool2d if self.name == "maxpool" else nn.AvgPool2d
        return cls(k, stride=s, padding=(k - 1) // 2)


class Add(NoArithmetic):
    """Residual addition (+ activation)."""

    name = "add"

    def infer(self, attrs, inputs, fail):
        a, b = inputs
        if a != b:
            raise fail(f"a shortcut needs equal shapes, got {a} and {b}", "c")
        return a

    def module(self, node):
        from archkit.ops import _modules

        return _modules.Add(node.attr("activation"))


class Concat(NoArithmetic):
    """Channel concatenation of two or more tensors (+ activation)."""

    name = "concat"

    def infer(self, attrs, inputs, fail):
        first = inputs[0]
        for other in inputs[1:]:
            if (other.height, other.width) != (first.height, first.width):
                raise fail(f"concatenation needs equal spatial sizes, got {first} and {other}",
                           "s")
        return Shape(sum(x.channels for x in inputs), first.height, first.width)

    def module(self, node):
        from archkit.ops import _modules

        return _modules.Concat(node.attr("activation"))


class Resize(NoArithmetic):
    """Bilinear resizing to a fixed ``height x width`` (DeepLab's upsampling; 0 MAdds by the
    convention above, like pooling)."""

    name = "resize"

    def infer(self, attrs, inputs, fail):
        return Shape(inputs[0].channels, attrs["height"], attrs["width"])

    def module(self, node):
        from archkit.ops import _modules

        return _modules.Resize((node.attr("height"), node.attr("width")),
                             node.attr("align_corners"))


class Shuffle(NoArithmetic):
    """ShuffleNet's channel shuffle: a permutation, no arithmetic."""

    name = "shuffle"

    def infer(self, attrs, inputs, fail):
        (x,) = inputs
        if x.channels % attrs["groups"]:
            raise fail(f"groups={attrs['groups']} must divide {x.channels} channels", "groups")
        return x

    def module(self, node):
        from archkit.ops import _modules

        return _modules.ChannelShuffle(node.attr("groups"))


class Dropout(NoArithmetic):
    name = "dropout"
    alias = True

    def infer(self, attrs, inputs, fail):
        return inputs[0]

    def module(self, node):
        import torch.nn as nn

        return nn.Dropout(node.attr("p"))


PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in (
        Conv(),
        Linear(),
        GlobalAvgPool(),
        Pool("maxpool"),
        Pool("avgpool"),
        Add(),
        Concat(),
        Resize(),
        Shuffle(),
        Dropout(),
    )
}


def node_costs(node: Node) -> tuple[int, int, int]:
    """``(madds, params, bn_channels)`` of ``node`` (:meth:`Primitive.costs`), computed once per
    node: a search counts every candidate, then its latency model reads the same costs as
    kernel features of the same lowered nodes."""
    costs = node._costs
    if costs is None:
        costs = PRIMITIVES[node.prim].costs(node)
        object.__setattr__(node, "_costs", costs)  # (frozen: set once, not compared)
    return costs
