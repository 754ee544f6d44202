"""Spec operators (one per row kind): accepted fields and lowering to primitive nodes.

Each operator says once which YAML keys a row may carry, what they must satisfy and how one repeat
of the row becomes primitive nodes. The spec loader, the builder and the counter all go through
:data:`OPERATORS`; an operator that is not registered is an error, never a silent zero.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from archkit.errors import SpecError
from archkit.ops._ir import Node, Shape
from archkit.ops._primitives import ACTIVATIONS, PRIMITIVES
from archkit.spec._fields import COMMON_FIELDS, NUM_CLASSES, FieldRule
from archkit.spec._model import WIDTH_SCALING, Row, Spec, make_divisible

__all__ = ["FieldRule", "Operator", "OPERATORS", "BlockGraph", "NUM_CLASSES", "COMMON_FIELDS"]

MAX_CHANNELS = 16384
MAX_REPEATS = 64
MAX_KERNEL = 15
MAX_EXPANSION = 64.0


def _c(default: Any = None, *, classes: bool = False) -> FieldRule:
    return FieldRule("c", "out_channels", int, default, minimum=1, maximum=MAX_CHANNELS,
                     allow_classes=classes, help="output channels")


_N = FieldRule("n", "repeats", int, 1, minimum=1, maximum=MAX_REPEATS, help="repeats")
_S = FieldRule("s", "stride", int, 1, choices=(1, 2), help="stride of the first repeat")
_T = FieldRule("t", "expansion", float, 6.0, minimum=0.0, maximum=MAX_EXPANSION,
               exclusive_minimum=True, help="expansion ratio")


def _kernel(default: int) -> FieldRule:
    return FieldRule("kernel", "kernel", int, default, minimum=1, maximum=MAX_KERNEL)


def _act(default: str) -> FieldRule:
    return FieldRule("activation", "activation", str, default, choices=ACTIVATIONS)


def _scaling(default: str) -> FieldRule:
    return FieldRule("width_scaling", "width_scaling", str, default, choices=WIDTH_SCALING)


_GROUPS = FieldRule("groups", "groups", int, 1, minimum=1, maximum=MAX_CHANNELS)
_DILATION = FieldRule("dilation", "dilation", int, 1, minimum=1, maximum=32)

class BlockGraph:
    """Collects the nodes of one block, inferring each output shape as it goes."""

    def __init__(self, in_shape: Shape, fail: Callable[[str, str | None], SpecError]) -> None:
        self.shapes: dict[str, Shape] = {"x": in_shape}
        self.nodes: list[Node] = []
        self.fail = fail

    def add(self, name: str, prim: str, inputs: tuple[str, ...] | str = "x", **attrs: Any) -> str:
        inputs = (inputs,) if isinstance(inputs, str) else inputs
        in_shapes = tuple(self.shapes[i] for i in inputs)
        out = PRIMITIVES[prim].infer(attrs, in_shapes, self.fail)
        self.nodes.append(Node(name, prim, inputs, in_shapes, out, MappingProxyType(attrs)))
        self.shapes[name] = out
        return name

    def conv(self, name, src, out, *, kernel=1, stride=1, groups=1, activation="relu6",
             bn=True, bias=False, dilation=1) -> str:
        return self.add(name, "conv", src, out_channels=out, kernel=kernel, stride=stride,
                        groups=groups, activation=activation, bn=bn, bias=bias, dilation=dilation)


class Operator:
    """A row kind. Subclasses set ``name``, ``fields`` and implement :meth:`lower`."""

    name: str = ""
    fields: tuple[FieldRule, ...] = ()
    #: Section 5.1: the block may run as one operation whose inner tensors are never materialized.
    fusable: bool = False
    #: Node names whose tensors are outputs of the whole network (a prediction head's box and
    #: class maps). Empty for backbone operators: the network's output is its last tensor.
    exports: tuple[str, ...] = ()
    #: A task head (detection, segmentation): the backbone, which the output-stride rule
    #: dilates, ends at the first head row.
    head: bool = False

    def check(self, row: Row, fail: Callable[[str, str | None], SpecError]) -> None:
        """Cross-field checks that need no input shape."""

    def out_channels(self, spec: Spec, row: Row) -> int | None:
        """Channels after the width multiplier; ``c: num_classes`` is the spec's class count."""
        if row.out_channels is None:
            return None
        if row.out_channels == NUM_CLASSES:
            return spec.num_classes
        return spec.channels(row)

    def lower(self, g: BlockGraph, spec: Spec, row: Row, repeat: int, stride: int) -> str:
        """Add one repeat's nodes to ``g``; return the output tensor name."""
        raise NotImplementedError

    def fused_scratch_elements(self, nodes: tuple[Node, ...]) -> int:
        """Working memory of the block run as one operation (only for ``fusable`` operators)."""
        return 0


