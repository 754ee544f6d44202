"""Totals against published numbers: the MobileNetV2 paper, TF-slim's checkpoint tables, the
MobileNetV1 and ShuffleNet papers. These are rounded in print, so each check states the rounding
the publication used."""

from __future__ import annotations

import math

import pytest
from conftest import SPECS_DIR

from archkit.cost import count
from archkit.spec import apply_overrides, load_spec


def _load(name: str, width: float | None = None, resolution: int | None = None):
    spec = load_spec(SPECS_DIR / f"{name}.yaml")
    if width is None and resolution is None:
        return spec
    return apply_overrides(spec, width=width, resolution=resolution)


def test_mobilenetv2_paper_totals():
    """Table 4: MobileNetV2 (1.0, 224) 300M MAdds, 3.4M parameters (TF-slim's count)."""
    spec = _load("mobilenetv2")
    assert spec.width == 1.0 and spec.resolution == 224 and spec.num_classes == 1000
    costs = count(spec)
    # Exact, and equal to fvcore's trace (tests/cost/test_cost_vs_fvcore.py).
    assert costs.madds == 300_774_272
    assert math.floor(costs.madds / 1e6) == 300
    slim = count(spec, "tf-slim")
    assert math.floor(slim.madds / 1e6) == 300
    assert slim.madds - costs.madds == 1280  # one background class on a 1280-wide classifier
    assert round(slim.params / 1e6, 2) == 3.47
    assert math.floor(slim.params / 1e5) / 10 == 3.4
    assert slim.bn_params == 0
    # torchvision's mobilenet_v2() (an independent implementation): 3,504,872 parameters.
    assert costs.params == 3_504_872


# TF-slim research/slim/nets/mobilenet/README.md, "Mobilenet V2 Imagenet Checkpoints":
# (width, resolution): (MACs in millions as printed, parameters in millions as printed).
# The printed MACs are truncated to whole millions, the parameters rounded to 0.01M.
TF_SLIM_V2 = {
    (1.4, 224): (582, 6.06),
    (1.3, 224): (509, 5.34),
    (1.0, 224): (300, 3.47),
    (1.0, 192): (221, 3.47),
    (1.0, 160): (154, 3.47),
    (1.0, 128): (99, 3.47),
    (1.0, 96): (56, 3.47),
    (0.75, 224): (209, 2.61),
    (0.75, 192): (153, 2.61),
    (0.75, 160): (107, 2.61),
    (0.75, 128): (69, 2.61),
    (0.75, 96): (39, 2.61),
    (0.5, 224): (97, 1.95),
    (0.5, 192): (71, 1.95),
    (0.5, 160): (50, 1.95),
    (0.5, 128): (32, 1.95),
    (0.5, 96): (18, 1.95),
    (0.35, 224): (59, 1.66),
    (0.35, 192): (43, 1.66),
    (0.35, 160): (30, 1.66),
    (0.35, 128): (20, 1.66),
    (0.35, 96): (11, 1.66),
}


@pytest.mark.parametrize(("width", "resolution"), sorted(TF_SLIM_V2), ids=str)
def test_mobilenetv2_family_matches_tf_slim_table(width, resolution):
    macs_m, params_m = TF_SLIM_V2[width, resolution]
    costs = count(_load("mobilenetv2", width, resolution), "tf-slim")
    assert math.floor(costs.madds / 1e6) == macs_m
    assert round(costs.params / 1e6, 2) == params_m


# MobileNetV1 paper (Howard et al., 2017), Tables 6 and 7 (millions, rounded in print; the
# paper's own rounding is not consistent, so within 1M MAdds and 0.1M parameters).
V1_PAPER = {
    (1.0, 224): (569, 4.2),
    (0.75, 224): (325, 2.6),
    (0.5, 224): (149, 1.3),
    (0.25, 224): (41, 0.5),
    (1.0, 192): (418, 4.2),
    (1.0, 160): (290, 4.2),
    (1.0, 128): (186, 4.2),
}


@pytest.mark.parametrize(("width", "resolution"), sorted(V1_PAPER), ids=str)
def test_mobilenetv1_family_matches_paper(width, resolution):
    madds_m, params_m = V1_PAPER[width, resolution]
    costs = count(_load("mobilenetv1", width, resolution))
    assert abs(costs.madds / 1e6 - madds_m) <= 1.0
    assert abs(costs.params / 1e6 - params_m) <= 0.1


def test_shufflenet_1x_matches_paper():
    """ShuffleNet paper, Table 1: g = 3, 1x: 137 MFLOPs (multiply-adds)."""
    costs = count(_load("shufflenet_g3"))
    assert round(costs.madds / 1e6) == 137


@pytest.mark.parametrize(
    ("name", "width", "madds_m", "params_m"),
    [("shufflenet_g3_1.5x", None, 292, 3.4), ("shufflenet_g3", 2.0, 524, 5.4)],
)
def test_shufflenet_scaled_matches_mobilenetv2_table_4(name, width, madds_m, params_m):
    """MobileNetV2 paper, Table 4: ShuffleNet (1.5) 292M MAdds / 3.4M params, (x2) 524M / 5.4M.

    The released 1.5x keeps a 24-filter stem (specs/shufflenet_g3_1.5x.yaml); 2x is the 1x spec
    at ``--width 2``. Parameters are counted with BatchNorm folded, as the table counts them.
    """
    costs = count(_load(name, width))
    assert round((costs.params - costs.bn_params) / 1e6, 1) == params_m
    assert round(costs.madds / 1e6) == madds_m


def test_shufflenet_width_1_5_scales_the_stem():
    """``shufflenet_g3 --width 1.5`` follows the ShuffleNet paper's text (every layer scaled,
    the stem to 36 filters), which costs more than the released 1.5x."""
    scaled = count(_load("shufflenet_g3", 1.5))
    released = count(_load("shufflenet_g3_1.5x"))
    assert scaled.madds > released.madds
    assert round(scaled.madds / 1e6) == 300
