"""The shipped head specs against the paper's Tables 5, 6 and 7 (archkit.reference holds the
published values, with their sources; tests/report/test_reference.py checks them against the
paper's text)."""

from __future__ import annotations

import pytest

from archkit import reference
from archkit._data import shipped_file
from archkit.cost import count
from archkit.spec import apply_overrides, load_spec

heads = pytest.importorskip("archkit.report.heads")

TABLE5 = {row.head: row for row in reference.TABLE5}
TABLE6 = {row.network: row for row in reference.TABLE6}


def _spec(name: str):
    return load_spec(shipped_file("specs", name))


def test_table5_head_params_and_ssd_madds():
    ssd, lite = TABLE5["SSD"], TABLE5["SSDLite"]
    ssd_params, ssd_madds = heads.head_costs(_spec("ssd_mobilenetv2"))
    lite_params, lite_madds = heads.head_costs(_spec("ssdlite_mobilenetv2"))
    assert round(ssd_params / 1e6, 1) == ssd.params_m
    assert round(lite_params / 1e6, 1) == lite.params_m
    assert int(ssd_madds / 1e7) / 100 == ssd.madds_b  # printed truncated: 1.259B
    # The paper's 0.35B for SSDLite is not reproduced (reports/heads_tables.md explains why):
    # archkit's head is the one that makes Table 6's 0.8B total add up, about half the 0.35B.
    assert 0.4 < lite_madds / (lite.madds_b * 1e9) < 0.6


def test_table6_mobilenetv2_ssdlite_totals():
    paper = TABLE6["MNet V2 + SSDLite"]
    costs = count(_spec("ssdlite_mobilenetv2"))
    assert round(costs.params / 1e6, 1) == paper.params_m
    assert round(costs.madds / 1e9, 1) == paper.madds_b


@pytest.mark.parametrize(
    ("name", "output_stride", "aspp"),
    [
        ("deeplabv3_mobilenetv2_aspp", 16, True),
        ("deeplabv3_mobilenetv2", 16, False),
        ("deeplabv3_mobilenetv2_os8", 8, False),
        ("deeplabv3_mobilenetv2_os8_aspp", 8, True),
    ],
)
def test_table7_params_exact_and_madds_as_tensorflow_counts_them(name, output_stride, aspp):
    paper = next(
        r
        for r in reference.TABLE7
        if (r.network, r.output_stride, r.aspp) == ("MNet V2*", output_stride, aspp)
    )
    spec = _spec(name)
    assert spec.resolution == 512
    assert round(count(spec).params / 1e6, 2) == paper.params_m
    crop = apply_overrides(spec, resolution=513)
    if paper.multi_scale_flip:
        madds = heads.multi_scale_madds(crop, tf_atrous=True)
    else:
        madds = heads.tf_space_to_batch_madds(crop)
    assert madds / 1e9 == pytest.approx(paper.madds_b, rel=0.005)


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
    # The report prints the paper's numbers and archkit's count, which rounds to the paper's.
    lite = TABLE5["SSDLite"]
    cells = next(line for line in text.splitlines() if line.startswith("| SSDLite |")).split("|")
    assert cells[2].strip() == f"{lite.params_m}M"
    assert round(float(cells[3].strip().removesuffix("M")), 1) == lite.params_m
    frame = heads.table7()
    assert list(frame.network) == ["MNet V1"] * 2 + ["MNet V2*"] * 4 + ["ResNet-101"] * 2