class Conv2d(Operator):
    """Regular convolution with BatchNorm and activation (the stem, the last 1x1, a classifier)."""

    name = "conv2d"
    fields = (_c(classes=True), _N, _S, _kernel(3), _GROUPS, _DILATION, _act("relu6"),
              FieldRule("bn", "batchnorm", bool, True), FieldRule("bias", "bias", bool, False),
              _scaling("full"))

    def lower(self, g, spec, row, repeat, stride):
        return g.conv("conv", "x", self.out_channels(spec, row), kernel=row.kernel, stride=stride,
                      groups=row.groups, activation=row.activation, bn=row.batchnorm,
                      bias=row.bias, dilation=row.dilation)


class Bottleneck(Operator):
    """MobileNetV2's inverted residual with linear bottleneck (the paper's Table 1).

    The hidden width is ``make_divisible(C_in * t, divisor)`` (TF-slim's ``expand_input_by_factor``;
    torchvision uses ``round(C_in * t)``, identical whenever ``C_in * t`` is a multiple of the
    divisor, as in every published MobileNetV2). No expansion conv when ``t == 1``. The shortcut is
    used when the stride is 1 and the input and output channels match.
    """

    name = "bottleneck"
    fusable = True
    fields = (_T, _c(), _N, _S, _kernel(3), _DILATION, _act("relu6"), _scaling("full"))

    def lower(self, g, spec, row, repeat, stride):
        c_in = g.shapes["x"].channels
        out = self.out_channels(spec, row)
        t = row.expansion
        hidden = c_in if t == 1 else make_divisible(c_in * t, spec.divisor, spec.min_ratio)
        src = "x"
        if t != 1:
            src = g.conv("expand", src, hidden, activation=row.activation)
        src = g.conv("depthwise", src, hidden, kernel=row.kernel, stride=stride, groups=hidden,
                     activation=row.activation, dilation=row.dilation)
        src = g.conv("project", src, out, activation="none")
        if stride == 1 and c_in == out:
            src = g.add("add", "add", ("x", src), activation="none")
        return src

    def fused_scratch_elements(self, nodes):
        # t-way split with n = t (Section 5.1): one channel of the expanded tensor and one of the
        # depthwise output are alive at a time.
        depthwise = next(n for n in nodes if n.name == "depthwise")
        x = depthwise.in_shapes[0]
        y = depthwise.out_shape
        return x.height * x.width + y.height * y.width


class DepthwiseSeparable(Operator):
    """MobileNetV1's layer: 3x3 depthwise conv then 1x1 pointwise conv, each with BN and ReLU."""

    name = "dwsep"
    fields = (_c(), _N, _S, _kernel(3), _DILATION, _act("relu6"), _scaling("full"))

    def lower(self, g, spec, row, repeat, stride):
        c_in = g.shapes["x"].channels
        src = g.conv("depthwise", "x", c_in, kernel=row.kernel, stride=stride, groups=c_in,
                     activation=row.activation, dilation=row.dilation)
        return g.conv("pointwise", src, self.out_channels(spec, row), activation=row.activation)


