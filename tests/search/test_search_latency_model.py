"""``archkit search --device D`` with a latency model: every candidate's latency is predicted
(no device), the winners are measured end to end and reported against their predictions."""

from __future__ import annotations

import json

import pytest

from archkit.device import TimingProtocol, build_latency_model
from archkit.search import (
    Budgets,
    SearchInputError,
    parse_search_space,
    random_candidates,
    run_search,
)

from .conftest import SPECS

SPACE = f"""
name: small
base: {SPECS / "mobilenetv2.yaml"}
width: {{low: 0.35, high: 0.5}}
resolution: {{low: 96, high: 128, step: 32}}
"""
FAST = TimingProtocol(warmup_runs=2, repeats=3, min_repeat_ms=2.0, interleave=3, profile_runs=3,
                      probe_pause_s=0.0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    space = parse_search_space(SPACE)
    build_latency_model("host", random_candidates([space], seed=0), runtime="onnxruntime",
                        networks=5, minutes=None, protocol=FAST, cache_dir=folder,
                        progress=False)
    return folder


def test_search_predicts_and_measures_only_the_winners(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHKIT_CACHE_DIR", str(cache))

    def no_tvm(*args, **kwargs):
        raise AssertionError("with a latency model no candidate is compiled with TVM")

    monkeypatch.setattr("archkit.device.measure_latency", no_tvm)
    result = run_search(parse_search_space(SPACE), budgets=Budgets.parse(latency="1000ms"),
                        device="host", latency="model", latency_runtime="onnxruntime",
                        verify=2, trials=8, seed=0, run_dir=tmp_path / "run")
    latency = result.info["latency"]
    assert latency["source"] == "model" and latency["runtime"] == "onnxruntime"
    assert latency["model"]["networks"] == 5
    winners = latency["winners"]
    assert len(winners) == 2
    for winner, row in zip(winners, result.best.head(2).itertuples(), strict=True):
        assert winner["measured_ms"] > 0
        # The prediction the search ranked by is the one reported beside the measurement.
        assert winner["predicted_ms"] == pytest.approx(row.latency_ms)
        assert winner["error"] == pytest.approx(
            (winner["predicted_ms"] - winner["measured_ms"]) / winner["measured_ms"])
    on_disk = json.loads((tmp_path / "run" / "run.json").read_text())
    assert on_disk["latency"]["winners"] == winners


def test_model_required_but_missing_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHKIT_CACHE_DIR", str(tmp_path))
    with pytest.raises(SearchInputError, match="archkit latency build host --runtime tvm"):
        run_search(parse_search_space(SPACE), budgets=Budgets.parse(latency="10ms"),
                   device="host", latency="model", trials=1, run_dir=tmp_path / "run")
