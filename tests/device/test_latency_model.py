"""Latency models: a real (tiny) onnxruntime build round-trips through JSON, predictions use no
device, a model built under other conditions is refused, an unseen kernel kind is an error, and
the fitting pieces recover known answers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from archkit.device._latency import (
    LatencyModel,
    LatencyModelError,
    TimingProtocol,
    _runtimes,
    build_latency_model,
    evaluate_latency_model,
    list_latency_models,
    load_latency_model,
    predict_latency,
)
from archkit.device._latency._build import _passes_warning
from archkit.device._latency._model import _fit_correction, calmer_measurements, fit_model
from archkit.device._latency._store import data_path, read_records
from archkit.errors import ArchkitWarning
from archkit.search import parse_search_space, random_candidates
from archkit.spec import apply_overrides, load_spec

REPO = Path(__file__).resolve().parents[2]

TINY_SPACE = textwrap.dedent(
    """
    name: tiny
    base:
      name: tiny
      input: {resolution: 32, channels: 3}
      num_classes: 10
      width: 1.0
      layers:
        - {op: conv2d, c: 16, s: 2}
        - {op: bottleneck, t: 1, c: 8, n: 1, s: 1}
        - {op: bottleneck, t: 6, c: 16, n: 2, s: 2}
        - {op: conv2d, c: 64, kernel: 1}
        - {op: avgpool}
        - {op: fc}
    width: {low: 0.5, high: 1.0}
    resolution: {low: 32, high: 64, step: 16}
    expansion: {low: 2, high: 6, step: 1}
    """
)
#: A protocol short enough for tests (the numbers are not meant to be accurate).
FAST = TimingProtocol(warmup_runs=2, repeats=3, min_repeat_ms=2.0, interleave=3, profile_runs=3,
                      probe_pause_s=0.0)
HOST_1T = "name: host-1t\ntarget: host\nthreads: 1\nconnection: {kind: local}\n"


@pytest.fixture(scope="module")
def space():
    return parse_search_space(TINY_SPACE, source="<tiny>")


@pytest.fixture(scope="module")
def built(tmp_path_factory, space):
    cache = tmp_path_factory.mktemp("latency-cache")
    records = []
    result = build_latency_model("host", random_candidates([space], seed=0), networks=6,
                                 minutes=None, protocol=FAST, cache_dir=cache, progress=False,
                                 on_record=records.append)
    return cache, result, records


def test_build_round_trips_through_json(built, space):
    cache, result, records = built
    assert result.networks == 6 and result.new_networks == 6 and len(records) == 6
    assert result.kernels == sum(len(r["kernels"]) for r in records)
    data = json.loads(result.path.read_text())
    assert data["format"] == "archkit-latency-model"
    assert data["conditions"]["runtime"] == "onnxruntime"
    assert data["conditions"]["threads"] == result.model.conditions.threads
    assert data["protocol"] == FAST.to_dict()
    assert "xgboost" in data["kinds"]["conv_1x1"]  # xgboost's own JSON, not a pickle
    again = LatencyModel.from_json(data)
    for _, candidate in zip(range(5), random_candidates([space], seed=9), strict=False):
        spec = candidate.spec
        assert again.predict(spec) == pytest.approx(result.model.predict(spec), rel=1e-9)
        assert again.predict(spec) > 0
    [listed] = list_latency_models(cache)
    assert (listed["device"], listed["runtime"], listed["networks"]) == ("host", "onnxruntime", 6)


def test_per_kernel_times_name_archkit_nodes(built):
    _, _, records = built
    record = records[0]
    nodes = {f"{b}:{n}" for b, n, _, _ in record["kernels"]}
    measured = set(record["kernels_us"]) - {"network"}
    assert measured and measured <= nodes
    # Every convolution ran as a kernel of its own (onnxruntime fuses its BN and activation).
    convs = {f"{b}:{n}" for b, n, kind, _ in record["kernels"] if kind.startswith("conv")}
    assert convs <= measured


def test_build_resumes_without_remeasuring(built, space):
    cache, _, records = built
    seen = {r["fingerprint"] for r in records}
    more = []
    result = build_latency_model("host", random_candidates([space], seed=0), networks=2,
                                 minutes=None, cache_dir=cache, progress=False,
                                 on_record=more.append)
    assert result.new_networks == 2 and result.networks == 8
    assert not seen & {r["fingerprint"] for r in more}
    # The resumed build keeps the protocol its measurements were taken with.
    assert result.model.protocol == FAST


def test_prediction_uses_no_device(built, space, monkeypatch):
    cache, _, _ = built

    def boom(*args, **kwargs):
        raise AssertionError("a prediction must not measure")

    monkeypatch.setattr(_runtimes, "measure_group", boom)
    monkeypatch.setattr("archkit.device.measure_latency", boom)
    import onnxruntime

    session = onnxruntime.InferenceSession

    def trees_only(model, *args, **kwargs):
        # The tree evaluator's session holds trees built in memory; measuring loads a network.
        if not isinstance(model, bytes):
            boom()
        return session(model, *args, **kwargs)

    monkeypatch.setattr("onnxruntime.InferenceSession", trees_only)
    spec = next(random_candidates([space], seed=3)).spec
    assert predict_latency(spec, "host", cache_dir=cache) > 0


def test_prediction_imports_no_runtime(built):
    cache, _, _ = built
    code = textwrap.dedent(
        f"""
        import sys
        from archkit.device._latency import predict_latency
        from archkit.spec import apply_overrides, parse_spec
        from archkit.search import parse_search_space
        from archkit.search import random_candidates
        space = parse_search_space({TINY_SPACE!r})
        spec = next(random_candidates([space], seed=0)).spec  # measured by the build
        print(predict_latency(spec, "host", cache_dir={str(cache)!r}))
        print(sorted(m for m in ("torch", "tvm", "onnxruntime") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    value, modules = out.stdout.strip().splitlines()
    # onnxruntime evaluates the trees (archkit.device._latency._trees); torch and tvm stay out.
    assert float(value) > 0 and modules == "['onnxruntime']"


def _copy_with(cache: Path, tmp_path: Path, **conditions) -> Path:
    source = cache / "latency" / "host-onnxruntime.json"
    data = json.loads(source.read_text())
    data["conditions"].update(conditions)
    target = tmp_path / "latency" / "host-onnxruntime.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"threads": 64}, "threads: built with 64, now"),
        ({"runtime_version": "0.0.1"}, "runtime version: built with 0.0.1, now"),
        ({"torch_version": "1.0"}, "torch version: built with 1.0"),
        ({"cpu": "Some Other CPU"}, "cpu: built with Some Other CPU"),
    ],
)
def test_foreign_model_is_refused(built, tmp_path, changes, expected):
    cache, _, _ = built
    other = _copy_with(cache, tmp_path, **changes)
    with pytest.raises(LatencyModelError) as err:
        load_latency_model("host", cache_dir=other)
    message = str(err.value)
    assert expected in message
    assert "archkit latency build host --runtime onnxruntime" in message
    with pytest.raises(LatencyModelError, match="built under other conditions"):
        predict_latency(load_spec(REPO / "specs" / "mobilenetv2.yaml"), "host", cache_dir=other)


def test_model_of_another_format_is_refused(built):
    cache, result, _ = built
    data = result.model.to_json()
    data["features"] = data["features"][:-1]
    with pytest.raises(LatencyModelError, match="another archkit"):
        LatencyModel.from_json(data)
    with pytest.raises(LatencyModelError, match="not an archkit latency model"):
        LatencyModel.from_json({"format": "pickle"})


def test_missing_model_says_how_to_build(tmp_path):
    with pytest.raises(LatencyModelError, match="archkit latency build host --runtime tvm"):
        load_latency_model("host", runtime="tvm", cache_dir=tmp_path)
    with pytest.raises(LatencyModelError, match="runtime must be one of"):
        load_latency_model("host", runtime="tflite", cache_dir=tmp_path)


def test_unseen_kernel_kind_is_a_clear_error(built):
    _, result, _ = built
    shufflenet = apply_overrides(load_spec(REPO / "specs" / "shufflenet_g3.yaml"), resolution=64)
    with pytest.raises(LatencyModelError) as err:
        result.model.predict(shufflenet)
    message = str(err.value)
    assert "never measured" in message and "archkit latency build host" in message
    assert "maxpool" in message or "conv_grouped" in message or "shuffle" in message


def test_extrapolation_is_flagged(built, space):
    _, result, _ = built
    inside = next(random_candidates([space], seed=0)).spec  # the build's first network
    assert result.model.explain(inside).extrapolations == ()
    wide = replace(space.base, width=1.4, resolution=96)
    explained = result.model.explain(wide)
    assert explained.extrapolations and "outside the measured" in explained.extrapolations[0]
    assert explained.latency_ms == pytest.approx(result.model.predict(wide))
    assert len(explained.blocks_ms) == len(space.base.rows) + 1  # the stage of 2 repeats


