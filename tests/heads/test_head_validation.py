"""Head rows: every mistake is a SpecError naming the file, the row and the field."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from archkit._data import shipped_file
from archkit.errors import SpecError
from archkit.spec import parse_spec

ASPP = shipped_file("specs", "deeplabv3_mobilenetv2_aspp").read_text()
SSDLITE = shipped_file("specs", "ssdlite_mobilenetv2").read_text()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("rates: 6", "rates: must be a list (an integer each), got 6"),
        ("rates: [6, 6]", "rates: items must be distinct, got [6, 6]"),
        ("rates: [6, true]", "rates: must be an integer, got True"),
        ("rates: [1]", "rates: must be at least 2, got 1"),
        ("rates: [6], separable: 1", "separable: must be true or false, got 1"),
        ("rates: [6], n: 2", "unknown key 'n' for aspp"),
    ],
)
def test_aspp_mistakes(bad, message):
    with pytest.raises(SpecError) as info:
        parse_spec(ASPP.replace("rates: [6, 12, 18]", bad), source="d.yaml")
    assert str(info.value).startswith("d.yaml: row 8 (aspp): ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("anchors: 3, separable: maybe", "separable: must be true or false, got 'maybe'"),
        ("anchors: 65", "anchors: must be at most 64, got 65"),
        ("anchors: 3, name: 2pred", "name: must match"),
    ],
)
def test_ssd_head_mistakes(bad, message):
    text = SSDLITE.replace("anchors: 3, separable: true, name: pred_layer15", bad)
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    assert str(info.value).startswith("s.yaml: row 17 (ssd_head): ")
    assert message in str(info.value)


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(-2, 40), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(
        [
            "from",
            "name",
            "anchors",
            "separable",
            "background",
            "kernel",
            "rates",
            "image_pooling",
            "c",
            "p",
            "align_corners",
            "activation",
        ]
    ),
    value=_JUNK,
    target=st.sampled_from(["ssd_head", "aspp", "upsample"]),
)
def test_random_values_fail_cleanly_or_parse(key, value, target):
    data = yaml.safe_load(ASPP if target != "ssd_head" else SSDLITE)
    row = next(r for r in data["layers"] if r["op"] == target)
    row[key] = value
    try:
        parse_spec(yaml.safe_dump(data), source="fuzz.yaml")
    except SpecError as err:
        assert str(err).startswith("fuzz.yaml: ")
