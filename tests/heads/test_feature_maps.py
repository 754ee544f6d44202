"""Named feature maps (``name:`` / ``from:``), several outputs, and their memory schedule."""

from __future__ import annotations

import pytest

from archkit.cost import count, schedule_steps
from archkit.errors import SpecError
from archkit.ops import lower
from archkit.spec import parse_spec

SMALL = """
name: small_detector
input: {resolution: 32, channels: 3}
num_classes: 5
layers:
  - {op: conv2d, c: 8, s: 2}
  - {op: bottleneck, t: 6, c: 16, n: 2, s: 2, name: stage}
  - {op: conv2d, c: 32, kernel: 1, name: last}
  - {op: ssd_head, from: stage.0.expand, anchors: 3, name: p1}
  - {op: ssd_head, from: last, anchors: 2, separable: false, background: false, name: p2}
"""


def _spec(text: str = SMALL):
    return parse_spec(text, source="small.yaml")


def test_from_reads_a_node_inside_a_block():
    net = lower(_spec())
    p1, p2 = net.blocks[-2], net.blocks[-1]
    # stage.0.expand: block 1's expansion, 16x16x48 (8 channels x 6).
    assert net.source_id(p1) == "1:expand"
    assert p1.in_shape == net.tensor_shape("1:expand")
    assert (p1.in_shape.channels, p1.in_shape.height) == (48, 16)
    assert net.source_id(p2) == net.blocks[3].output_id  # "last" = the conv row's output


def test_outputs_are_every_head_prediction_in_order():
    net = lower(_spec())
    assert net.output_ids == ("4:box", "4:classes", "5:box", "5:classes")
    shapes = [(s.channels, s.height) for s in net.output_shapes]
    # 3 anchors x 4, 3 anchors x (5 + background); 2 x 4, 2 x 5 (no background).
    assert shapes == [(12, 16), (18, 16), (8, 8), (10, 8)]


def test_plain_chain_keeps_a_single_output():
    text = SMALL.split("  - {op: ssd_head")[0]
    net = lower(_spec(text))
    assert net.output_ids == (net.blocks[-1].output_id,)


def test_hand_count_of_a_separable_and_a_regular_head():
    net = lower(_spec())
    costs = {b.row.name: 0 for b in net.blocks[-2:]}
    from archkit.ops import PRIMITIVES

    for block in net.blocks[-2:]:
        costs[block.row.name] = sum(PRIMITIVES[n.prim].madds(n) for n in block.nodes)
    hw = 16 * 16
    # SSDLite: per predictor a 3x3 depthwise on 48 channels, then a 1x1 to 12 / 18 channels.
    assert costs["p1"] == hw * (48 * 9 + 48 * 12) + hw * (48 * 9 + 48 * 18)
    # SSD: a 3x3 conv from 32 channels to 8 and to 10 channels on 8x8.
    assert costs["p2"] == 64 * 9 * 32 * (8 + 10)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("nowhere", "no earlier row is named 'nowhere' (named rows so far: stage, last)"),
        ("stage.2", "'stage' has 2 repeat(s) (0 to 1), got 2"),
        ("stage.1.squeeze", "has no node 'squeeze' (nodes: expand, depthwise, project, add)"),
        ("p2", "no earlier row is named 'p2'"),
    ],
)
def test_bad_from_names_file_row_and_field(reference, message):
    text = SMALL.replace("from: stage.0.expand", f"from: {reference}")
    with pytest.raises(SpecError) as info:
        _spec(text)
    err = info.value
    assert (err.source, err.row, err.op, err.field) == ("small.yaml", 3, "ssd_head", "from")
    assert message in str(err)
    assert str(err).startswith("small.yaml: row 3 (ssd_head): from: ")


@pytest.mark.parametrize("value", ["stage.x", "1stage", "stage..expand", "stage.0.expand.more"])
def test_malformed_from_is_rejected_at_decoding(value):
    with pytest.raises(SpecError, match=r"row 3 \(ssd_head\): from: must match"):
        _spec(SMALL.replace("stage.0.expand", value))


def test_duplicate_names_are_rejected():
    with pytest.raises(SpecError, match=r"row 2 \(conv2d\): name: the name 'stage' is already"):
        _spec(SMALL.replace("name: last", "name: stage"))


def test_head_fields_are_validated():
    with pytest.raises(SpecError, match=r"row 3 \(ssd_head\): anchors: must be at least 1"):
        _spec(SMALL.replace("anchors: 3", "anchors: 0"))
    with pytest.raises(SpecError, match=r"unknown key 'n' for ssd_head"):
        _spec(SMALL.replace("anchors: 3,", "anchors: 3, n: 2,"))


def test_tapped_bottleneck_is_not_fused_and_outputs_stay_alive():
    net = lower(_spec())
    fused = schedule_steps(net, "fused")
    # Block 1's expansion is read by a head: the block runs node by node; block 2 is fused.
    assert [s.node for s in fused if s.block == 1] == ["expand", "depthwise", "project"]
    assert [s.node for s in fused if s.block == 2] == ["block"]
    # Every prediction map stays alive to the end, so the last step holds all of them.
    outputs = sum(s.elements for s in net.output_shapes)
    last = schedule_steps(net, "naive")[-1]
    assert last.live_elements >= outputs
    assert count(_spec()).peak_activation_elements == max(
        s.live_elements for s in schedule_steps(net, "naive")
    )


def test_built_model_returns_one_tensor_per_output(small_model):
    import torch

    model, spec = small_model
    from archkit.build import example_input

    with torch.no_grad():
        outputs = model(example_input(spec))
    net = lower(spec)
    assert isinstance(outputs, tuple)
    assert [tuple(t.shape[1:]) for t in outputs] == [
        (s.channels, s.height, s.width) for s in net.output_shapes
    ]
    assert model.output_names == ("p1_box", "p1_classes", "p2_box", "p2_classes")
    # The head reads the same tensor as the backbone's own depthwise conv.
    seen = {}
    model.blocks[1].expand.register_forward_hook(lambda m, i, o: seen.setdefault("e", o))
    model.blocks[4].box_depthwise.register_forward_hook(lambda m, i, o: seen.setdefault("h", i[0]))
    with torch.no_grad():
        model(example_input(spec))
    assert seen["h"] is seen["e"]


@pytest.fixture(scope="module")
def small_model():
    pytest.importorskip("torch")
    from archkit.build import build_model

    spec = _spec()
    return build_model(spec).eval(), spec


def test_a_row_nothing_reads_is_an_error():
    # "last" is read by p2; drop p2 and "last" computes a map nobody uses (a tracer would drop it
    # and every count would disagree with the runtime).
    text = SMALL.replace(
        "  - {op: ssd_head, from: last, anchors: 2, separable: false, background: false, "
        "name: p2}\n",
        "",
    )
    with pytest.raises(SpecError, match=r"row 2 \(conv2d\): the output of repeat 0 is never used"):
        _spec(text)
    # A head on the expansion alone leaves the rest of that block unused.
    text = SMALL.replace("from: last", "from: stage.0.expand").replace(
        "  - {op: conv2d, c: 32, kernel: 1, name: last}\n", ""
    )
    with pytest.raises(SpecError, match=r"row 1 \(bottleneck\): the output of repeat 1"):
        _spec(text)
