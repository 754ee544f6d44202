"""Spec -> ``torch.nn.Module``: one module per block, each running its primitive nodes in order."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archkit.ops import PRIMITIVES, Block, Network, lower
from archkit.spec import Spec

__all__ = ["ArchNet", "BlockModule", "build_model", "export_onnx", "example_input"]


class BlockModule(nn.Module):
    """One repeat of one spec row (an inverted residual, a shuffle unit, a conv...).

    Submodules are named after the nodes (``expand``, ``depthwise``, ``project``...), so
    ``model.blocks[3].depthwise.conv`` is what a reader expects.
    """

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.op = block.row.op
        for node in block.nodes:
            self.add_module(node.name, PRIMITIVES[node.prim].module(node))
        self._program = tuple((node.name, node.inputs) for node in block.nodes)
        self._output = block.output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {"x": x}
        for name, inputs in self._program:
            env[name] = getattr(self, name)(*(env[i] for i in inputs))
        return env[self._output]

    def extra_repr(self) -> str:
        return f"op={self.op}"


class ArchNet(nn.Module):
    """The network a spec describes; ``forward`` returns ``N x num_classes`` logits for a
    classifier (a 1x1 final map is flattened) and the feature map otherwise."""

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.spec = network.spec
        self.blocks = nn.Sequential(*(BlockModule(b) for b in network.blocks))
        last = network.blocks[-1] if network.blocks else None
        out = network.output_shape
        self._flatten = (
            last is not None
            and (out.height, out.width) == (1, 1)
            and all(n.prim != "linear" for n in last.nodes)
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(x)
        return torch.flatten(y, 1) if self._flatten else y


def _init_weights(model: nn.Module) -> None:
    # torchvision's MobileNetV2 initialization.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(spec: Spec) -> ArchNet:
    """Build the exact PyTorch model ``spec`` describes (random weights, train mode)."""
    return ArchNet(lower(spec))


def example_input(spec: Spec, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A deterministic ``batch x C x R x R`` input for ``spec``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(
        batch, spec.in_channels, spec.resolution, spec.resolution, generator=generator
    )


def export_onnx(spec: Spec, path: str | Path, *, model: nn.Module | None = None,
                opset: int = 17) -> Path:
    """Export ``spec``'s model (eval mode, batch 1) to ONNX and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = (model or build_model(spec)).eval()
    with torch.no_grad():
        torch.onnx.export(
            model, (example_input(spec),), str(path), input_names=["input"],
            output_names=["output"], opset_version=opset, dynamo=False,
        )
    return path
