"""Overrides (width, resolution, expansion) and the channel rules the papers state once:
``make_divisible`` against TF-slim's rule, and the MobileNetV2 width rule."""

from __future__ import annotations

import dataclasses
import math

import pytest
from conftest import SPECS_DIR, tf_slim_make_divisible
from hypothesis import given, settings
from hypothesis import strategies as st

from archkit.errors import SpecError
from archkit.ops import lower
from archkit.spec import apply_overrides, load_spec, make_divisible, scale_channels


@pytest.fixture(scope="module")
def v2():
    return load_spec(SPECS_DIR / "mobilenetv2.yaml")


def test_overrides_width_resolution_expansion(v2):
    variant = apply_overrides(v2, width=0.75, resolution=160, expansion=4)
    assert variant.width == 0.75 and variant.resolution == 160
    assert variant is not v2 and v2.width == 1.0 and v2.resolution == 224  # not mutated
    for before, after in zip(v2.rows, variant.rows, strict=True):
        if before.op == "bottleneck" and before.expansion > 1:
            assert after.expansion == 4
            assert dataclasses.replace(after, expansion=before.expansion) == before
        else:
            # t: 1 rows (the first bottleneck) and every other row are unchanged.
            assert after == before
    assert [r.expansion for r in variant.rows if r.op == "bottleneck"] == [1, 4, 4, 4, 4, 4, 4]

    net = lower(variant)
    assert net.input_shape.height == net.input_shape.width == 160
    for block in net.blocks:
        if block.row.op != "bottleneck":
            continue
        names = [n.name for n in block.nodes]
        c_in = block.in_shape.channels
        if block.row.expansion == 1:
            assert "expand" not in names
        else:
            expand = next(n for n in block.nodes if n.name == "expand")
            assert expand.out_shape.channels == tf_slim_make_divisible(c_in * 4, 8)
    # Width 0.75 scales every layer but the last conv (the paper's rule).
    convs = [b for b in net.blocks if b.row.op == "conv2d"]
    assert convs[0].out_shape.channels == tf_slim_make_divisible(32 * 0.75, 8) == 24
    assert convs[-1].out_shape.channels == 1280


def test_expansion_override_leaves_shuffle_ratio_alone():
    spec = load_spec(SPECS_DIR / "shufflenet_g3.yaml")
    variant = apply_overrides(spec, expansion=4)
    assert variant.rows == spec.rows


def test_expansion_one_removes_every_expand_conv(v2):
    variant = apply_overrides(v2, expansion=1)
    assert all(n.name != "expand" for b in lower(variant).blocks for n in b.nodes)


