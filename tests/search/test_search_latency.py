"""``--budget-latency`` / ``--device``: measured latency is a budget and an Optuna constraint,
checked only after the analytic budgets pass. The logic runs against a stand-in meter; one real
measurement uses archkit.device's local ``host`` device (TVM), skipped if TVM is unavailable."""

from __future__ import annotations

import json

import pytest

from archkit.errors import BudgetError
from archkit.search import Budgets, SearchInputError, _run, parse_search_space, run_search

from .conftest import SPECS, SUBPROCESS_ENV, archkit


class FakeMeter:
    """Latency proportional to MAdds (1 ms per 5 M); counts what it was asked to measure."""

    measured: list = []
    model = None  # no latency model: every candidate is "measured"

    def __init__(self, device, options, latency="measure", runtime="tvm"):
        self.device = device

    def describe(self):
        return {"source": "measure", "device": self.device}

    def __call__(self, spec):
        from archkit.cost import count

        FakeMeter.measured.append(spec)
        return count(spec).madds / 5e6


@pytest.fixture
def fake_meter(monkeypatch):
    FakeMeter.measured = []
    monkeypatch.setattr(_run, "LatencyMeter", FakeMeter)
    return FakeMeter


SPACE = f"""
base: {SPECS / "mobilenetv2.yaml"}
width: {{low: 0.35, high: 1.4}}
resolution: {{low: 96, high: 224, step: 32}}
"""


def test_latency_budget_with_analytic_budgets(fake_meter, tmp_path):
    space = parse_search_space(SPACE)
    result = run_search(
        space,
        budgets=Budgets.parse(madds="200M", latency="30ms"),
        device="rpi4",
        trials=40,
        seed=0,
        run_dir=tmp_path / "lat",
    )
    trials = result.trials
    # Over the analytic budget: never built, so never measured.
    over_madds = trials[trials["madds"] > 200_000_000]
    assert len(over_madds) and over_madds["latency_ms"].isna().all()
    assert len(fake_meter.measured) == int((trials["madds"] <= 200_000_000).sum())
    # Measured and over 30 ms (150 M MAdds here): infeasible, not reported.
    slow = trials[trials["latency_ms"] > 30]
    assert len(slow) and (~slow["feasible"]).all() and (slow["state"] == "PRUNED").all()
    assert (result.best["latency_ms"] <= 30).all() and len(result.best) > 0
    assert result.info["budgets"]["latency_ms"] == 30.0 and result.info["device"] == "rpi4"


def test_latency_pareto(fake_meter, tmp_path):
    result = run_search(
        parse_search_space(SPACE),
        device="rpi4",
        pareto="accuracy,latency",
        trials=20,
        seed=0,
        run_dir=tmp_path / "front",
    )
    assert result.best["latency_ms"].is_monotonic_increasing
    assert result.best["objective"].is_monotonic_increasing


def test_latency_nobody_meets(fake_meter, tmp_path):
    with pytest.raises(
        BudgetError,
        match=r"budgets.latency_ms 0.1ms; the smallest candidate "
        r"\(width 0.35, resolution 96\) costs .* ms",
    ):
        run_search(
            parse_search_space(SPACE),
            budgets=Budgets.parse(latency="0.1ms"),
            device="rpi4",
            trials=3,
            run_dir=tmp_path / "none",
        )


def test_latency_budget_needs_a_device(tmp_path):
    with pytest.raises(SearchInputError, match="budgets.latency_ms: needs device"):
        run_search(
            parse_search_space(SPACE),
            budgets=Budgets.parse(latency="30ms"),
            trials=1,
            run_dir=tmp_path / "x",
        )


def test_host_device_measures_for_real(tmp_path):
    """2 trials of a one-candidate space on the local host device (one TVM compile)."""
    pytest.importorskip("tvm", reason="latency needs TVM (archkit.device)")
    device = pytest.importorskip("archkit.device")
    try:
        device.load_device("host")
    except Exception as exc:  # noqa: BLE001 - any failure means no usable host device here
        pytest.skip(f"host device unavailable: {exc}")
    space = tmp_path / "one.yaml"
    space.write_text(
        f"base: {SPECS / 'mobilenetv2.yaml'}\nwidth: [0.35]\nresolution: {{choices: [32]}}\n"
    )
    proc = archkit(
        "search",
        space,
        "--device",
        "host",
        "--latency",
        "measure",  # a latency model in the user's cache must not turn this into a prediction
        "--budget-latency",
        "1s",
        "--trials",
        "2",
        "--run-dir",
        tmp_path / "run",
        "--format",
        "json",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    [best] = json.loads(proc.stdout)["results"]
    assert 0 < best["latency_ms"] < 1000


def test_unreachable_device_exits_2_before_any_trial(tmp_path, monkeypatch):
    pytest.importorskip("archkit.device")
    run_dir = tmp_path / "run"
    proc = archkit(
        "search",
        "--budget-latency",
        "30ms",
        "--device",
        "rpi4",
        "--trials",
        "2",
        "--run-dir",
        run_dir,
        env={**SUBPROCESS_ENV, "ARCHKIT_DEVICE_HOST": "", "ARCHKIT_RPC_TRACKER": ""},
    )
    assert proc.returncode == 2, proc.stderr
    assert "rpi4" in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists()
