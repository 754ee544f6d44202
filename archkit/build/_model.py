"""Spec -> ``torch.nn.Module``: one module per block, each running its primitive nodes in order."""

from __future__ import annotations

import torch
from torch import nn

from archkit.ops import INPUT, PRIMITIVES, Block, Network, lower
from archkit.spec import Spec

__all__ = ["ArchNet", "BlockModule", "build_model", "calibrate_batchnorm", "example_input"]


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
        return self.tensors(x)[self._output]

    def tensors(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every tensor of the block by local name (``"x"`` is the input)."""
        env = {"x": x}
        for name, inputs in self._program:
            env[name] = getattr(self, name)(*(env[i] for i in inputs))
        return env

    def extra_repr(self) -> str:
        return f"op={self.op}"


class ArchNet(nn.Module):
    """The network a spec describes.

    ``forward`` returns ``N x num_classes`` logits for a classifier (a 1x1 final map is flattened)
    and the feature map for a backbone or a segmenter. A network with several outputs (a detector:
    the box and class maps of every prediction layer, :attr:`output_names`) returns a tuple.
    ``model.blocks[i]`` is the module of block ``i``.
    """

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.spec = network.spec
        self.blocks = nn.Sequential(*(BlockModule(b) for b in network.blocks))
        last = network.blocks[-1] if network.blocks else None
        out = network.output_shape
        outputs = network.output_ids
        self._flatten = (
            last is not None
            and len(outputs) == 1
            and (out.height, out.width) == (1, 1)
            and all(n.prim != "linear" for n in last.nodes)
        )
        sources = tuple(network.source_id(b) for b in network.blocks)
        previous = (INPUT, *(b.output_id for b in network.blocks))
        # A plain chain (every classifier and backbone) runs as one nn.Sequential call.
        self._chain = sources == previous[:-1] and outputs == previous[-1:]
        # Which tensors of each block must outlive it (read by a later block or returned).
        needed = set(sources) | set(outputs)
        self._sources = sources
        self._keep = tuple(
            tuple(sorted({t for t in needed if t.startswith(f"{b.index}:")}))
            for b in network.blocks
        )
        self._outputs = outputs
        #: Names of the outputs (ONNX output names): ``output`` for one, else
        #: ``<row name or block>_<node>`` per output.
        self.output_names = _output_names(network)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self._chain:
            y = self.blocks(x)
            return torch.flatten(y, 1) if self._flatten else y
        env = {INPUT: x}
        for index, block in enumerate(self.blocks):
            values = block.tensors(env[self._sources[index]])
            for tensor in self._keep[index]:
                env[tensor] = values[tensor.split(":", 1)[1]]
        outputs = tuple(env[t] for t in self._outputs)
        if len(outputs) == 1:
            return torch.flatten(outputs[0], 1) if self._flatten else outputs[0]
        return outputs


def _output_names(network: Network) -> tuple[str, ...]:
    if len(network.output_ids) == 1:
        return ("output",)
    names = []
    for tensor in network.output_ids:
        index, node = tensor.split(":", 1)
        block = network.blocks[int(index)]
        row = block.row.name or f"row{block.row.index}"
        suffix = f"_{block.repeat}" if block.row.repeats > 1 else ""
        names.append(f"{row}{suffix}_{node}")
    return tuple(names)


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


def calibrate_batchnorm(model: nn.Module, spec: Spec, batch: int = 2, seed: int = 1) -> nn.Module:
    """Give every BatchNorm real statistics from one random batch, then switch to eval mode.

    A freshly built model's BatchNorms have mean 0 and variance 1, so MobileNetV2's logits are
    about 1e-9 and comparing a compiled model's output with PyTorch's would pass for any
    program. Latency does not depend on the weights; this makes output checks meaningful.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batch
    model.train()
    with torch.no_grad():
        model(example_input(spec, batch=batch, seed=seed))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                # A variance from a handful of values (a 1x1 map, batch 2) can be ~0 and would
                # amplify float32 rounding a thousandfold; keep the network well conditioned.
                m.running_var.clamp_(min=0.05)
    return model.eval()