def test_adapting_to_another_device(built, space, tmp_path):
    cache, _, _ = built
    device = tmp_path / "host-1t.yaml"
    device.write_text(HOST_1T)
    records = []
    adapted = build_latency_model(device, random_candidates([space], seed=21), networks=3,
                                  minutes=None, from_model="host", cache_dir=cache,
                                  progress=False, on_record=records.append)
    assert adapted.new_networks == 3 and adapted.networks == 3
    # Each network measured (and profiled) twice, the second pass last first.
    first, second = records[:3], records[3:]
    assert [r["fingerprint"] for r in second] == [r["fingerprint"] for r in first][::-1]
    assert all(r["kernels_us"] for r in records)
    assert adapted.kernels == sum(len(r["kernels"]) for r in first)
    model = adapted.model
    # How the passes compare, as timed, is stored with the model.
    again = {r["fingerprint"]: r["e2e_raw_ms"] for r in second}
    ratios = [r["e2e_raw_ms"] / again[r["fingerprint"]] for r in first]
    assert model.built["passes"] == {
        "networks": 3, "median_first_over_second": round(statistics.median(ratios), 4),
        "within_10pct": round(sum(abs(x - 1) <= 0.10 for x in ratios) / 3, 4)}
    assert model.conditions.threads == 1 and model.device == "host-1t"
    assert model.built["adapted_from"]["device"] == "host"
    # Each regressor is the old one boosted on: the old trees come first, unchanged.
    base = load_latency_model("host", cache_dir=cache)
    for name, kind in base.to_json()["kinds"].items():
        carried = model.to_json()["kinds"][name]
        assert carried["linear"] == kind["linear"]
        if "xgboost" in kind:
            old = kind["xgboost"]["learner"]["gradient_booster"]["model"]["trees"]
            new = carried["xgboost"]["learner"]["gradient_booster"]["model"]["trees"]
            assert len(new) >= len(old) and new[: len(old)] == old
    assert model.correction != base.correction
    # One scale for every kind (20 networks barely tell per-kind scales from the offset).
    assert len(set(model.correction["scale"].values())) == 1
    # Its times are at the new device's own probe reference (3 networks, each its calmer
    # measurement: the fastest probe of all).
    assert model.probe_reference_ms == min(r["probe_ms"] for r in records)
    assert model.probe_reference_ms != base.probe_reference_ms
    spec = next(random_candidates([space], seed=0)).spec
    assert predict_latency(spec, device, cache_dir=cache) > 0


def test_two_builds_never_measure_into_one_file_at_once(built, space, tmp_path):
    from archkit.device import load_device
    from archkit.device._latency._build import _measuring_alone

    cache, _, _ = built
    path = data_path("host", "onnxruntime", cache)
    before = path.read_text()
    host = load_device("host")
    with _measuring_alone(path, host, "onnxruntime", "build"):  # (another open file: another lock)
        held = rf"another build is measuring host/onnxruntime .*pid {os.getpid()}"
        with pytest.raises(LatencyModelError, match=held):
            build_latency_model("host", random_candidates([space], seed=0), networks=1,
                                minutes=None, cache_dir=cache, progress=False)
    assert path.read_text() == before
    # Let go at the end (of a build, too: the other tests' builds on this cache ran).
    with _measuring_alone(path, host, "onnxruntime", "build"):
        pass


def test_one_measurement_at_a_time_on_this_machine(built, space, tmp_path):
    """Another process holding this machine (a TVM build of the host, whatever its cache
    folder) refuses a host-1t build and an evaluation, each naming it, and nothing is written;
    ``archkit profile``'s measurement waits for it (with one warning naming it) and runs once
    it ends. Within one process the hold is reentrant."""
    import threading

    from archkit.build import build_model, example_input
    from archkit.device import load_device, measure_networks, measure_onnxruntime
    from archkit.device._machine import holding_this_machine

    cache, _, _ = built
    files = sorted((cache / "latency").glob("*.jsonl"))
    before = [f.read_text() for f in files]
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from archkit.device import load_device
            from archkit.device._machine import holding_this_machine
            with holding_this_machine(load_device("host"), "build host/tvm"):
                print("held", flush=True)
                sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    spec = next(random_candidates([space], seed=1)).spec
    try:
        assert holder.stdout.readline().strip() == "held"
        held = rf"build host/tvm \(pid {holder.pid}, since \d\d:\d\d:\d\d\)"
        refused = rf"another archkit job is measuring on this machine \({held}; lock .*\.lock\)"
        with pytest.raises(LatencyModelError, match=refused):
            build_latency_model("host-1t", random_candidates([space], seed=0), networks=3,
                                minutes=None, cache_dir=cache, progress=False)
        with pytest.raises(LatencyModelError, match=refused):
            evaluate_latency_model("host", random_candidates([space], seed=1), 2,
                                   cache_dir=cache, progress=False)
        assert sorted((cache / "latency").glob("*.jsonl")) == files
        assert [f.read_text() for f in files] == before
        threading.Timer(2.0, holder.stdin.close).start()  # the other job ends in 2 s
        start = time.monotonic()
        with pytest.warns(ArchkitWarning, match=rf"profile check on host: waiting for this "
                          rf"machine, held by {held}") as caught:
            result = measure_onnxruntime(build_model(spec).eval(), example_input(spec),
                                         load_device("host"), name="check", repeats=3)
        assert time.monotonic() - start > 1.5 and result.median_ms > 0
        assert len(caught) == 1
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    with holding_this_machine(load_device("host"), "a test"):  # (reentrant: a build's own)
        assert measure_networks([spec], "host", cache_dir=cache)[0] > 0


def test_a_resumed_adaptation_measures_again_what_it_measured_once(built, space, tmp_path):
    cache, _, _ = built
    device = tmp_path / "host-1t-resumed.yaml"
    device.write_text(HOST_1T.replace("host-1t", "host-1t-resumed"))
    records = []

    def stopped_in_the_second_pass(record):
        records.append(record)
        if len(records) == 4:  # three networks, then the last of them again
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_latency_model(device, random_candidates([space], seed=21), networks=3,
                            minutes=None, from_model="host", protocol=FAST, cache_dir=cache,
                            progress=False, on_record=stopped_in_the_second_pass)
    assert len(records) == 4 and records[3]["fingerprint"] == records[2]["fingerprint"]
    more = []
    resumed = build_latency_model(device, random_candidates([space], seed=21), networks=1,
                                  minutes=None, from_model="host", cache_dir=cache,
                                  progress=False, on_record=more.append)
    # First the two the first run measured once (their second pass), then one new network,
    # measured twice.
    assert resumed.new_networks == 1 and resumed.networks == 4 and len(more) == 4
    assert [r["fingerprint"] for r in more[:2]] == [r["fingerprint"] for r in records[:2]]
    assert more[2]["fingerprint"] == more[3]["fingerprint"]
    assert [r["pass"] for r in records + more] == [1, 1, 1, 2, 2, 2, 1, 2]
    _, _, stored = read_records(data_path("host-1t-resumed", "onnxruntime", cache))
    assert sorted(Counter(r["fingerprint"] for r in stored).values()) == [2, 2, 2, 2]
    assert resumed.model.built["passes"]["networks"] == 4
    assert not any("measured once only" in w for w in resumed.warnings)


def test_a_second_pass_that_fails_says_which_networks_were_measured_once(
        built, space, tmp_path, monkeypatch):
    from archkit.device._errors import MeasurementError
    from archkit.device._latency import _build

    cache, _, _ = built
    device = tmp_path / "host-1t-failing.yaml"
    device.write_text(HOST_1T.replace("host-1t", "host-1t-failing"))
    real = _build.measure_group
    calls = []

    def board_lost_after_the_first_group(specs, *args, **kwargs):
        calls.append(len(specs))
        if len(calls) > 1:
            raise MeasurementError("the board went away", stage="connect")
        return real(specs, *args, **kwargs)

    monkeypatch.setattr(_build, "measure_group", board_lost_after_the_first_group)
    result = build_latency_model(device, random_candidates([space], seed=22), networks=3,
                                 minutes=None, from_model="host", protocol=FAST,
                                 cache_dir=cache, progress=False)
    assert calls[0] == 3 and result.networks == 3 and result.failed == ()
    assert "passes" not in result.model.built  # no network was measured twice
    (warning,) = result.warnings
    assert warning.startswith("networks measured once only, fitted on that one measurement: "
                              "3 of 3 (failed: the board went away): ")
    assert "Run the same command again" in warning
    _, _, stored = read_records(data_path("host-1t-failing", "onnxruntime", cache))
    assert all(r["name"] in warning for r in stored)


def test_what_a_resumed_adaptation_measures_again(space):
    from archkit.device._latency._build import _drawn_again, _measured_once
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    records = [{"fingerprint": "a", "pass": 1}, {"fingerprint": "b", "pass": 1},
               {"fingerprint": "b", "pass": 2}, {"fingerprint": "c"},  # a build's, no pass
               {"fingerprint": "d", "pass": 1}]
    assert _measured_once(records) == {"a", "d"}
    distinct = {}  # ten networks (the tiny space draws some twice)
    for candidate in random_candidates([space], seed=4):
        distinct.setdefault(network_fingerprint(lower(candidate.spec)), candidate)
        if len(distinct) == 10:
            break
    prints, drawn = list(distinct), list(distinct.values())
    wanted = {prints[7], prints[3], "not drawn"}
    stream, found, lost = _drawn_again(iter(drawn), wanted, measured=0)
    assert found == [drawn[3], drawn[7]] and lost == 1
    assert list(stream) == drawn  # what was read comes again, then the rest
    # It reads measured + 2 * wanted + 50 candidates ahead: 9 misses the tenth, 10 reaches it.
    stream, found, lost = _drawn_again(iter(drawn), {prints[9]}, measured=-43)
    assert found == [] and lost == 1 and list(stream) == drawn
    stream, found, lost = _drawn_again(iter(drawn), {prints[9]}, measured=-42)
    assert found == [drawn[9]] and lost == 0 and list(stream) == drawn


