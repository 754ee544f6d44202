"""Budget strings: units, errors that name the option, and KB as the paper's Table 3 counts it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archkit.errors import ArchkitError
from archkit.search import Budgets, SearchInputError, parse_count, parse_latency, parse_memory


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("150M", 150_000_000),
        ("1.5G", 1_500_000_000),
        ("300K", 300_000),
        ("2M", 2_000_000),
        ("150e6", 150_000_000),
        ("123456", 123_456),
        (" 150 M ", 150_000_000),
        ("0.5M", 500_000),
    ],
)
def test_counts(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512KB", 512_000),
        ("1.5MB", 1_500_000),
        ("512KiB", 524_288),
        ("1MiB", 1_048_576),
        ("100B", 100),
        ("2GB", 2_000_000_000),
        ("512kb", 512_000),
    ],
)
def test_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30ms", 30.0),
        ("0.03s", 30.0),
        ("500us", 0.5),
        ("2.5 ms", 2.5),
    ],
)
def test_latency(text, expected):
    assert parse_latency(text) == pytest.approx(expected)


def test_kb_is_1000_bytes_as_in_table_3():
    # Table 3 of the paper lists the largest MobileNetV2 tensor, 16 x 112 x 112 in 16-bit floats,
    # as "400K" and MobileNetV1's 64 x 112 x 112 as "1600K": thousands of bytes, not 1024s
    # (which would read 392K and 1568K).
    assert round(16 * 112 * 112 * 2 / parse_memory("1KB")) == 401
    assert round(64 * 112 * 112 * 2 / parse_memory("1KB")) == 1606
    assert round(16 * 112 * 112 * 2 / parse_memory("1KiB")) == 392


@pytest.mark.parametrize(
    ("option", "kwargs", "needle"),
    [
        ("budgets.madds", {"madds": "150Q"}, "unknown unit 'Q'"),
        ("budgets.madds", {"madds": "-150M"}, "must be positive"),
        ("budgets.madds", {"madds": "0"}, "must be positive"),
        ("budgets.madds", {"madds": "lots"}, "expected a number"),
        ("budgets.madds", {"madds": "150m"}, "unknown unit"),
        ("budgets.params", {"params": "2X"}, "unknown unit"),
        ("budgets.peak_activation_bytes", {"memory": "512"}, "needs a unit"),
        ("budgets.peak_activation_bytes", {"memory": "512KQ"}, "unknown unit"),
        ("budgets.peak_activation_bytes", {"memory": "-1KB"}, "must be positive"),
        ("budgets.latency_ms", {"latency": "30"}, "needs a unit"),
        ("budgets.latency_ms", {"latency": "30min"}, "unknown unit"),
        ("budgets.latency_ms", {"latency": "inf ms"}, "expected a number"),
        ("budgets.latency_ms", {"latency": "nan"}, "expected a number"),
    ],
)
def test_errors_name_the_budget_field(option, kwargs, needle):
    with pytest.raises(SearchInputError) as info:
        Budgets.parse(**kwargs)
    assert str(info.value).startswith(f"{option}: ") and info.value.option == option
    assert needle in str(info.value)
    assert isinstance(info.value, ArchkitError) and info.value.exit_code == 2


@given(st.integers(min_value=1, max_value=10**12))
def test_bare_counts_are_exact(n):
    assert parse_count(str(n)) == n


@given(
    st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    st.sampled_from(["B", "KB", "MB", "GB", "KiB", "MiB"]),
)
def test_memory_scales(value, unit):
    scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1024**2}[unit]
    assert parse_memory(f"{value!r}{unit}") == round(value * scale)


def test_budgets_split_analytic_from_measured():
    budgets = Budgets.parse(madds="150M", memory="512KB", latency="30ms")
    assert budgets.analytic == {"madds": 150_000_000, "peak_activation_bytes": 512_000}
    assert budgets.latency_ms == 30.0
    assert not Budgets()
