"""Every registered primitive and operator, built alone, against fvcore and ``sum(p.numel())``.

The tests are parametrized over the registries (``PRIMITIVES``, ``OPERATORS``), so a new operator
is tested by being registered. Each is taken where a shipped spec uses it (the smallest such
node or block), else, for an operator, from a row with its defaults after a conv.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FVCORE_MAC_OPS, SHIPPED, SPECS_DIR, fvcore_analysis, fvcore_madds
from torch import nn

from archkit.build import BlockModule
from archkit.ops import OPERATORS, PRIMITIVES, NoArithmetic, Primitive, lower
from archkit.spec import load_spec, parse_spec


def _shipped_blocks():
    for name in SHIPPED:
        yield from lower(load_spec(SPECS_DIR / f"{name}.yaml")).blocks


def _smallest(items, size):
    return min(items, key=size, default=None)


def _example_node(prim: str):
    nodes = [n for b in _shipped_blocks() for n in b.nodes if n.prim == prim]
    return _smallest(nodes, lambda n: sum(s.elements for s in n.in_shapes))


def _defaults_row(op_name: str) -> str:
    """A YAML row of ``op_name`` with its defaults, required integer fields set to 8."""
    keys = [f"op: {op_name}"]
    for rule in OPERATORS[op_name].fields:
        if rule.default is None and not rule.optional:
            assert rule.kind is int, f"{op_name}: no example value for the required {rule.key}"
            keys.append(f"{rule.key}: 8")
    return "{" + ", ".join(keys) + "}"


def _example_block(op_name: str):
    blocks = [b for b in _shipped_blocks() if b.row.op == op_name]
    if blocks:
        return _smallest(blocks, lambda b: b.in_shape.elements)
    spec = parse_spec(
        f"input: {{resolution: 16}}\nlayers: [{{op: conv2d, c: 8}}, {_defaults_row(op_name)}]\n",
        source=f"{op_name}.yaml",
    )
    return lower(spec).blocks[-1]


def _inputs(shapes):
    generator = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(1, s.channels, s.height, s.width, generator=generator) for s in shapes
    )


def _bn_params(module: nn.Module) -> int:
    return sum(
        p.numel() for m in module.modules() if isinstance(m, nn.BatchNorm2d)
        for p in m.parameters()
    )


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_every_primitive_counts_like_fvcore_and_torch(name):
    node = _example_node(name)
    assert node is not None, f"no shipped spec uses the primitive {name!r}: add one that does"
    prim = PRIMITIVES[name]
    module = prim.module(node).eval()
    x = _inputs(node.in_shapes)
    with torch.no_grad():
        y = module(*x)
    out = node.out_shape
    expected = (1, out.channels) if name == "linear" else (1, out.channels, out.height, out.width)
    assert tuple(y.shape) == expected
    by_op = fvcore_analysis(module, x).by_operator()
    assert prim.madds(node) == fvcore_madds(by_op)
    assert set(by_op) & set(FVCORE_MAC_OPS) <= {"conv", "linear"}
    total = sum(p.numel() for p in module.parameters())
    assert prim.params(node) == total - _bn_params(module)
    assert 2 * prim.bn_channels(node) == _bn_params(module)  # BatchNorm's weight and bias


class _AllTensors(nn.Module):
    """Returns every tensor of a block, so that fvcore's trace keeps every node."""

    def __init__(self, block: BlockModule) -> None:
        super().__init__()
        self.block = block

    def forward(self, x):
        return tuple(v for k, v in self.block.tensors(x).items() if k != "x")


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_every_operator_counts_like_fvcore_and_torch(name):
    block = _example_block(name)
    module = BlockModule(block).eval()
    (x,) = _inputs((block.in_shape,))
    nodes = block.nodes
    by_op = fvcore_analysis(_AllTensors(module), (x,)).by_operator()
    assert sum(PRIMITIVES[n.prim].madds(n) for n in nodes) == fvcore_madds(by_op)
    assert sum(PRIMITIVES[n.prim].params(n) for n in nodes) == (
        sum(p.numel() for p in module.parameters()) - _bn_params(module)
    )
    with torch.no_grad():
        y = module(x)
    out = block.out_shape
    assert tuple(y.shape)[1:] in ((out.channels,), (out.channels, out.height, out.width))


def test_a_primitive_without_a_cost_rule_cannot_be_registered():
    class Forgetful(Primitive):
        name = "forgetful"

        def infer(self, attrs, inputs, fail):
            return inputs[0]

        def module(self, node):
            return nn.Identity()

    with pytest.raises(TypeError, match="madds"):
        Forgetful()

    class Free(NoArithmetic):  # saying "no arithmetic" is a cost rule
        name = "free"

        def infer(self, attrs, inputs, fail):
            return inputs[0]

        def module(self, node):
            return nn.Identity()

    assert Free().madds(None) == Free().params(None) == 0
