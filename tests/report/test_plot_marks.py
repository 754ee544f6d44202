"""What a plot marks: each spec by name, a run's budgets and winner, and a front only on the axis
it belongs to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archkit.cost import count
from archkit.report import draw, pareto_data
from archkit.spec import load_spec

from .conftest import SPECS_DIR

pytest.importorskip("plotly")


def _with_budgets(run_dir: Path, **budgets: float | None) -> Path:
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    info["budgets"] = {"madds": None, "params": None, "peak_activation_bytes": None,
                       "latency_ms": None, **budgets}
    (run_dir / "run.json").write_text(json.dumps(info), encoding="utf-8")
    return run_dir


def test_each_spec_is_its_own_named_point():
    paths = [SPECS_DIR / f"{name}.yaml" for name in ("mobilenetv2", "mobilenetv1",
                                                      "shufflenet_g3")]
    data = pareto_data("params", families=(), specs=tuple(paths))
    frame = data.frame
    assert list(frame["series"]) == ["mobilenetv2", "mobilenetv1", "shufflenet_g3"]
    # The y of each point is sum(p.numel())-exact params (tests/cost checks count against it).
    for path, y in zip(paths, frame["y"], strict=True):
        assert y == pytest.approx(count(load_spec(path)).params / 1e6)
    fig = draw(data)
    named = {trace.name: trace for trace in fig.data}
    for name in ("mobilenetv2", "mobilenetv1", "shufflenet_g3"):
        trace = named[name]
        assert "text" in trace.mode  # the name is written next to the marker, in the PNG too
        assert list(trace.text) == [name]


def test_two_specs_with_one_name_are_told_apart_by_file(tmp_path: Path):
    copy = tmp_path / "v2_copy.yaml"
    copy.write_text((SPECS_DIR / "mobilenetv2.yaml").read_text(encoding="utf-8"))
    data = pareto_data("params", families=(), specs=(SPECS_DIR / "mobilenetv2.yaml", copy))
    assert list(data.frame["series"]) == ["mobilenetv2 (mobilenetv2.yaml)",
                                          "mobilenetv2 (v2_copy.yaml)"]


def test_budgets_and_winner_of_a_run_are_drawn(run_dir: Path):
    _with_budgets(run_dir, madds=150e6, peak_activation_bytes=512e3)
    data = pareto_data("memory", run=run_dir, families=(), specs_dir=SPECS_DIR)
    assert {(lim.axis, lim.value) for lim in data.limits} == {("x", 150.0), ("y", 512.0)}
    winner = data.frame[data.frame["winner_rank"] == 1]
    assert list(winner["label"]) == ["trial 1 (winner #1)"]  # best.csv's rank 1
    fig = draw(data)
    assert {shape.type for shape in fig.layout.shapes} == {"line"}
    assert {(s.x0, s.y0) for s in fig.layout.shapes if s.x0 == s.x1} == {(150.0, 0)}
    labels = {a.text for a in fig.layout.annotations}
    assert {"budget 150M MAdds", "budget 512 KB peak memory"} <= labels
    assert [t.name for t in fig.data if "winner" in t.name] == ["run fixture: winner"]


def test_no_budget_line_for_an_axis_without_a_budget(run_dir: Path):
    _with_budgets(run_dir, madds=150e6, peak_activation_bytes=512e3)
    data = pareto_data("params", run=run_dir, families=(), specs_dir=SPECS_DIR)
    assert [(lim.axis, lim.value) for lim in data.limits] == [("x", 150.0)]


@pytest.mark.parametrize("metric", ["memory", "latency", "params"])
def test_no_accuracy_front_on_a_cost_axis(run_dir: Path, metric: str):
    data = pareto_data(metric, run=run_dir, families=(), specs_dir=SPECS_DIR)
    trials = data.frame[data.frame["kind"] == "trial"]
    assert not trials["on_front"].any()
    assert any("not drawn" in note for note in data.notes)
    assert not [t for t in draw(data).data if "front" in t.name]


def test_the_runs_front_stays_on_the_accuracy_axis(run_dir: Path):
    data = pareto_data("accuracy", run=run_dir, families=(), specs_dir=SPECS_DIR)
    trials = data.frame[data.frame["kind"] == "trial"]
    # conftest.TRIALS_CSV: the search flagged trials 1, 2 and 5.
    assert sorted(trials.loc[trials["on_front"], "label"]) == [
        "trial 1 (winner #1)", "trial 2", "trial 5 (winner #2)"]
    assert [t.name for t in draw(data).data if "front" in t.name] == ["run fixture: Pareto front"]
