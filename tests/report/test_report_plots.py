"""Plot data (no plotly needed) and the plot command's inputs and outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from archkit.cli import cli, main
from archkit.report import ReportError, figure5_data, load_trials, pareto_data
from archkit.search import pareto_front

from .conftest import ROOT, SPECS_DIR, write_run


def test_importing_and_computing_plot_data_does_not_import_plotly():
    code = (
        "import sys; from archkit.report import figure5_data, pareto_data; "
        f"figure5_data({str(SPECS_DIR)!r}); pareto_data('memory', specs_dir={str(SPECS_DIR)!r}); "
        "bad = [m for m in ('plotly', 'kaleido', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_figure5_points():
    data = figure5_data(SPECS_DIR)
    frame = data.frame
    v2 = frame[frame["series"] == "MobileNetV2"]
    # The caption: 0.35, 0.5, 0.75, 1.0 at every resolution 96..224, plus 1.4 at 224.
    assert len(v2) == 4 * 5 + 1
    point = v2[(v2["width"] == 1.0) & (v2["resolution"] == 224)].iloc[0]
    assert point["y"] == 71.8  # TF-slim's published top-1
    assert 300 < point["x"] < 301  # archkit's exact MAdds, in millions
    assert set(frame["series"]) == {"MobileNetV2", "MobileNetV1", "ShuffleNet g=3", "NasNet-A"}
    assert len(frame[frame["series"] == "MobileNetV1"]) == 16
    nasnet = frame[frame["series"] == "NasNet-A"].iloc[0]
    assert (nasnet["x"], nasnet["y"]) == (564, 74.0)
    assert data.maximize_y


def _brute_force_front(points: np.ndarray, signs: np.ndarray) -> list[bool]:
    """The textbook definition: no other point is as good everywhere and better somewhere."""
    loss = points * signs
    out = []
    for i, p in enumerate(loss):
        if np.isnan(p).any():
            out.append(False)
            continue
        others = [q for j, q in enumerate(loss) if j != i and not np.isnan(q).any()]
        out.append(not any((q <= p).all() and (q < p).any() for q in others))
    return out


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(
    "directions", [("minimize", "maximize"), ("minimize", "minimize", "maximize")]
)
def test_pareto_front_is_the_textbook_front(seed: int, directions: tuple[str, ...]):
    rng = np.random.default_rng(seed)
    # Few distinct values: ties and duplicate points are common; some NaNs.
    points = rng.integers(0, 5, size=(30, len(directions))).astype(float)
    points[rng.random(points.shape) < 0.05] = np.nan
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    assert list(pareto_front(points, directions)) == _brute_force_front(points, signs)


def test_pareto_front_agrees_with_optunas_best_trials():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "maximize"])
    points = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (2.0, 1.0), (1.0, 1.0), (4.0, 3.0)]
    for x, y in points:
        study.add_trial(optuna.trial.create_trial(values=[x, y]))
    expected = {t.number for t in study.best_trials}
    got = set(np.flatnonzero(pareto_front(np.array(points), ["minimize", "maximize"])))
    assert got == expected == {0, 1, 4}


def test_run_trials_keep_the_searchs_front(run_dir: Path):
    trials = load_trials(run_dir)
    assert list(trials["label"])[:2] == ["trial 0", "trial 1 (winner #1)"]
    assert "trial 4" not in set(trials["label"])  # a FAIL trial has nothing to draw
    assert len(trials) == 6
    assert set(trials.loc[trials["on_front"], "label"]) == {
        "trial 1 (winner #1)",
        "trial 2",
        "trial 5 (winner #2)",
    }
    assert trials.attrs["winners"] == ["01_w075_r192"]


def test_run_on_the_family_axes_with_latency_csv(run_dir: Path, tmp_path: Path):
    latency = tmp_path / "latency.csv"
    latency.write_text(
        "family,width,resolution,latency_ms\nmobilenetv2,1.0,224,42.0\nmobilenetv1,0.5,160,7.5\n",
        encoding="utf-8",
    )
    data = pareto_data("latency", run=run_dir, latency_csv=latency, specs_dir=SPECS_DIR)
    frame = data.frame
    assert set(frame["kind"]) == {"family", "trial"}
    families = frame[frame["kind"] == "family"]
    assert sorted(families["y"]) == [7.5, 42.0]  # only measured models are drawn
    assert len(frame[frame["kind"] == "trial"]) == 6
    assert any("left out for lack of latency_ms" in n for n in data.notes)


def test_accuracy_plot_draws_the_objective_of_trials(run_dir: Path):
    data = pareto_data("accuracy", run=run_dir, families=("mobilenetv2",), specs_dir=SPECS_DIR)
    trials = data.frame[data.frame["kind"] == "trial"]
    # The objective column of the fixture's completed trials (conftest.TRIALS_CSV).
    assert list(trials["y"]) == [71.8, 68.6, 59.9, 74.9, 50.7, 65.0]
    assert any("estimate of top-1" in n for n in data.notes)


def test_memory_plot_counts_families_like_the_run(run_dir: Path):
    data = pareto_data(
        "memory",
        run=run_dir,
        families=("mobilenetv2",),
        specs_dir=SPECS_DIR,
        dtype="fp16",
        schedule="fused",
    )
    v2 = data.frame[
        (data.frame["kind"] == "family")
        & (data.frame["width"] == 1.0)
        & (data.frame["resolution"] == 224)
    ].iloc[0]
    assert v2["peak_activation_bytes"] == 6021120  # fp32 naive, as run.json says


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_plot_command_prints_data(run_dir: Path, fmt: str):
    result = CliRunner().invoke(
        cli,
        [
            "plot",
            "--y",
            "memory",
            "--run",
            str(run_dir),
            "--spec",
            str(SPECS_DIR / "mobilenetv2.yaml"),
            "--specs-dir",
            str(SPECS_DIR),
            "--format",
            fmt,
        ],
    )
    assert result.exit_code == 0, result.output
    if fmt == "json":
        points = json.loads(result.output)["points"]
        assert {p["kind"] for p in points} == {"family", "spec", "trial"}
    else:
        assert result.output.splitlines()[0].startswith("series,kind,label")


def test_bad_trials_csv_is_a_usage_error(tmp_path: Path, capsys):
    run = write_run(tmp_path / "bad", "number,state,width\n0,COMPLETE,1.0\n")
    with pytest.raises(ReportError, match="missing column"):
        load_trials(run)
    assert main(["plot", "--run", str(run), "--format", "csv"]) == 2
    assert "missing column(s) resolution" in capsys.readouterr().err


def test_unreadable_numbers_name_the_column(tmp_path: Path):
    from .conftest import TRIALS_CSV

    run = write_run(tmp_path / "bad", TRIALS_CSV.replace("41.5", "fast"))
    with pytest.raises(ReportError, match="'latency_ms' must be numeric"):
        load_trials(run)


def test_missing_run_directory(tmp_path: Path, capsys):
    assert main(["plot", "--run", str(tmp_path / "nope"), "--format", "csv"]) == 2
    assert "no trials.csv" in capsys.readouterr().err


def test_latency_without_measurements_is_a_usage_error(capsys):
    assert main(["plot", "--y", "latency", "--specs-dir", str(SPECS_DIR), "--no-png"]) == 2
    assert "no point has a value for latency_ms" in capsys.readouterr().err