class ShuffleUnit(Operator):
    """ShuffleNet v1 unit: 1x1 group conv, channel shuffle, 3x3 depthwise, 1x1 group conv.

    ``t`` is the bottleneck ratio of the *output* channels (ShuffleNet: 1/4). Stride 1 adds the
    input (shortcut, then ReLU); stride 2 concatenates a 3x3 average-pooled input (so the branch
    produces ``c - C_in`` channels). ``group_first_pw: false`` makes the first pointwise conv of the
    row's first repeat ungrouped (ShuffleNet does this where the input has few channels, stage 2).
    """

    name = "shuffle"
    fields = (_c(), _N, _S, FieldRule("groups", "groups", int, 3, minimum=1, maximum=64),
              FieldRule("t", "expansion", float, 0.25, minimum=0.0, maximum=1.0,
                        exclusive_minimum=True, help="bottleneck ratio of the output channels"),
              _kernel(3), FieldRule("group_first_pw", "group_first_pointwise", bool, True),
              _act("relu"), _scaling("full"))

    def lower(self, g, spec, row, repeat, stride):
        c_in = g.shapes["x"].channels
        out = self.out_channels(spec, row)
        groups = row.groups
        mid = int(out * row.expansion)
        branch = out - c_in if stride == 2 else out
        if stride == 1 and c_in != out:
            raise g.fail(f"a stride-1 shuffle unit needs input channels ({c_in}) == c ({out})", "c")
        if branch < 1:
            raise g.fail(f"c ({out}) must exceed the input channels ({c_in}) at stride 2", "c")
        if mid < 1:
            raise g.fail(f"bottleneck width c * t = {out} * {row.expansion} is below 1", "t")
        for what, value in (("bottleneck width (c * t)", mid), ("branch output", branch)):
            if value % groups:
                raise g.fail(f"groups={groups} must divide the {what}, got {value}", "groups")
        first_groups = 1 if (repeat == 0 and not row.group_first_pointwise) else groups
        src = g.conv("compress", "x", mid, groups=first_groups, activation=row.activation)
        if groups > 1:
            src = g.add("shuffle", "shuffle", src, groups=groups)
        src = g.conv("depthwise", src, mid, kernel=row.kernel, stride=stride, groups=mid,
                     activation="none")
        src = g.conv("expand", src, branch, groups=groups, activation="none")
        if stride == 1:
            return g.add("add", "add", ("x", src), activation=row.activation)
        pooled = g.add("pool", "avgpool", "x", kernel=3, stride=2)
        return g.add("concat", "concat", (pooled, src), activation=row.activation)


class MaxPool(Operator):
    name = "maxpool"
    fields = (_kernel(3), _S)

    def lower(self, g, spec, row, repeat, stride):
        return g.add("pool", "maxpool", "x", kernel=row.kernel, stride=stride)


class AvgPool(Operator):
    """Global average pooling (Table 2's ``avgpool 7x7`` at 224)."""

    name = "avgpool"
    fields = ()

    def lower(self, g, spec, row, repeat, stride):
        return g.add("pool", "global_avgpool", "x")


class Dropout(Operator):
    name = "dropout"
    fields = (FieldRule("p", "dropout", float, 0.2, minimum=0.0, maximum=0.99),)

    def lower(self, g, spec, row, repeat, stride):
        return g.add("dropout", "dropout", "x", p=row.dropout)


class FullyConnected(Operator):
    """Fully connected classifier on a 1x1 map; ``c`` defaults to the spec's ``num_classes``."""

    name = "fc"
    fields = (
        _c(NUM_CLASSES, classes=True), FieldRule("bias", "bias", bool, True), _scaling("none"),
    )

    def lower(self, g, spec, row, repeat, stride):
        return g.add("fc", "linear", "x", out_features=self.out_channels(spec, row), bias=row.bias)


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Conv2d(),
        Bottleneck(),
        DepthwiseSeparable(),
        ShuffleUnit(),
        MaxPool(),
        AvgPool(),
        Dropout(),
        FullyConnected(),
    )
}
