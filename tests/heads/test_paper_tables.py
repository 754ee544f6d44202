"""The shipped head specs against the paper's Tables 5, 6 and 7 (values typed from the paper)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archkit.cost import count
from archkit.spec import apply_overrides, load_spec

heads = pytest.importorskip("archkit.report.heads")

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _spec(name: str):
    return load_spec(SPECS / f"{name}.yaml")


def test_table5_head_params_and_ssd_madds():
    ssd_params, ssd_madds = heads.head_costs(_spec("ssd_mobilenetv2"))
    lite_params, lite_madds = heads.head_costs(_spec("ssdlite_mobilenetv2"))
    assert round(ssd_params / 1e6, 1) == 14.8
    assert round(lite_params / 1e6, 1) == 2.1
    assert int(ssd_madds / 1e7) / 100 == 1.25  # printed truncated: 1.259B
    # The paper's 0.35B for SSDLite is not reproduced (reports/heads_tables.md explains why):
    # archkit's head is the one that makes Table 6's 0.8B total add up.
    assert 0.17e9 < lite_madds < 0.19e9


def test_table6_mobilenetv2_ssdlite_totals():
    costs = count(_spec("ssdlite_mobilenetv2"))
    assert round(costs.params / 1e6, 1) == 4.3
    assert round(costs.madds / 1e9, 1) == 0.8


@pytest.mark.parametrize(
    ("name", "params_m", "madds_b", "multi_scale"),
    [
        ("deeplabv3_mobilenetv2_aspp", 4.52, 5.8, False),
        ("deeplabv3_mobilenetv2", 2.11, 2.75, False),
        ("deeplabv3_mobilenetv2_os8", 2.11, 152.6, True),
        ("deeplabv3_mobilenetv2_os8_aspp", 4.52, 387.0, True),
    ],
)
def test_table7_params_exact_and_madds_as_tensorflow_counts_them(
    name, params_m, madds_b, multi_scale
):
    spec = _spec(name)
    assert spec.resolution == 512
    assert round(count(spec).params / 1e6, 2) == params_m
    crop = apply_overrides(spec, resolution=513)
    if multi_scale:
        madds = heads.multi_scale_madds(crop, tf_atrous=True)
    else:
        madds = heads.tf_space_to_batch_madds(crop)
    assert madds / 1e9 == pytest.approx(madds_b, rel=0.005)


def test_tf_space_to_batch_accounting_by_hand():
    # One 3x3 conv with rate 6 on 33x33: TF pads 33 + 12 = 45 up to 48 and computes 36x36.
    from archkit.spec import parse_spec

    spec = parse_spec(
        "input: {resolution: 33, channels: 4}\nlayers:\n  - {op: conv2d, c: 8, dilation: 6}\n"
    )
    assert count(spec).madds == 33 * 33 * 8 * 4 * 9
    assert heads.tf_space_to_batch_madds(spec) == 36 * 36 * 8 * 4 * 9
    assert [heads.deeplab_scaled_resolution(513, s) for s in heads.DEEPLAB_EVAL_SCALES] == [
        257,
        385,
        513,
        641,
        769,
        897,
    ]


def test_write_heads_tables(tmp_path):
    path = heads.write_heads_tables(tmp_path / "reports" / "heads_tables.md")
    text = path.read_text()
    for title in ("## Table 5", "## Table 6", "## Table 7"):
        assert title in text
    assert "| SSDLite | 2.1M | 2.11M |" in text
    assert "| MNet V2* | 16 |  |  | 75.32 | 2.11M | 2.11M | 2.75B |" in text
    frame = heads.table7()
    assert list(frame.network) == ["MNet V1"] * 2 + ["MNet V2*"] * 4 + ["ResNet-101"] * 2