def test_rows_with_expansion_are_table_2s_t_6_bottlenecks(v2):
    """MobileNetV2 Table 2: seven bottleneck rows, the first with t = 1 and six with t = 6; the
    expansion override (and the search) changes exactly those six."""
    assert [r.has_expansion for r in v2.rows if r.op == "bottleneck"] == [False] + [True] * 6
    assert not any(r.has_expansion for r in v2.rows if r.op != "bottleneck")
    assert not any(r.has_expansion for r in load_spec(SPECS_DIR / "shufflenet_g3.yaml").rows)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 0}, "--width"),
        ({"width": -0.5}, "--width"),
        ({"width": math.nan}, "--width"),
        ({"width": math.inf}, "--width"),
        ({"width": 100.0}, "--width"),
        ({"width": "1.0"}, "--width"),
        ({"width": True}, "--width"),
        ({"resolution": 0}, "--resolution"),
        ({"resolution": -224}, "--resolution"),
        ({"resolution": 160.5}, "--resolution"),
        ({"resolution": 10**6}, "--resolution"),
        ({"resolution": True}, "--resolution"),
        ({"expansion": 0}, "--expansion"),
        ({"expansion": -6}, "--expansion"),
        ({"expansion": math.nan}, "--expansion"),
        ({"expansion": 10**400}, "--expansion"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_overrides_are_spec_errors(v2, kwargs, field):
    with pytest.raises(SpecError) as info:
        apply_overrides(v2, **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{v2.source}: {field}: ")


def test_override_that_breaks_the_network_names_the_row():
    """A width at which a group count no longer divides the channels (12 * 0.75 = 9)."""
    from archkit.spec import parse_spec

    spec = parse_spec(
        "input: {resolution: 16}\nchannel_rounding: {divisor: 1}\n"
        "layers:\n  - {op: conv2d, c: 12}\n  - {op: conv2d, c: 12, groups: 4}\n",
        source="grouped.yaml",
    )
    with pytest.raises(SpecError) as info:
        apply_overrides(spec, width=0.75)
    assert str(info.value).startswith("grouped.yaml: row 1 (conv2d): groups: ")
    assert "9" in info.value.reason


# --------------------------------------------------------------------------- make_divisible


@settings(max_examples=3000, deadline=None)
@given(
    value=st.floats(min_value=0.01, max_value=100_000, allow_nan=False),
    divisor=st.integers(1, 64),
)
def test_make_divisible_is_tf_slims_rule(value, divisor):
    assert make_divisible(value, divisor) == tf_slim_make_divisible(value, divisor)


@settings(max_examples=1000, deadline=None)
@given(channels=st.integers(1, 2048), width=st.sampled_from([0.25, 0.35, 0.5, 0.75, 1.3, 1.4, 2.0]))
def test_make_divisible_properties(channels, width):
    value = channels * width
    rounded = make_divisible(value, 8)
    assert rounded % 8 == 0 and rounded >= 8
    assert rounded >= 0.9 * value  # never more than 10 % below
    assert rounded <= value + 8  # and never more than one divisor above


@pytest.mark.parametrize(
    ("value", "divisor", "expected"),
    [
        (32 * 0.35, 8, 16),  # MobileNetV2 0.35's first conv: 11.2 -> 8 loses > 10 % -> 16
        (16 * 0.35, 8, 8),
        (24 * 0.35, 8, 8),
        (32 * 0.5, 8, 16),
        (96 * 0.75, 8, 72),
        (1280 * 1.4, 8, 1792),
        (1280 * 1.3, 8, 1664),
        (320 * 1.4, 8, 448),
        (160 * 0.35, 8, 56),
        (20, 8, 24),
        (19.9, 8, 24),
        (17.7, 8, 16),
        (12, 8, 16),
        (3, 8, 8),
        (7.5, 1, 8),
        (0.2, 1, 1),
    ],
)
def test_make_divisible_worked_examples(value, divisor, expected):
    assert make_divisible(value, divisor) == tf_slim_make_divisible(value, divisor) == expected


@pytest.mark.parametrize(
    ("width", "last"),
    [(0.35, 1280), (0.5, 1280), (0.75, 1280), (1.0, 1280), (1.3, 1664), (1.4, 1792)],
)
def test_paper_width_rule_for_the_last_conv(width, last):
    """MobileNetV2: "for multipliers less than one, we apply width multiplier to all layers
    except the very last convolutional layer"; 1.4 gives 1792."""
    assert scale_channels(1280, width, "grow_only", 8, 0.9) == last
    spec = apply_overrides(load_spec(SPECS_DIR / "mobilenetv2.yaml"), width=width)
    last_conv = [b for b in lower(spec).blocks if b.row.op == "conv2d"][-1]
    assert last_conv.out_shape.channels == last
    # Every other layer is scaled: the 320-channel bottleneck follows the multiplier.
    last_bottleneck = [b for b in lower(spec).blocks if b.row.op == "bottleneck"][-1]
    assert last_bottleneck.out_shape.channels == (
        320 if width == 1.0 else tf_slim_make_divisible(320 * width, 8)
    )


def test_scale_channels_modes():
    assert scale_channels(100, 0.5, "none", 8, 0.9) == 100
    assert scale_channels(100, 0.5, "full", 8, 0.9) == tf_slim_make_divisible(50, 8)
    assert scale_channels(100, 0.5, "grow_only", 8, 0.9) == 100
    assert scale_channels(100, 2.0, "grow_only", 8, 0.9) == 200
    assert scale_channels(100, 1.0, "full", 8, 0.9) == 100  # width 1 leaves channels as written
