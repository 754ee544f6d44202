"""archkit's analytic counts against fvcore's trace and ``sum(p.numel())`` of the built model.

Every shipped spec and the published family members (tests/conftest.py: FAMILY) must agree
exactly: totals, BatchNorm parameters, and per block (``model.blocks[i]``) and per stage.
"""

from __future__ import annotations

import pytest
from conftest import FVCORE_MAC_OPS, family_params, fvcore_madds
from torch import nn

from archkit.cost import cost_table, count
from archkit.ops import lower

pytestmark = pytest.mark.parametrize("variant", family_params())


def test_total_madds_equal_fvcore_conv_plus_linear(variant, models):
    spec = models.spec(variant)
    by_op = models.flops(variant).by_operator()
    assert count(spec).madds == fvcore_madds(by_op)
    # No multiply-adds hide in an operator archkit does not model.
    assert set(by_op) & set(FVCORE_MAC_OPS) <= {"conv", "linear"}


def test_params_equal_torch(variant, models):
    spec = models.spec(variant)
    model = models.model(variant)
    costs = count(spec)
    assert costs.params == sum(p.numel() for p in model.parameters())
    bn = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    )
    assert costs.bn_params == bn
    # Running statistics are buffers, not parameters (2 BN parameters per channel).
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert costs.bn_params == 2 * bn_channels


def test_per_block_equal_fvcore_by_module(variant, models):
    from fvcore.nn import parameter_count

    spec = models.spec(variant)
    model = models.model(variant)
    analysis = models.flops(variant)
    by_module = analysis.by_module_and_operator()
    fv_params = parameter_count(model)
    layers = cost_table(spec).layers
    per_block = layers.groupby("block")[["madds", "params", "bn_params"]].sum()
    assert list(per_block.index) == list(range(len(model.blocks)))
    for i, block in enumerate(model.blocks):
        name = f"blocks.{i}"
        assert per_block.loc[i, "madds"] == fvcore_madds(by_module.get(name, {})), name
        assert per_block.loc[i, "params"] == fv_params.get(name, 0), name
        bn = sum(
            p.numel()
            for m in block.modules()
            if isinstance(m, nn.BatchNorm2d)
            for p in m.parameters()
        )
        assert per_block.loc[i, "bn_params"] == bn, name


def test_stages_equal_fvcore_by_module(variant, models):
    """One stage per spec row (a Table 2 line): its MAdds and parameters are fvcore's counts of
    the blocks that row built, its ``n`` the number of those blocks."""
    from fvcore.nn import parameter_count

    spec = models.spec(variant)
    model = models.model(variant)
    by_module = models.flops(variant).by_module_and_operator()
    fv_params = parameter_count(model)
    stages = cost_table(spec).stages
    assert list(stages["stage"]) == list(range(len(spec.rows)))
    blocks_of = {}
    for i, block in enumerate(lower(spec).blocks):
        blocks_of.setdefault(block.row.index, []).append(f"blocks.{i}")
    for stage in stages.itertuples():
        names = blocks_of[stage.stage]
        assert stage.n == len(names)
        assert stage.madds == sum(fvcore_madds(by_module.get(n, {})) for n in names), names
        assert stage.params == sum(fv_params.get(n, 0) for n in names), names


def test_node_output_shapes_equal_torch(variant, models):
    """The shapes in the per-layer table are the shapes PyTorch produces."""
    spec = models.spec(variant)
    _, events = models.hooks(variant)
    layers = cost_table(spec).layers
    assert len(events) == len(layers)
    for ev, row in zip(events, layers.itertuples(), strict=True):
        c, *hw = ev["out_shape"]
        h, w = (hw + [1, 1])[:2]  # linear outputs are N x C
        assert row.output == f"{h}x{w}x{c}", (row.block, row.node)