def test_adapting_from_fewer_networks_than_the_correction_fits_is_refused(built, space,
                                                                           tmp_path):
    cache, _, _ = built
    device = tmp_path / "host-1t-two.yaml"
    device.write_text(HOST_1T.replace("host-1t", "host-1t-two"))
    with pytest.raises(LatencyModelError, match="at least 3 networks.*--networks"):
        build_latency_model(device, random_candidates([space], seed=23), networks=2,
                            minutes=None, from_model="host", cache_dir=cache, progress=False)
    # Refused before measuring: nothing was stored.
    assert not data_path("host-1t-two", "onnxruntime", cache).exists()
    # And by the fit itself, from records measured elsewhere.
    _, result, records = built
    with pytest.raises(LatencyModelError, match="needs at least 3 networks .* got 2"):
        result.model.adapted(records[:2], result.model.conditions, {})


def test_a_network_measured_twice_counts_once_with_its_calmer_measurement():
    def record(fingerprint, e2e_ms, probe_ms):
        return {"fingerprint": fingerprint, "e2e_ms": e2e_ms, "probe_ms": probe_ms}

    a1, b1, c1 = record("a", 2.0, 0.60), record("b", 1.0, 0.55), record("c", 3.0, None)
    a2, b2, c2 = record("a", 2.2, 0.52), record("b", 0.9, 0.58), record("c", 2.9, None)
    # The faster probe decides (b's second pass ran faster, in a slower moment); without a
    # probe, the faster time. The order is the first pass's.
    assert calmer_measurements([a1, b1, c1, c2, b2, a2]) == [a2, b1, c2]
    assert calmer_measurements([a1, b1]) == [a1, b1]
    # Two boards of a farm are two boards, not a calm and a busy moment: the first
    # measurement is kept, whichever board was faster (its probe too).
    d1 = {**record("d", 3.0, None), "server": "rpi-1:9090"}
    d2 = {**record("d", 2.5, None), "server": "rpi-2:9090"}
    d3 = {**record("d", 2.8, None), "server": "rpi-1:9090"}
    assert calmer_measurements([d1, d2]) == [d1]
    assert calmer_measurements([d1, d2, d3]) == [d3]
    e1 = {**record("e", 3.0, 0.60), "server": "rpi-1:9090"}
    e2 = {**record("e", 2.5, 0.50), "server": "rpi-2:9090"}
    assert calmer_measurements([e1, e2]) == [e1]


def test_passes_that_disagree_are_reported():
    calm = {"networks": 20, "median_first_over_second": 0.986, "within_10pct": 0.95}
    assert _passes_warning(calm, "host-1t", "onnxruntime", "DATA") == []
    (slow_first,) = _passes_warning({**calm, "median_first_over_second": 1.194,
                                     "within_10pct": 0.35}, "host-1t", "onnxruntime", "DATA")
    assert "the first pass 19% slower" in slow_first and "35% of the networks" in slow_first
    assert "move DATA away" in slow_first
    assert "archkit latency evaluate host-1t --runtime onnxruntime" in slow_first
    (slow_second,) = _passes_warning({**calm, "median_first_over_second": 0.8},
                                     "host-1t", "onnxruntime", "DATA")
    assert "the second pass 25% slower" in slow_second
    # The median alone can hide a spell both ways (the probe's retries take out its shift).
    (spread,) = _passes_warning({**calm, "median_first_over_second": 1.026,
                                 "within_10pct": 0.25}, "host-1t", "onnxruntime", "DATA")
    assert "25% of the networks within +-10%" in spread


