"""The ``published`` estimator: its data match the reference file, its features are the exact
analytic counts, its leave-one-out error is reported and small, and it flags extrapolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from archkit.cost import count
from archkit.reference import TFSLIM_MOBILENET_V1, TFSLIM_MOBILENET_V2
from archkit.search import load_search_space, make_estimator, published_calibration
from archkit.spec import apply_overrides, load_spec

from .conftest import ROOT, SPACES, SPECS

# (width, resolution, published MACs in millions, published params in millions, top-1 %)
MOBILENETV2 = [(r.width, r.resolution, r.macs_m, r.params_m, r.top1) for r in TFSLIM_MOBILENET_V2]
MOBILENETV1 = [(r.width, r.resolution, r.macs_m, r.params_m, r.top1) for r in TFSLIM_MOBILENET_V1]


def test_features_are_exact_counts_not_rounded_macs():
    cal = published_calibration()
    row = next(r for r in cal.rows if r[0] == "mobilenetv2" and r[1:3] == (0.75, 192))
    # The published table says 153 M; the exact count is 153.94 M (over a 150 M budget).
    assert (
        row[3]
        == count(
            apply_overrides(load_spec(SPECS / "mobilenetv2.yaml"), width=0.75, resolution=192)
        ).madds
    )
    assert 153_900_000 < row[3] < 154_000_000
    # Every published MobileNetV2 MAC count is the exact one truncated to whole millions.
    exact = {(r[1], r[2]): r[3] for r in cal.rows if r[0] == "mobilenetv2"}
    for width, resolution, macs, _, _ in MOBILENETV2:
        assert 0 <= exact[width, resolution] / 1e6 - macs < 1, (width, resolution)
    # MobileNetV1's differ by up to 8.4 M (0.75 x 224: 325.4 M counted, 317 M published; 0.25 x
    # 192: 30.2 M vs 34 M): the features are archkit's own counts, consistent with every
    # candidate a search counts.
    exact = {(r[1], r[2]): r[3] for r in cal.rows if r[0] == "mobilenetv1"}
    for width, resolution, macs, _, _ in MOBILENETV1:
        assert abs(exact[width, resolution] / 1e6 - macs) < 8.5, (width, resolution)


def test_leave_one_out_error_is_reported_and_small():
    cal = published_calibration()
    assert cal.points == len(MOBILENETV2) + len(MOBILENETV1) == 38
    assert cal.loo_mae < 0.6 and cal.loo_max < 2.0
    # Leave-one-out predictions are honest: never better than the in-sample fit.
    assert cal.loo_rmse >= cal.fit_rmse
    described = make_estimator("published").describe()
    assert described["loo_mae_top1"] == round(cal.loo_mae, 3)


def test_predictions_track_the_published_numbers():
    estimator = make_estimator("published")
    estimator.prepare(load_search_space(SPACES / "mobilenetv2.yaml"))
    base = load_spec(SPECS / "mobilenetv2.yaml")
    errors = []
    for width, resolution, _, _, top1 in MOBILENETV2:
        spec = apply_overrides(base, width=width, resolution=resolution)
        estimate = estimator.estimate(spec, count(spec))
        assert estimate.calibrated is True and estimate.note == ""
        errors.append(abs(estimate.value - top1))
    assert max(errors) < 1.5 and sum(errors) / len(errors) < 0.6


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"expansion": 4}, "expansion 4 (published: 6 only)"),
        ({"width": 1.6}, "width 1.6 outside 0.35..1.4"),
        ({"resolution": 256}, "resolution 256 outside 96..224"),
    ],
)
def test_extrapolation_is_flagged(overrides, needle):
    estimator = make_estimator("published")
    estimator.prepare(load_search_space(SPACES / "mobilenetv2.yaml"))
    spec = apply_overrides(load_spec(SPECS / "mobilenetv2.yaml"), **overrides)
    estimate = estimator.estimate(spec, count(spec))
    assert estimate.calibrated is False and needle in estimate.note


def test_other_repeats_are_flagged():
    space = load_search_space(SPACES / "mobilenetv2_stages.yaml")
    estimator = make_estimator("published")
    estimator.prepare(space)
    params = {r.name: r.extremes[0] for r in space.ranges}
    params.update({k: 6 for k in params if k.startswith("expansion_")})
    spec = space.candidate({**params, "width": 1.0, "resolution": 224})
    estimate = estimator.estimate(spec, count(spec))
    assert estimate.calibrated is False and "repeats" in estimate.note


def test_mobilenetv1_range_starts_at_128():
    estimator = make_estimator("published")
    space = load_search_space(SPACES / "mobilenetv1.yaml")
    estimator.prepare(space)
    assert estimator.family == "mobilenetv1"
    inside = space.candidate({"width": 0.5, "resolution": 160})
    outside = space.candidate({"width": 0.5, "resolution": 96})
    assert estimator.estimate(inside, count(inside)).calibrated is True
    assert "resolution 96 outside 128..224" in estimator.estimate(outside, count(outside)).note


def test_refuses_families_it_was_not_calibrated_on(tmp_path):
    from archkit.search import SearchInputError, parse_search_space

    space = parse_search_space(f"base: {SPECS / 'shufflenet_g3.yaml'}\nwidth: [1.0, 1.5]")
    with pytest.raises(
        SearchInputError,
        match="objective: published is calibrated on MobileNetV2 and MobileNetV1 only",
    ):
        make_estimator("published").prepare(space)


def test_reference_path_is_beside_the_repository():
    # CI keeps ../shared beside the checkout; installed archkit carries the numbers itself.
    assert Path(__file__).resolve().parents[2] == ROOT
