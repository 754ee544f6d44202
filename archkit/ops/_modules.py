"""PyTorch modules for the primitives (imported only when a model is built: this module imports
torch)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from archkit.ops._ir import Node


def activation(name: str) -> nn.Module:
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    return nn.Identity()


def conv_bn_act(node: Node) -> nn.Sequential:
    """``conv`` -> ``bn`` -> ``act`` as a named Sequential (torchvision's Conv2dNormActivation)."""
    (x,) = node.in_shapes
    k, d = node.attr("kernel"), node.attr("dilation")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = nn.Conv2d(
        x.channels,
        node.out_shape.channels,
        k,
        stride=node.attr("stride"),
        padding=d * (k - 1) // 2,
        dilation=d,
        groups=node.attr("groups"),
        bias=node.attr("bias"),
    )
    if node.attr("bn"):
        layers["bn"] = nn.BatchNorm2d(node.out_shape.channels)
    if node.attr("activation") != "none":
        layers["act"] = activation(node.attr("activation"))
    return nn.Sequential(layers)


class Classifier(nn.Linear):
    """``nn.Linear`` that flattens an ``N x C x 1 x 1`` input first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.flatten(x, 1))


def classifier(node: Node) -> Classifier:
    return Classifier(node.in_shapes[0].channels, node.out_shape.channels, bias=node.attr("bias"))


class Add(nn.Module):
    def __init__(self, act: str) -> None:
        super().__init__()
        self.act = activation(act)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.act(a + b)


class Concat(nn.Module):
    def __init__(self, act: str) -> None:
        super().__init__()
        self.act = activation(act)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.act(torch.cat(tensors, dim=1))


class Resize(nn.Module):
    """Bilinear resizing to a fixed size (``align_corners`` as TensorFlow's ``resize_bilinear``)."""

    def __init__(self, size: tuple[int, int], align_corners: bool) -> None:
        super().__init__()
        self.size = size
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, size=self.size, mode="bilinear",
                                         align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"size={self.size}, align_corners={self.align_corners}"


class ChannelShuffle(nn.Module):
    """Reshape-transpose-reshape, which every exporter (ONNX, torch.export, TVM) understands."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)