def test_evaluate_measures_held_out_networks_twice(built, space):
    cache, _, records = built
    evaluation = evaluate_latency_model("host", random_candidates([space], seed=0), 2,
                                        cache_dir=cache, progress=False)
    assert evaluation.summary["networks"] == 2
    assert {r["name"] for r in evaluation.rows}.isdisjoint({r["name"] for r in records})
    for row in evaluation.rows:
        assert row["measured_ms"] > 0 and row["measured_again_ms"] > 0
        assert row["error"] == pytest.approx(
            abs(row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"])
    assert 0.0 <= evaluation.summary["noise_floor"]["within_10pct"] <= 1.0
    # Against the mean of the two measurements, by hand from the rows.
    vs_mean = [abs(r["predicted_ms"] - (r["measured_ms"] + r["measured_again_ms"]) / 2)
               / ((r["measured_ms"] + r["measured_again_ms"]) / 2) for r in evaluation.rows]
    shares = evaluation.summary["prediction_vs_mean"]
    assert shares["within_10pct"] == sum(e <= 0.10 for e in vs_mean) / 2
    assert shares["mean_error"] == pytest.approx(statistics.mean(vs_mean))
    assert shares["worst_error"] == pytest.approx(max(vs_mean))
    # Both passes are timed with the probe, and scaled to the model's probe reference: the
    # lower quartile of the probe's times over the networks the model was built from (those
    # of the build and of any test that resumed it).
    data = read_records(data_path("host", "onnxruntime", cache))[2]
    reference = statistics.quantiles([r["probe_ms"] for r in data], n=4)[0]
    assert evaluation.summary["probe_reference_ms"] == pytest.approx(reference, rel=1e-12)
    for row in evaluation.rows:
        assert row["probe_ratio"] > 0 and row["probe_ratio_again"] > 0
        assert row["measured_ms"] == pytest.approx(
            row["measured_raw_ms"] * reference / row["probe_ms"], rel=1e-12)
        assert row["measured_again_ms"] == pytest.approx(
            row["measured_again_raw_ms"] * reference / row["probe_ms_again"], rel=1e-12)
        assert 2 <= row["timings"] <= 2 * (FAST.probe_retries + 1)


def test_a_model_is_fitted_at_one_probe_reference(built):
    """The end-to-end times a model is fitted on are each network's time as taken, scaled by
    one probe reference over its group's probe time, not divided by the baseline of the
    moment (which moves as a build goes on): a build whose networks were all timed in a
    spell that slowed them and the probe alike fits the same model."""
    _, result, records = built
    reference = statistics.quantiles([r["probe_ms"] for r in records], n=4)[0]
    assert result.model.probe_reference_ms == pytest.approx(reference, rel=1e-12)
    assert LatencyModel.from_json(result.model.to_json()).probe_reference_ms == pytest.approx(
        reference, rel=1e-12)
    # The same networks, the slower half of them timed in a spell that made them and the
    # probe 1.5x slower (the reference, from the faster probe times, stays), and stored
    # divided by a baseline that had not moved.
    slow = {id(r) for r in sorted(records, key=lambda r: r["probe_ms"])[len(records) // 2:]}
    slowed = [dict(r, e2e_raw_ms=1.5 * r["e2e_raw_ms"], probe_ms=1.5 * r["probe_ms"],
                   e2e_ms=1.5 * r["e2e_ms"]) if id(r) in slow else r for r in records]
    assert statistics.quantiles([r["probe_ms"] for r in slowed], n=4)[0] == reference
    calm, _ = fit_model(records, result.model.conditions, FAST, {})
    spell, _ = fit_model(slowed, result.model.conditions, FAST, {})
    assert spell.correction["offset_ms"] == pytest.approx(calm.correction["offset_ms"], rel=1e-6)
    assert spell.correction["scale"] == pytest.approx(calm.correction["scale"], rel=1e-6)
    # Without the probe (normalize off) the spell is in the fit.
    plain = replace(FAST, probe_normalize=False)
    assert (fit_model(slowed, result.model.conditions, plain, {})[0].correction["scale"]
            != pytest.approx(calm.correction["scale"], rel=1e-3))


def test_every_group_is_timed_with_the_probe(built):
    """Each record keeps its group's probe time, the probe's ratio to its baseline and how
    many timings the group took: a group is timed again only while its probe is slow."""
    _, _, records = built
    for record in records:
        assert record["probe_ms"] > 0 and record["probe_ratio"] > 0
        assert 1 <= record["timings"] <= FAST.probe_retries + 1
        if record["timings"] <= FAST.probe_retries:  # kept: the probe was within tolerance
            assert record["probe_ratio"] <= 1.0 + FAST.probe_tolerance
    # The members of one group share its probe.
    assert len({r["probe_ms"] for r in records}) <= -(-len(records) // FAST.interleave)
    for record in records:  # each time as taken, divided by its probe's ratio
        # (repeats are stored rounded to 1e-5 ms)
        assert record["e2e_raw_ms"] == pytest.approx(statistics.median(record["repeats_ms"]),
                                                     abs=1e-5)
        assert record["e2e_ms"] == pytest.approx(record["e2e_raw_ms"] / record["probe_ratio"],
                                                 rel=1e-12)


def test_a_group_timed_in_a_slow_spell_is_timed_again(space):
    """A group whose probe runs slower than tolerated is timed again, at most
    ``probe_retries`` more times; the last timing is kept with the probe's ratio. The spell is
    made by telling the baseline that the probe usually runs ten times as fast as it did in
    the first timing (twice as fast was not enough: a first timing taken in a real spell, as on
    CI once at 2.3x the second's, left the made-up spell within tolerance)."""
    from dataclasses import replace as replaced

    from archkit.device import load_device

    device = replaced(load_device("host"), name="host-probe-test")
    protocol = replace(FAST, probe_retries=2)
    key = _runtimes.probe_key(device, protocol, "onnxruntime")
    spec = next(random_candidates([space], seed=1)).spec
    try:
        [calm] = _runtimes.measure_group([spec], device, "onnxruntime", protocol, kernels=False)
        _runtimes.PROBE_BASELINES.seed(key, [calm.probe_ms / 10] * 10)
        [slow] = _runtimes.measure_group([spec], device, "onnxruntime", protocol, kernels=False)
    finally:
        _runtimes.PROBE_BASELINES.forget(key)
    assert slow.timings == protocol.probe_retries + 1
    assert slow.probe_ratio == pytest.approx(10 * slow.probe_ms / calm.probe_ms, rel=1e-9)
    assert slow.probe_ratio > 1.0 + protocol.probe_tolerance
    assert slow.e2e_ms == pytest.approx(slow.raw_ms / slow.probe_ratio, rel=1e-12)
    assert slow.raw_ms == pytest.approx(statistics.median(slow.repeats_ms), rel=1e-12)


def test_probe_is_the_default_and_absent_from_older_files():
    assert TimingProtocol.default("onnxruntime").probe_tolerance == 0.10
    assert TimingProtocol.default("tvm").probe_tolerance == 0.10
    older = {k: v for k, v in TimingProtocol().to_dict().items() if not k.startswith("probe")}
    assert TimingProtocol.from_dict(older).probe_tolerance is None
    assert TimingProtocol.from_dict(older).probe_normalize is False


def test_correction_recovers_known_parameters():
    import numpy as np

    rng = np.random.default_rng(0)
    sums = rng.uniform(0.1, 5.0, size=(60, 3))
    counts = rng.integers(30, 70, size=60).astype(float)
    y = 0.4 + 0.003 * counts + sums @ np.array([1.2, 1.2, 1.2])
    fit = _fit_correction(sums, counts, y, ["a", "b", "c"])
    assert fit["offset_ms"] == pytest.approx(0.4, rel=1e-3)
    assert fit["per_kernel_ms"] == pytest.approx(0.003, rel=1e-3)
    assert all(s == pytest.approx(1.2, rel=1e-3) for s in fit["scale"].values())
    # Per-kind scales are found when the data asks for them.
    y2 = 0.4 + 0.003 * counts + sums @ np.array([1.0, 2.0, 0.5])
    fit2 = _fit_correction(sums, counts, y2, ["a", "b", "c"])
    assert [fit2["scale"][k] for k in "abc"] == pytest.approx([1.0, 2.0, 0.5], rel=0.05)
    # Without per-kind scales: the one-scale fit, numpy's weighted least squares on the
    # kernels' total, the kernel count and a constant (relative error: rows divided by y).
    one = _fit_correction(sums, counts, y2, ["a", "b", "c"], per_kind=False)
    design = np.column_stack([sums.sum(axis=1), counts, np.ones(60)]) / y2[:, None]
    scale, per_kernel, offset = np.linalg.lstsq(design, np.ones(60), rcond=None)[0]
    assert all(v == pytest.approx(scale, rel=1e-9) for v in one["scale"].values())
    assert one["per_kernel_ms"] == pytest.approx(per_kernel, rel=1e-9)
    assert one["offset_ms"] == pytest.approx(offset, rel=1e-9)
    # Networks whose time falls as their kernels grow push the scale below zero: it is held
    # at 1e-3 and the per-kernel time and offset refitted with it (numpy's weighted least
    # squares on what the held scale leaves).
    falling = 4.0 - 0.2 * sums.sum(axis=1) + 0.003 * counts
    held = _fit_correction(sums, counts, falling, ["a", "b", "c"], per_kind=False)
    assert set(held["scale"].values()) == {1e-3} and held["one_scale"] == 1e-3
    rest = np.column_stack([counts, np.ones(60)]) / falling[:, None]
    per_kernel, offset = np.linalg.lstsq(
        rest, (falling - 1e-3 * sums.sum(axis=1)) / falling, rcond=None)[0]
    assert held["per_kernel_ms"] == pytest.approx(per_kernel, rel=1e-9)
    assert held["offset_ms"] == pytest.approx(offset, rel=1e-9)


def test_the_passes_are_compared_on_one_board():
    from archkit.device._latency._build import _passes_agreement

    def record(fingerprint, ms, server=None):
        return {"fingerprint": fingerprint, "e2e_ms": ms, "e2e_raw_ms": ms, "server": server}

    local = [record("a", 2.0), record("b", 1.0), record("b", 1.25), record("a", 2.1),
             record("a", 9.0)]  # a third measurement is not compared
    assert _passes_agreement(local) == {"networks": 2, "median_first_over_second": 0.8762,
                                        "within_10pct": 0.5}
    farm = [record("a", 2.0, "rpi-1"), record("a", 3.0, "rpi-2"), record("b", 1.0, "rpi-1"),
            record("b", 1.0, "rpi-1")]
    assert _passes_agreement(farm) == {"networks": 1, "median_first_over_second": 1.0,
                                       "within_10pct": 1.0}
    assert _passes_agreement(farm[:2]) is None


def _smallest_network_nodes(space):
    """The space's smallest network, lowered, and per node: (key, node, input shape, the conv's
    weight shape or None)."""
    from archkit.ops import lower

    network = lower(space.candidate(space.smallest()))
    nodes = []
    for block in network.blocks:
        for node in block.nodes:
            x = node.in_shapes[0]
            weight = None
            if node.prim == "conv":
                k, g = node.attrs["kernel"], node.attrs["groups"]
                weight = (node.out_shape.channels, x.channels // g, k, k)
            nodes.append((f"{block.index}:{node.name}", node, x, weight))
    return network, nodes


def test_tvm_calls_are_attributed_to_archkit_nodes(space):
    network, nodes = _smallest_network_nodes(space)
    calls, expected = [], {}
    for key, node, x, weight in nodes:
        if node.prim == "conv":
            calls += [("conv2d", 3e-6, [(1, x.channels, x.height, x.width), weight]),
                      ("add", 1e-6, [(1, 1), (1, 1)]), ("tir_clip", 1e-6, [(1, 1)])]
            expected[key] = 5.0
        elif node.prim == "add":
            shape = (1, x.channels, x.height, x.width)
            calls.append(("add7", 2e-6, [shape, shape, shape]))
            expected[key] = 2.0
        elif node.prim == "global_avgpool":
            calls.append(("mean", 1e-6, [(1, 1, 1, 1)]))
            expected[key] = 1.0
        elif node.prim == "linear":
            calls += [("vm.builtin.reshape", 1e-6, []), ("matmul", 4e-6, [(1, 2), (2, 3)]),
                      ("add9", 1e-6, [(3,), (1, 3)])]
            expected[key] = 5.0
    got = _runtimes._attribute_tvm_calls(calls, network)
    assert got.pop("network") == pytest.approx(1.0)
    assert got == pytest.approx(expected)


def test_tvm_times_every_kernel_of_a_whole_network_run(space, tmp_path, monkeypatch):
    """A TVM group is timed with the probe compiled as its networks are (here a tiny network
    stands in for MobileNetV2 0.5/128, a minute's compile), kept with their libraries."""
    from archkit.device import load_device
    from archkit.ops import lower

    spec, probe = [c.spec for _, c in zip(range(2), random_candidates([space], seed=4),
                                          strict=False)]
    monkeypatch.setattr(_runtimes, "probe_spec", lambda: probe)
    [measured] = _runtimes.measure_group([spec], load_device("host"), "tvm", FAST,
                                         kernels=True, compiled_dir=tmp_path, rounds=2)
    assert measured.e2e_ms > 0
    network = lower(spec)
    convs = {f"{b.index}:{n.name}" for b in network.blocks for n in b.nodes if n.prim == "conv"}
    assert convs <= set(measured.kernels_us)
    assert measured.probe_ms > 0 and 1 <= measured.timings <= FAST.probe_retries + 1
    assert measured.e2e_ms == pytest.approx(measured.raw_ms / measured.probe_ratio, rel=1e-12)
    # The second timing round is a measurement of its own, with its own probe time (an
    # evaluation scales it to the model's probe reference as it does the first).
    again = measured.again
    assert again.probe_ms > 0 and again.probe_ms != measured.probe_ms
    assert again.raw_ms == pytest.approx(statistics.median(again.repeats_ms), rel=1e-12)
    assert again.e2e_ms == pytest.approx(again.raw_ms / again.probe_ratio, rel=1e-12)
    assert measured.rounds_ms == pytest.approx([measured.e2e_ms, again.e2e_ms], rel=1e-12)
    # Compiled once each (the network and the probe), reused by later runs.
    assert len(list(tmp_path.glob("*.so"))) == 2


def test_checking_tvm_networks_reuses_the_cache_libraries(space, tmp_path, monkeypatch):
    """A search's check of its winners (measure_networks) compiles its TVM libraries, the
    probe's too, into the cache folder builds use, and a second check compiles nothing."""
    from archkit.device import _compile, load_device, measure_networks
    from archkit.device._latency._predict import conditions_now
    from archkit.device._latency._store import compiled_dir

    spec, probe = [c.spec for _, c in zip(range(2), random_candidates([space], seed=6),
                                          strict=False)]
    monkeypatch.setattr(_runtimes, "probe_spec", lambda: probe)
    device = load_device("host")
    [first] = measure_networks([spec], device, runtime="tvm", protocol=FAST, cache_dir=tmp_path)
    folder = compiled_dir(conditions_now(device, "tvm", for_build=True)[0], tmp_path)
    assert len(list(folder.glob("*.so"))) == 2  # the network and the probe

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(_compile, "build", no_compiling)
    [second] = measure_networks([spec], device, runtime="tvm", protocol=FAST,
                                cache_dir=tmp_path)
    assert isinstance(first, float) and isinstance(second, float) and second > 0


def test_tvm_libraries_compile_in_worker_processes_before_timing(space, tmp_path, monkeypatch):
    """A TVM group's missing libraries are compiled on every core (worker processes) before
    its timing: with compiling broken in this process they are all there, each one computes
    PyTorch's output, and measuring them compiles nothing here."""
    import numpy as np
    import torch
    import tvm
    from tvm import relax

    from archkit.build import example_input
    from archkit.device import DeviceError, _compile, load_device, measure_networks
    from archkit.device._latency._compiling import compile_ahead, compile_jobs
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.device._latency._predict import conditions_now
    from archkit.device._latency._store import compiled_dir
    from archkit.ops import lower

    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "x")
    with pytest.raises(DeviceError, match="environment: ARCHKIT_COMPILE_JOBS: must be a whole"):
        compile_jobs()
    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "2")
    specs = [c.spec for _, c in zip(range(4), random_candidates([space], seed=8), strict=False)]
    *specs, probe = specs
    monkeypatch.setattr(_runtimes, "probe_spec", lambda: probe)
    device = load_device("host")
    folder = compiled_dir(conditions_now(device, "tvm", for_build=True)[0], tmp_path)

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled in the measuring process")

    monkeypatch.setattr(_compile, "build", no_compiling)
    assert compile_ahead([*specs, probe], device, None, folder) > 0
    for spec in specs:
        library = tvm.runtime.load_module(str(folder / f"{network_fingerprint(lower(spec))}.so"))
        vm = relax.VirtualMachine(library, tvm.cpu())
        x = example_input(spec)
        out = _compile.flatten_outputs(vm["main"](tvm.runtime.tensor(x.numpy())))[0].numpy()
        with torch.no_grad():  # the weights of every latency measurement are seeded
            expected = _runtimes._model(spec).eval()(x).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    measured = measure_networks(specs, device, runtime="tvm", protocol=FAST, cache_dir=tmp_path)
    assert all(isinstance(m, float) and m > 0 for m in measured)
    # With a tuning database the workers open the caller's folder (records of none of these
    # kernels: the libraries compile as untuned ones do).
    from tvm.s_tir import meta_schedule as ms

    (tmp_path / "tuning").mkdir()
    database = ms.database.JSONDatabase(work_dir=str(tmp_path / "tuning"))
    tuned = tmp_path / "tuned"
    assert compile_ahead(specs, device, database, tuned) > 0
    assert len(list(tuned.glob("*.so"))) == len(specs)


def test_onnx_files_are_exported_in_worker_processes_before_timing(space, tmp_path,
                                                                   monkeypatch):
    """An onnxruntime group's ONNX files (and the probe's, the first time) are exported on every
    core (worker processes) before its timing: each one computes PyTorch's output, and with
    exporting broken in this process the group is measured all the same."""
    from dataclasses import replace as replaced

    import numpy as np
    import onnxruntime as ort
    import torch

    import archkit.build
    from archkit.build import example_input
    from archkit.device import load_device
    from archkit.device._latency._compiling import compile_ahead
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "2")
    specs = [c.spec for _, c in zip(range(3), random_candidates([space], seed=12), strict=False)]
    *specs, probe = specs
    monkeypatch.setattr(_runtimes, "probe_spec", lambda: probe)
    monkeypatch.setattr(_runtimes, "_PROBE_ONNX", {})  # (not exported yet in this process)
    device = replaced(load_device("host"), name="host-export-test")

    def no_exporting(*args, **kwargs):
        raise AssertionError("exported in the measuring process")

    monkeypatch.setattr(archkit.build, "export_onnx", no_exporting)
    folder = tmp_path / "onnx"
    assert compile_ahead(specs, device, None, folder, "onnxruntime") > 0
    for spec in specs:
        path = folder / f"{network_fingerprint(lower(spec))}.onnx"
        x = example_input(spec)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        [out] = session.run(None, {"input": x.numpy()})
        with torch.no_grad():  # the weights of every latency measurement are seeded
            expected = _runtimes._model(spec).eval()(x).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert not list(folder.glob("*.partial.*"))
    try:
        measured = _runtimes.measure_group(specs, device, "onnxruntime", FAST, kernels=True)
    finally:
        _runtimes.PROBE_BASELINES.forget(_runtimes.probe_key(device, FAST, "onnxruntime"))
    for m in measured:
        assert isinstance(m, _runtimes.Measured), m
        assert m.e2e_ms > 0 and m.probe_ms > 0 and m.kernels_us
    assert FAST.onnx_exporter in _runtimes._PROBE_ONNX  # (read from the workers' folder)


@pytest.mark.parametrize("name, resolution", [
    ("mobilenetv2", 96), ("mobilenetv1", 96), ("shufflenet_g3", 96),
    ("deeplabv3_mobilenetv2_aspp", 96), ("ssdlite_mobilenetv2", None),  # (300: its strides)
])
def test_torchscript_exports_run_the_kernels_of_archkit_export(name, resolution, tmp_path):
    """A measurement's ONNX file (torch's TorchScript-based exporter, ten times faster) computes
    PyTorch's output, and onnxruntime's optimized graph of it holds the kernels of the file
    ``archkit export`` writes (torch.export), attributes included, but for global average
    pooling: ``GlobalAveragePool`` (in onnxruntime's blocked layout) and ``Flatten``, against
    ``ReduceMean`` after reordering the layout and ``Reshape``."""
    from collections import Counter

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from archkit.build import example_input

    spec = load_spec(Path("specs") / f"{name}.yaml")
    spec = apply_overrides(spec, resolution=resolution) if resolution else spec
    x = example_input(spec)
    kernels = {}
    for exporter in ("torchscript", "dynamo"):
        path = _runtimes.exported_onnx(spec, None, tmp_path, exporter)
        path = path.rename(tmp_path / f"{exporter}.onnx")
        options = _runtimes._ort_options(2, FAST)
        options.optimized_model_filepath = str(tmp_path / f"{exporter}-optimized.onnx")
        outputs = ort.InferenceSession(str(path), options,
                                       providers=["CPUExecutionProvider"]).run(
            None, {"input": x.numpy()})
        with torch.no_grad():  # the weights of every latency measurement are seeded
            expected = _runtimes._model(spec).eval()(x)
        expected = expected if isinstance(expected, list | tuple) else [expected]
        assert len(outputs) == len(expected)
        for out, ref in zip(outputs, expected, strict=True):
            np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-4)
        graph = onnx.load(options.optimized_model_filepath).graph
        kernels[exporter] = Counter(
            (node.op_type, node.domain, repr(sorted(
                (a.name, onnx.helper.get_attribute_value(a)) for a in node.attribute
                if a.name != "allowzero")))  # (Reshape: no zero in a static shape)
            for node in graph.node)
    only_torchscript = kernels["torchscript"] - kernels["dynamo"]
    only_dynamo = kernels["dynamo"] - kernels["torchscript"]
    assert {op for op, _, _ in only_torchscript} <= {"GlobalAveragePool", "Flatten"}
    assert {op for op, _, _ in only_dynamo} <= {"ReduceMean", "Reshape", "ReorderOutput",
                                                "ReorderInput"}
    pools = sum(n for (op, _, _), n in only_torchscript.items() if op == "GlobalAveragePool")
    assert pools == sum(n for (op, _, _), n in only_dynamo.items() if op == "ReduceMean")


def test_a_network_the_torchscript_exporter_fails_on_is_exported_by_torch_export(
        tmp_path, monkeypatch):
    """A measurement's protocol asks for TorchScript exports (older measurement files, which
    name no exporter, were made by torch.export); where that exporter fails the network is
    exported by torch.export instead of failing. An unknown exporter is refused."""
    import onnx

    import archkit.build

    assert TimingProtocol().onnx_exporter == "torchscript"
    assert TimingProtocol.from_dict({}).onnx_exporter == "dynamo"
    with pytest.raises(ValueError, match="onnx_exporter must be one of torchscript, dynamo"):
        TimingProtocol(onnx_exporter="tf2onnx")
    real = archkit.build.export_onnx

    def no_torchscript(*args, dynamo=True, **kwargs):
        if not dynamo:
            raise RuntimeError("an operator the TorchScript exporter lacks")
        return real(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(archkit.build, "export_onnx", no_torchscript)
    spec = apply_overrides(load_spec(Path("specs") / "mobilenetv1.yaml"), resolution=32)
    path = _runtimes.exported_onnx(spec, None, tmp_path, "torchscript")
    # torch.export's file: every node records its module path.
    assert all(any(p.key == "pkg.torch.onnx.name_scopes" for p in node.metadata_props)
               for node in onnx.load(str(path)).graph.node if node.op_type == "Conv")


def test_a_build_exports_a_network_of_the_next_group_with_each_group(space, tmp_path,
                                                                     monkeypatch):
    """Groups of three networks on two export workers: each group's export round is filled
    with a network of the next group (three alone leave a worker idle for a whole export),
    the next group exports only what is left of it, and a group's files leave the build's
    export folder once it is measured."""
    from archkit.device._latency import _compiling
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "2")
    _runtimes._probe_onnx(None, FAST.onnx_exporter)  # (else the probe fills the round itself)
    real = _compiling.compile_ahead
    calls = []

    def name(spec):
        return f"{network_fingerprint(lower(spec))}.onnx"

    def watched(specs, device, database, folder, runtime="tvm", upcoming=(), exporter="dynamo"):
        before = {p.name for p in folder.glob("*.onnx")}
        seconds = real(specs, device, database, folder, runtime, upcoming, exporter)
        calls.append(([name(s) for s in specs], [name(s) for s in upcoming], before,
                      {p.name for p in folder.glob("*.onnx")}))
        return seconds

    monkeypatch.setattr(_compiling, "compile_ahead", watched)
    result = build_latency_model("host", random_candidates([space], seed=31), networks=6,
                                 minutes=None, protocol=FAST, cache_dir=tmp_path,
                                 progress=False)
    assert result.new_networks == 6 and not result.failed
    (first, upcoming, before, after), (second, none, left, done) = calls
    assert upcoming == second and none == []
    assert before == set() and after == {*first, second[0]}
    assert left == {second[0]} and done == set(second)  # (the first group's files deleted)


def test_a_script_without_a_main_guard_compiles_in_workers(tmp_path):
    """Compile workers are started as ``python -m``, not spawned: they never import the main
    script, so one without ``if __name__ == "__main__":`` gets its libraries compiled by the
    workers (compiling is broken in the script's own process), with no warning."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import warnings
        from pathlib import Path
        from archkit.device import _compile, load_device
        from archkit.device._latency._compiling import compile_ahead
        from archkit.spec import apply_overrides, load_spec

        def no_compiling(*args, **kwargs):
            raise AssertionError("compiled in the script's process")

        _compile.build = no_compiling
        base = load_spec({str(Path("specs/mobilenetv1.yaml").resolve())!r})
        specs = [apply_overrides(base, width=w, resolution=32) for w in (0.25, 0.5)]
        folder, device = Path({str(tmp_path / "libs")!r}), load_device("host")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compile_ahead(specs, device, None, folder)
        print(len(list(folder.glob("*.so"))), [str(w.message) for w in caught])
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env={**os.environ, "ARCHKIT_COMPILE_JOBS": "2"}, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "2 []"


def test_a_dead_compile_worker_leaves_compiling_to_this_process(space, tmp_path, monkeypatch):
    """A worker killed (as the kernel's out-of-memory killer would) stops the workers with one
    warning; this process then compiles what is missing itself, and stops using workers."""
    import signal

    from archkit.device import load_device
    from archkit.device._latency import _compiling
    from archkit.device._latency._runtimes import compiled_library

    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "2")
    monkeypatch.setattr(_compiling, "_BROKEN", False)
    specs = [c.spec for _, c in zip(range(4), random_candidates([space], seed=9), strict=False)]
    device = load_device("host")
    folder = tmp_path / "libs"
    try:
        assert _compiling.compile_ahead(specs[:2], device, None, folder) > 0
        assert len(list(folder.glob("*.so"))) == 2
        for worker in _compiling._WORKERS:
            os.kill(worker.process.pid, signal.SIGKILL)
        with pytest.warns(ArchkitWarning, match="compile workers failed") as caught:
            _compiling.compile_ahead(specs[2:], device, None, folder)
            _compiling.compile_ahead(specs[2:], device, None, folder)  # no second try
        assert sum("compile workers failed" in str(w.message) for w in caught) == 1
        assert _compiling._BROKEN and not _compiling._WORKERS
        for spec in specs[2:]:
            compiled_library(spec, device, None, folder, folder)
        assert len(list(folder.glob("*.so"))) == 4
    finally:
        _compiling.shutdown_compile_workers()


def test_a_hung_compile_worker_is_killed_after_its_timeout(space, tmp_path, monkeypatch):
    """A worker past ``ARCHKIT_COMPILE_TIMEOUT`` on one library is killed as hung (here every
    worker: it is still importing torch), with one warning naming the timeout and a network;
    this process does not compile those libraries again (it has no timeout): their networks
    fail, named. A timeout that is no positive number is refused."""
    from archkit.device import DeviceError, load_device
    from archkit.device._latency import _compiling
    from archkit.device._latency._runtimes import compiled_library

    for bad in ("soon", "0", "-5", "nan"):
        monkeypatch.setenv("ARCHKIT_COMPILE_TIMEOUT", bad)
        with pytest.raises(DeviceError, match="ARCHKIT_COMPILE_TIMEOUT: must be a positive"):
            _compiling.compile_timeout()
    monkeypatch.delenv("ARCHKIT_COMPILE_TIMEOUT")
    assert _compiling.compile_timeout() == 600
    monkeypatch.setenv("ARCHKIT_COMPILE_TIMEOUT", "0.05")
    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "2")
    monkeypatch.setattr(_compiling, "_BROKEN", False)
    monkeypatch.setattr(_compiling, "_TIMED_OUT", set())
    specs = [c.spec for _, c in zip(range(2), random_candidates([space], seed=11), strict=False)]
    device = load_device("host")
    try:
        with pytest.warns(ArchkitWarning, match=r"CompileTimeout: a worker took over 0.05 s on "
                          r"one library and was killed \(ARCHKIT_COMPILE_TIMEOUT\): .+, .*\.so"
                          r"\): compiling \(exporting\) on one core") as caught:
            start = time.monotonic()
            _compiling.compile_ahead(specs, device, None, tmp_path / "libs")
        assert time.monotonic() - start < 60
        assert len(caught) == 1
        assert _compiling._BROKEN and not _compiling._WORKERS
        for spec in specs:
            with pytest.raises(_compiling.CompileTimeout, match=r"took over 0.05 s on \w+\.so "
                               "and was killed; it is not compiled again in this process"):
                compiled_library(spec, device, None, tmp_path / "libs", tmp_path / "libs")
        assert not list((tmp_path / "libs").glob("*.so"))
    finally:
        _compiling.shutdown_compile_workers()


def test_ctrl_c_leaves_the_compile_workers_serving(space, tmp_path, monkeypatch):
    """Ctrl-C in a terminal reaches the whole process group: the workers ignore it (the
    process that started them ends them), so an interactive session keeps compiling on them."""
    import signal

    from archkit.device import load_device
    from archkit.device._latency import _compiling

    monkeypatch.setenv("ARCHKIT_COMPILE_JOBS", "2")
    monkeypatch.setattr(_compiling, "_BROKEN", False)
    from archkit.device._latency._kernels import network_fingerprint
    from archkit.ops import lower

    distinct = {}
    for candidate in random_candidates([space], seed=10):
        distinct.setdefault(network_fingerprint(lower(candidate.spec)), candidate.spec)
        if len(distinct) == 4:
            break
    specs = list(distinct.values())
    device = load_device("host")
    folder = tmp_path / "libs"
    try:
        assert _compiling.compile_ahead(specs[:2], device, None, folder) > 0
        workers = list(_compiling._WORKERS)
        for worker in workers:
            os.kill(worker.process.pid, signal.SIGINT)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ArchkitWarning)
            assert _compiling.compile_ahead(specs[2:], device, None, folder) > 0
        assert _compiling._WORKERS == workers and not _compiling._BROKEN
        assert all(worker.process.poll() is None for worker in workers)
        assert len(list(folder.glob("*.so"))) == 4
    finally:
        _compiling.shutdown_compile_workers()


def _random_kernels(rng, n: int, noise: float = 0.05):
    """Feature rows shaped like conv kernels, and times (us) with a non-linear part."""
    import numpy as np

    from archkit.device._latency._kernels import FEATURES

    x = np.zeros((n, len(FEATURES)))
    column = {name: i for i, name in enumerate(FEATURES)}
    c_in = rng.integers(1, 40, n) * 8.0
    c_out = rng.integers(1, 40, n) * 8.0
    size = rng.choice([7.0, 14.0, 28.0, 56.0, 112.0], n)
    for name, values in (("in_channels", c_in), ("out_channels", c_out), ("kernel", 1.0),
                         ("stride", 1.0), ("groups", 1.0), ("in_height", size),
                         ("in_width", size), ("out_height", size), ("out_width", size),
                         ("madds", c_in * c_out * size**2), ("in_bytes", 4 * c_in * size**2),
                         ("out_bytes", 4 * c_out * size**2), ("weight_bytes", 4 * c_in * c_out),
                         ("activation", rng.integers(0, 2, n)), ("inputs", 1.0)):
        x[:, column[name]] = values
    us = x[:, column["madds"]] / 2e3 * (1 + 0.4 * (c_in % 32 == 0)) + 0.2 * size + 3
    return x, us * rng.uniform(1 - noise, 1 + noise, n)


def _xgboost_margin(kind, x):
    """xgboost's own prediction of the trees (the reference for the numpy evaluation)."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(kind.booster_json).encode()))
    return booster.inplace_predict(x)


@pytest.mark.parametrize("evaluator", ["default", "numpy"])
def test_tree_evaluation_equals_xgboost(evaluator):
    """Both tree evaluators (onnxruntime's, which predictions use where it is installed, and
    the numpy fallback) give xgboost's own margins, and kernel times as _Kind's evaluation."""
    import numpy as np

    from archkit.device._latency import _trees
    from archkit.device._latency._model import FEATURES, _Regressors, _train_kind

    rng = np.random.default_rng(1)
    x1, y1 = _random_kernels(rng, 600)
    x2, y2 = _random_kernels(rng, 300)
    deep = _train_kind([tuple(r) for r in x1], list(y1))
    other = _train_kind([tuple(r) for r in x2], list(y2 * 3))
    line = _train_kind([tuple(r) for r in x2[:5]], list(y2[:5]))  # too few: no trees
    assert deep.booster_json is not None and other.booster_json is not None
    assert line.booster_json is None
    forest = _Regressors({"deep": deep, "line": line, "other": other})
    if evaluator == "numpy":
        forest.trees = _trees.NumpyTrees(
            [_trees.xgboost_trees(k.booster_json) for k in (deep, line, other)], len(FEATURES))
    else:
        assert isinstance(forest.trees, _trees.OnnxTrees)  # onnxruntime is installed here
    test, _ = _random_kernels(rng, 200)
    # Rows exactly on split thresholds too (xgboost sends x < split left, x == split right).
    for tree in deep.booster_json["learner"]["gradient_booster"]["model"]["trees"][:50]:
        if tree["left_children"][0] != -1:
            row = x1[rng.integers(len(x1))].copy()
            row[tree["split_indices"][0]] = tree["split_conditions"][0]
            test = np.vstack([test, row])
    kinds = rng.integers(0, 3, len(test))
    rows = np.column_stack([test, kinds])
    margin = forest.trees.margin(rows)
    for index, kind in ((0, deep), (2, other)):
        of_kind = kinds == index
        np.testing.assert_allclose(margin[of_kind], _xgboost_margin(kind, test[of_kind]),
                                   atol=1e-5)
    np.testing.assert_array_equal(margin[kinds == 1], 0.0)
    # Kernel times: the line times exp(trees), as _Kind's one-kind evaluation says.
    us = forest.predict_us(rows)
    for index, kind in enumerate((deep, line, other)):
        of_kind = kinds == index
        np.testing.assert_allclose(us[of_kind],
                                   kind.predict_us([tuple(r) for r in test[of_kind]]),
                                   rtol=1e-6)


def test_tree_evaluators_agree_on_a_built_model(built, space):
    """onnxruntime's evaluation and the numpy fallback give the same kernel times for every
    kernel of a few networks (a model with every kind a real build makes)."""
    import numpy as np

    from archkit.device._latency import _trees
    from archkit.device._latency._kernels import kernel_rows
    from archkit.ops import lower

    _, result, _ = built
    forest = LatencyModel.from_json(result.model.to_json())._forest
    specs = [c.spec for _, c in zip(range(20), random_candidates([space], seed=5), strict=False)]
    rows = np.asarray([(*features, forest.index[kind]) for spec in specs
                       for _, _, kind, features in kernel_rows(lower(spec))])
    numpy_trees = _trees.NumpyTrees(
        [_trees.xgboost_trees(kind.booster_json) for kind in result.model.kinds.values()],
        rows.shape[1] - 1)
    assert isinstance(forest.trees, _trees.OnnxTrees)
    np.testing.assert_allclose(forest.trees.margin(rows), numpy_trees.margin(rows), rtol=0,
                               atol=1e-6)
    assert np.abs(numpy_trees.margin(rows)).max() > 1e-3  # the trees do correct the line


def test_prediction_without_onnxruntime_walks_the_trees_in_numpy(built, space, monkeypatch):
    from archkit.device._latency import _trees

    _, result, _ = built
    data = json.loads(json.dumps(result.model.to_json()))
    specs = [c.spec for _, c in zip(range(5), random_candidates([space], seed=9), strict=False)]
    with_onnxruntime = [LatencyModel.from_json(data).predict(s) for s in specs]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as where it is not installed
    model = LatencyModel.from_json(data)
    assert isinstance(model._forest.trees, _trees.NumpyTrees)
    assert [model.predict(s) for s in specs] == pytest.approx(with_onnxruntime, rel=1e-6)


def test_early_stopping_keeps_few_trees_where_the_line_is_right():
    import numpy as np

    from archkit.device._latency._model import _XGB_ROUNDS, _train_kind

    rng = np.random.default_rng(2)
    x, _ = _random_kernels(rng, 400)
    exact = _train_kind([tuple(r) for r in x], list(x[:, 9] / 1e3 + 5.0))  # linear in MAdds
    wavy, y = _random_kernels(rng, 400, noise=0.0)
    curved = _train_kind([tuple(r) for r in wavy], list(y))

    def trees(kind):
        return len(kind.booster_json["learner"]["gradient_booster"]["model"]["trees"])

    assert trees(exact) < 5 and 40 < trees(curved) <= _XGB_ROUNDS


def test_model_round_trips_through_json_without_xgboost(built, space, tmp_path):
    _, result, _ = built
    # Through a file: a model's JSON can pass the 128 KiB limit of one command-line argument.
    path = tmp_path / "model.json"
    path.write_text(json.dumps(result.model.to_json()))
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["xgboost"] = None  # predicting must not need it
        from archkit.device._latency import LatencyModel
        from archkit.search import parse_search_space, random_candidates
        with open({str(path)!r}) as f:
            model = LatencyModel.from_json(json.load(f))
        space = parse_search_space({TINY_SPACE!r})
        specs = [c.spec for _, c in zip(range(5), random_candidates([space], seed=9))]
        print(json.dumps([model.predict(s) for s in specs]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    specs = [c.spec for _, c in zip(range(5), random_candidates([space], seed=9), strict=False)]
    assert json.loads(out.stdout) == pytest.approx([result.model.predict(s) for s in specs],
                                                   rel=1e-12)


def test_trees_it_cannot_evaluate_are_refused(built):
    _, result, _ = built
    data = json.loads(json.dumps(result.model.to_json()))
    data["kinds"]["conv_1x1"]["xgboost"]["learner"]["gradient_booster"]["name"] = "dart"
    with pytest.raises(LatencyModelError, match="rebuild it with archkit latency build host"):
        LatencyModel.from_json(data)


def test_blocks_shared_by_widths_predict_as_from_scratch(built, space):
    _, result, _ = built
    model = LatencyModel.from_json(result.model.to_json())
    fresh = LatencyModel.from_json(result.model.to_json())
    specs = [c.spec for _, c in zip(range(30), random_candidates([space], seed=5), strict=False)]
    for spec in specs:
        model.predict(spec)
    # Widths differ in every candidate; rounded channels repeat, and so do their blocks.
    assert len({s.width for s in specs}) == 30
    assert len(model._blocks_by_shape) < len(model._blocks)
    wide = replace(space.base, width=1.4, resolution=96)  # with extrapolation notes
    for spec in [*specs, wide, wide]:
        fresh._forget()
        expected = fresh.explain(spec)
        assert model.predict(spec) == pytest.approx(expected.latency_ms, rel=1e-12)
        got = model.explain(spec)
        assert got.blocks_ms == pytest.approx(expected.blocks_ms, rel=1e-12)
        assert got.extrapolations == expected.extrapolations


def test_rows_that_differ_only_in_repeats_share_blocks(built, space):
    """A search over per-stage repeats makes rows equal but for ``n``: their blocks are the
    same (a block depends on its row's other fields, whether it is the first repeat and the
    shape it receives), so they come from the cache and predict as from scratch."""
    _, result, _ = built
    model = LatencyModel.from_json(result.model.to_json())
    fresh = LatencyModel.from_json(result.model.to_json())
    base = space.base
    stage = next(i for i, r in enumerate(base.rows) if r.op == "bottleneck" and r.repeats == 2)
    specs = []
    for n in (1, 2, 3, 4):
        rows = list(base.rows)
        rows[stage] = replace(rows[stage], repeats=n)
        specs.append(replace(base, rows=tuple(rows)))
    for spec in specs:
        model.predict(spec)
    assert len(model._row_ids) == len(base.rows) + 3  # four versions of one row...
    assert len(model._row_configs) == len(base.rows)  # ...with one configuration
    blocks = len(model._blocks)
    assert blocks == len(base.rows) + 1  # the stage's first and later repeats
    for spec in specs:
        fresh._forget()
        assert model.predict(spec) == pytest.approx(fresh.predict(spec), rel=1e-12)
        assert model.explain(spec).blocks_ms == pytest.approx(fresh.explain(spec).blocks_ms,
                                                              rel=1e-12)
    assert len(model._blocks) == blocks


def test_early_stopping_validates_on_whole_networks():
    """With enough networks, early stopping holds out every fifth network's kernels, never some
    kernels of a network (a kernel held out alone has its twin from another network in
    training); with an adaptation's few, every fifth kernel."""
    from archkit.device._latency._model import _GROUPED_FROM, _validation_fifth

    # Networks 0..59 in a shuffled order of appearance, 1 to 3 kernels each, interleaved.
    order = [(7 * i) % 60 for i in range(60)]
    networks = [n for n in order for _ in range(1 + n % 3)]
    networks = networks[1::2] + networks[::2]
    valid = _validation_fifth(networks)
    by_network = {}
    for network, held in zip(networks, valid, strict=True):
        by_network.setdefault(network, set()).add(bool(held))
    assert all(len(flags) == 1 for flags in by_network.values())
    appearance = list(dict.fromkeys(networks))
    held_out = {n for n, flags in by_network.items() if flags == {True}}
    assert held_out == set(appearance[::5]) and len(held_out) == 12

    few = networks[: networks.index(appearance[_GROUPED_FROM - 1])]
    assert len(set(few)) == _GROUPED_FROM - 1
    assert _validation_fifth(few).tolist() == [i % 5 == 0 for i in range(len(few))]


def test_cold_prediction_is_its_kernels_predicted_one_by_one(built, space):
    """The prediction path (integer feature rows, every new block's kernels in one batch,
    summed per block; repeated blocks computed once) gives what the training path's float
    feature rows give, each kernel on its own."""
    import numpy as np

    from archkit.device._latency._kernels import block_kernels
    from archkit.ops import lower

    _, result, _ = built
    model = LatencyModel.from_json(result.model.to_json())
    forest = model._forest
    specs = [c.spec for _, c in zip(range(10), random_candidates([space], seed=3), strict=False)]
    for spec in [*specs, replace(space.base, width=1.4, resolution=96)]:
        model._forget()
        got = model.explain(spec)
        for block, block_ms in zip(lower(spec).blocks, got.blocks_ms, strict=True):
            expected = 0.0
            for _, kind, features in block_kernels(block):
                k = forest.index[kind]
                us = forest.predict_us(np.asarray([(*features, k)]))[0]
                expected += model._kind_scale[k] * us / 1e3 + model._per_kernel_ms
            assert block_ms == pytest.approx(expected, rel=1e-12)


def test_fused_tvm_calls_of_a_tuned_build_are_attributed(space):
    """A tuned build fuses a conv with its bias, clip and residual add into one
    ``fused_conv2d*`` call: the conv owns it all (a residual add fused in is the conv's time,
    as with onnxruntime)."""
    network, nodes = _smallest_network_nodes(space)
    calls, expected = [("vm.builtin.alloc_storage", 1e-6, [])], {}
    for key, node, x, weight in nodes:
        if node.prim == "conv":
            calls.append((f"fused_conv2d{len(calls)}_add_tir_clip", 3e-6,
                          [(1, x.channels, x.height, x.width), weight, (1, weight[0], 1, 1)]))
            expected[key] = 3.0
        elif node.prim == "global_avgpool":
            calls.append(("mean", 1e-6, [(1, 1, 1, 1)]))
            expected[key] = 1.0
        elif node.prim == "linear":
            calls.append(("fused_matmul_add", 4e-6, [(1, 2), (2, 3), (3,)]))
            expected[key] = 4.0
    got = _runtimes._attribute_tvm_calls(calls, network)
    assert got.pop("network") == pytest.approx(1.0)
    assert got == pytest.approx(expected)


def test_adapted_scales_follow_kernel_size():
    """Another thread count speeds large kernels up and leaves small ones alone, whatever
    their kind: the adapted correction finds the size where that changes, by cross-validation
    on the adaptation networks, and predicts networks it was not fitted on."""
    import numpy as np

    from archkit.device._latency._model import _fit_size_correction

    rng = np.random.default_rng(0)
    nets, kernels = 30, 40
    # Networks of mostly small kernels, of mostly large ones, and between.
    large = rng.uniform(size=(nets, 1)) > rng.uniform(size=(nets, kernels))
    kernel_us = np.where(large, rng.choice([80.0, 200.0, 600.0], size=(nets, kernels)),
                         rng.choice([4.0, 8.0, 15.0, 35.0], size=(nets, kernels)))
    kernel_us *= rng.uniform(0.8, 1.2, size=kernel_us.shape)
    # The new device: kernels under 50 us take as long as before, larger ones 1.8x.
    scale = np.where(kernel_us < 50.0, 1.0, 1.8)
    y_ms = (scale * kernel_us).sum(axis=1) / 1e3
    of_record = np.repeat(np.arange(nets), kernels)
    fit = np.arange(nets) < 20
    keep = np.isin(of_record, np.flatnonzero(fit))
    correction = _fit_size_correction(
        kernel_us.reshape(-1)[keep], of_record[keep], np.full(20, float(kernels)), y_ms[fit],
        ["conv_1x1", "conv_dw"], {"per_kernel_ms": 0.0},
    )
    assert correction["size_edges_us"] == [50.0]  # fewest bins that fit as well as any
    # The ridge pulls the bins' scales toward one another a little.
    assert correction["size_scale"] == pytest.approx([1.0, 1.8], abs=0.1)
    assert correction["size_cv_error"]["50.0"] < correction["size_cv_error"]["one"] / 3
    small, large = correction["size_scale"]
    fitted = np.where(kernel_us < 50.0, small, large)
    predicted = (correction["offset_ms"] + correction["per_kernel_ms"] * kernels
                 + (fitted * kernel_us).sum(axis=1) / 1e3)
    error = np.abs(predicted[~fit] / y_ms[~fit] - 1)
    one_scale = y_ms[fit].sum() / kernel_us[fit].sum() * 1e3
    one_error = np.abs(one_scale * kernel_us[~fit].sum(axis=1) / 1e3 / y_ms[~fit] - 1)
    assert error.max() < 0.02 and one_error.max() > 0.1


def test_carried_regressor_learns_what_the_new_device_changes():
    """The new device runs kernels of over 2 MMAdds 1.8x slower and the others as before:
    the old regressor boosted on with 300 of its kernels predicts held-out kernels within 2%,
    where the old one is over 35% off on every large one."""
    import numpy as np

    from archkit.device._latency._kernels import FEATURES
    from archkit.device._latency._model import _continue_kind, _train_kind

    rng = np.random.default_rng(1)

    def kernels(n):
        rows = np.zeros((n, len(FEATURES)))
        c_in = rng.choice([16, 24, 32, 64, 96, 160, 320], n)
        c_out = rng.choice([16, 24, 32, 64, 96, 160, 320], n)
        size = rng.choice([7, 14, 28, 56], n)
        for name, value in [("in_channels", c_in), ("out_channels", c_out), ("kernel", 1),
                            ("stride", 1), ("groups", 1), ("in_height", size),
                            ("in_width", size), ("out_height", size), ("out_width", size),
                            ("madds", c_in * c_out * size * size),
                            ("in_bytes", 4 * c_in * size * size),
                            ("out_bytes", 4 * c_out * size * size),
                            ("weight_bytes", 4 * c_in * c_out), ("activation", 1)]:
            rows[:, FEATURES.index(name)] = value
        old_us = 2.0 + rows[:, FEATURES.index("madds")] / 4e3
        return rows, old_us

    old_rows, old_us = kernels(600)
    old = _train_kind([tuple(r) for r in old_rows], list(old_us))
    rows, old_us = kernels(400)
    slower = np.where(rows[:, FEATURES.index("madds")] > 2e6, 1.8, 1.0)
    new_us = old_us * slower
    carried = _continue_kind(old, [tuple(r) for r in rows[:300]], list(new_us[:300]))
    held_out = [tuple(r) for r in rows[300:]]
    error = np.abs(np.asarray(carried.predict_us(held_out)) / new_us[300:] - 1)
    before = np.abs(np.asarray(old.predict_us(held_out)) / new_us[300:] - 1)
    assert error.max() < 0.02
    assert before[slower[300:] > 1].min() > 0.35
    # Nothing to learn: the old regressor is kept as it is.
    same = _continue_kind(old, [tuple(r) for r in rows[:300]], list(old_us[:300]))
    assert same.predict_us(held_out) == pytest.approx(old.predict_us(held_out), rel=0.02)


def test_adapted_model_predicts_with_its_size_scales(built, space):
    """Through JSON, as a search loads it: each kernel's time is its size bin's scale times
    the old device's prediction for it."""
    import numpy as np

    from archkit.device._latency._kernels import kernel_rows
    from archkit.ops import lower

    cache, _, _ = built
    base = load_latency_model("host", cache_dir=cache)
    data = base.to_json()
    data["correction"] = {
        "offset_ms": 0.0, "per_kernel_ms": 0.0, "scale": dict.fromkeys(base.kinds, 1.0),
        "ridge": 1.0, "one_scale": 1.0, "size_edges_us": [8.0], "size_scale": [1.0, 2.0],
    }  # fmt: skip
    model = type(base).from_json(json.loads(json.dumps(data)))
    spec = next(random_candidates([space], seed=3)).spec
    rows = list(kernel_rows(lower(spec)))
    forest = model._forest
    kernel_us = forest.predict_us(np.asarray([(*f, forest.index[kind])
                                              for _, _, kind, f in rows]))
    assert (kernel_us < 8).any() and (kernel_us >= 8).any()
    expected = (np.where(kernel_us < 8.0, 1.0, 2.0) * kernel_us).sum() / 1e3
    assert model.predict(spec) == pytest.approx(expected, rel=1e-9)
    assert model.explain(spec).latency_ms == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv1", "shufflenet_g3"])
def test_kernel_features_add_up_to_the_built_model(name):
    """Every kernel's features, checked in total against independent counts: MAdds against the
    paper's Table 3 convention as fvcore counts the built model (tests/cost check cost_table
    against it), weight bytes against torch's own parameter count (BatchNorm's weight and bias
    included), output bytes against the activations the built model's layers produce."""
    import torch

    from archkit.build import build_model, example_input
    from archkit.cost import cost_table
    from archkit.device._latency._kernels import BYTES_PER_ELEMENT, FEATURES, kernel_rows
    from archkit.ops import lower

    spec = load_spec(REPO / "specs" / f"{name}.yaml")
    rows = [features for *_, features in kernel_rows(lower(spec))]
    column = {feature: i for i, feature in enumerate(FEATURES)}
    assert sum(r[column["madds"]] for r in rows) == cost_table(spec).madds
    model = build_model(spec).eval()
    parameters = sum(p.numel() for p in model.parameters())
    assert sum(r[column["weight_bytes"]] for r in rows) == parameters * BYTES_PER_ELEMENT
    # The network's output is the last kernel's output.
    with torch.no_grad():
        out = model(example_input(spec))
    assert rows[-1][column["out_bytes"]] == out[0].numel() * BYTES_PER_ELEMENT


def test_models_of_tuned_builds_with_serial_leftovers_are_refused():
    """A tuned TVM build's kernels without a record ran serial before they got the parallel
    outer loops: a model of such a build (tuning state ``tuned:<records>``) differs from
    today's build with the same records."""
    from archkit.device._latency._conditions import (
        UNTUNED,
        Conditions,
        differences,
        tuning_label,
    )

    assert tuning_label(0) == UNTUNED == "untuned:parallel-outer"
    assert tuning_label(12) == "tuned:12:parallel-outer"
    fields = {"device": "host", "runtime": "tvm", "runtime_version": "0.27.0.post1",
              "torch_version": "2.13.0", "threads": 2, "cpu": "cpu", "target": "host",
              "governor": None}
    then = Conditions(**fields, tuning="tuned:12")
    now = Conditions(**fields, tuning=tuning_label(12))
    assert differences(then, now) == ["tuning: built with tuned:12, now tuned:12:parallel-outer"]
