"""Search space files: the shipped ones load, candidates are the specs they describe, and bad
ranges fail with errors shaped like spec errors (file, field, what must hold, what was found)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from archkit.cost import count
from archkit.errors import SpecError
from archkit.search import SearchSpaceError, load_search_space, parse_search_space, resolve_space
from archkit.spec import apply_overrides, load_spec

from .conftest import SPACES, SPECS

SHIPPED = sorted(p.name for p in SPACES.glob("*.yaml"))


def test_ships_mobilenetv2_and_mobilenetv1():
    assert {"mobilenetv2.yaml", "mobilenetv1.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_load(name):
    space = load_search_space(SPACES / name)
    assert space.width.extremes[0] >= 0.25 and space.width.extremes[1] <= 1.4
    assert space.resolution.extremes == (96, 224)
    spec = space.candidate(space.smallest())
    assert count(spec).madds > 0


def test_mobilenetv2_candidate_is_apply_overrides():
    space = load_search_space(SPACES / "mobilenetv2.yaml")
    assert [r.name for r in space.ranges] == ["width", "resolution", "expansion"]
    assert space.expansion.extremes == (2, 10) and space.expansion.step == 1
    assert space.resolution.step == 16
    spec = space.candidate({"width": 0.75, "resolution": 160, "expansion": 4})
    reference = apply_overrides(
        load_spec(SPECS / "mobilenetv2.yaml"), width=0.75, resolution=160, expansion=4
    )
    assert spec.rows == reference.rows and spec.width == 0.75 and spec.resolution == 160
    assert count(spec) == count(reference)


def test_per_stage_expansion_and_repeats():
    space = load_search_space(SPACES / "mobilenetv2_stages.yaml")
    names = [r.name for r in space.ranges]
    # t = 1 (row 1) is not expanded; rows 2..7 are; every bottleneck's n may move by one.
    assert [n for n in names if n.startswith("expansion_")] == [
        f"expansion_{i}" for i in range(2, 8)
    ]
    assert "repeats_1" in names and "repeats_4" in names
    repeats_4 = next(r for r in space.ranges if r.name == "repeats_4")
    assert repeats_4.extremes == (3, 5)  # the paper's n = 4, plus or minus one
    repeats_1 = next(r for r in space.ranges if r.name == "repeats_1")
    assert repeats_1.extremes == (1, 2)  # never below one
    params = {**space.smallest(), "expansion_3": 8, "repeats_4": 5}
    spec = space.candidate(params)
    assert spec.rows[3].expansion == 8 and spec.rows[2].expansion == 2
    assert spec.rows[4].repeats == 5 and spec.rows[1].expansion == 1


def test_a_name_resolves_to_the_shipped_file_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./search_spaces here: the package data answers
    space, path = resolve_space("mobilenetv1")
    assert Path(path).read_bytes() == (SPACES / "mobilenetv1.yaml").read_bytes()
    assert space.name == "mobilenetv1" and resolve_space(None)[0].name == "mobilenetv2"
    with pytest.raises(SearchSpaceError, match="no search space file or shipped space named"):
        resolve_space("nope")


def test_lists_and_fixed_values():
    space = parse_search_space(
        textwrap.dedent("""
        base: specs/mobilenetv1.yaml
        width: [0.5, 0.75, 1.0]
        resolution: {choices: [128, 160]}
    """),
        base_dir=SPECS.parent,
    )
    assert space.width.choices == (0.5, 0.75, 1.0)
    assert space.width.values() == (0.5, 0.75, 1.0)
    assert space.expansion is None
    fixed = parse_search_space("base: specs/mobilenetv1.yaml\nwidth: 0.5\n", base_dir=SPECS.parent)
    assert fixed.width.choices == (0.5,) and fixed.resolution.choices == (224,)


BASE = "base: specs/mobilenetv2.yaml\n"


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        ("width: {low: 1.4, high: 0.35}", "width", "low must not exceed high"),
        ("width: {low: -1, high: 1}", "width.low", "must be above 0"),
        ("width: {low: 0.35, high: 99}", "width.high", "at most 8"),
        ("width: {low: 0.35}", "width.high", "is required"),
        ("width: {low: a, high: 1}", "width.low", "must be a number"),
        ("width: []", "width.choices", "non-empty list"),
        ("width: [0.5, 0.5]", "width.choices", "distinct"),
        ("width: {choices: [0.5], low: 0.3}", "width", "either choices or low/high"),
        ("resolution: {low: 96, high: 224, step: 24}", "resolution.step", "multiple of step"),
        ("resolution: {low: 96.5, high: 224, step: 16}", "resolution.low", "whole number"),
        ("resolution: {low: 96, high: 224, step: 0}", "resolution.step", "positive whole number"),
        ("resolution: {low: 0, high: 224, step: 16}", "resolution.low", "at least 1"),
        ("expansion: {low: 0, high: 10}", "expansion.low", "must be above 0"),
        ("expansion: {low: 2, high: 10, per_stage: maybe}", "expansion.per_stage", "true or false"),
        ("repeats: {change: [1, -1]}", "repeats.change", "low <= 0 <= high"),
        ("repeats: 3", "repeats", "change"),
        ("resolution: {low: 96, high: 0x" + "f" * 4000 + "}", "resolution.high", "16000 bits"),
    ],
)
def test_bad_ranges(text, field, needle):
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(BASE + text, source="space.yaml", base_dir=SPECS.parent)
    error = info.value
    assert isinstance(error, SpecError) and error.exit_code == 2
    assert error.source == "space.yaml" and error.field == field
    assert needle in str(error) and str(error).startswith("space.yaml: ")


def test_edges_of_ranges_must_be_valid_networks():
    # At width 0.3 (no channel rounding) the first conv has 5 channels, which 4 groups cannot
    # split: caught when the space is read, not in trial 37.
    text = textwrap.dedent("""
        base:
          channel_rounding: {divisor: 1}
          layers: [{op: conv2d, c: 16, s: 2}, {op: conv2d, c: 32, groups: 4}]
        width: {low: 0.3, high: 1.0}
    """)
    with pytest.raises(
        SearchSpaceError, match=r"edge of the ranges \(width=0.3.*groups=4 must divide"
    ):
        parse_search_space(text, source="space.yaml")


def test_expansion_needs_a_bottleneck():
    with pytest.raises(SearchSpaceError, match="no bottleneck row"):
        parse_search_space(
            "base: specs/mobilenetv1.yaml\nexpansion: {low: 2, high: 6}", base_dir=SPECS.parent
        )


def test_a_missing_or_absent_base(tmp_path):
    # Broken YAML, unknown and duplicate keys: tests/spec/test_file_formats.py (every format).
    path = tmp_path / "space.yaml"
    path.write_text("width: 1.0")
    with pytest.raises(SearchSpaceError, match="base: is required"):
        load_search_space(path)
    path.write_text("base: nowhere.yaml")
    with pytest.raises(SearchSpaceError, match="base: spec file .*nowhere.yaml' does not exist"):
        load_search_space(path)


def test_a_duplicate_key_in_an_inline_base_names_its_path():
    # Unknown keys, duplicate keys and broken YAML: the contract of every archkit file
    # (tests/spec/test_file_formats.py); an inline base spec's rows are paths of the space.
    text = "base:\n  layers:\n    - {op: conv2d, c: 8}\n    - {op: avgpool, op: fc}\n"
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(text, source="space.yaml")
    assert info.value.field == "base.layers[1].op"
    assert "duplicate key 'op' (first at line 4, again at line 4" in str(info.value)


def test_bad_base_spec_is_a_spec_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("layers: [{op: conv2d, c: 8, s: 3}]")
    (tmp_path / "space.yaml").write_text("base: bad.yaml")
    with pytest.raises(SpecError, match="bad.yaml: row 0 \\(conv2d\\): s"):
        load_search_space(tmp_path / "space.yaml")


def test_spaces_are_frozen():
    space = load_search_space(SPACES / "mobilenetv1.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        space.width = None


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 300),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.lists(st.floats(-1, 10), max_size=3),
)


@given(
    st.dictionaries(
        st.sampled_from(["low", "high", "step", "choices", "per_stage", "x"]), _VALUES, max_size=4
    ),
    st.sampled_from(["width", "resolution", "expansion"]),
)
def test_random_ranges_load_or_fail_cleanly(mapping, key):
    text = yaml.safe_dump({"base": "specs/mobilenetv2.yaml", key: mapping})
    try:
        space = parse_search_space(text, source="fuzz.yaml", base_dir=SPECS.parent)
    except SpecError as exc:
        assert str(exc).startswith("fuzz.yaml: ")
        return
    for params in space.corners():
        space.candidate(params)
