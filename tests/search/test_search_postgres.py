"""Many workers, one study: a real PostgreSQL server (scripts/postgres.sh) and two concurrent
``archkit search`` worker processes sharing one study through ``--storage postgresql://``."""

from __future__ import annotations

import json

import optuna
import pandas as pd

from archkit.search._storage import open_storage

from .conftest import SPACES, archkit, start_archkit

TRIALS_PER_WORKER = 12


def test_two_workers_share_one_study(postgres_url, tmp_path):
    study = "shared-150m"
    common = [
        "search", SPACES / "mobilenetv2.yaml", "--budget-madds", "150M", "--storage",
        postgres_url, "--study-name", study, "--trials", TRIALS_PER_WORKER, "--format", "json",
        "--no-progress",
    ]  # fmt: skip
    workers = [
        start_archkit(*common, "--worker", k, "--run-dir", tmp_path / f"worker{k}")
        for k in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    reports = [json.loads(out) for out, _ in outputs]
    assert [r["counts"]["this_call"] for r in reports] == [TRIALS_PER_WORKER] * 2

    trials = optuna.load_study(study_name=study, storage=open_storage(postgres_url)).trials
    numbers = [t.number for t in trials]
    # The trial count adds up, with no duplicates and no gaps.
    assert len(trials) == 2 * TRIALS_PER_WORKER
    assert sorted(numbers) == list(range(2 * TRIALS_PER_WORKER))
    assert len({t._trial_id for t in trials}) == len(trials)
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    by_worker = pd.Series([t.user_attrs["archkit"]["worker"] for t in trials]).value_counts()
    assert by_worker.to_dict() == {0: TRIALS_PER_WORKER, 1: TRIALS_PER_WORKER}
    # Each worker's run directory reports the whole shared study, within budget.
    for k in range(2):
        frame = pd.read_csv(tmp_path / f"worker{k}" / "trials.csv")
        assert len(frame) >= TRIALS_PER_WORKER
        best = pd.read_csv(tmp_path / f"worker{k}" / "best.csv")
        assert (best["madds"] <= 150_000_000).all()
    # The URL is recorded without credentials and the last worker saw all trials.
    info = json.loads((tmp_path / "worker1" / "run.json").read_text())
    assert info["storage"].startswith("postgresql") and "127.0.0.1" in info["storage"]
    assert max(r["counts"]["trials"] for r in reports) == 2 * TRIALS_PER_WORKER
    # Each worker's files say they are a snapshot; --resume --trials 0 refreshes them.
    for k in range(2):
        run_dir = tmp_path / f"worker{k}"
        note = json.loads((run_dir / "run.json").read_text())["snapshot"]["note"]
        assert note.startswith("a snapshot of the shared study 'shared-150m'")
        assert json.loads((run_dir / "best.json").read_text())["snapshot"]["note"] == note
        refreshed = archkit(
            "search", "--resume", run_dir, "--storage", postgres_url, "--trials", "0",
            "--format", "json",
        )  # fmt: skip
        assert refreshed.returncode == 0, refreshed.stderr
        frame = pd.read_csv(run_dir / "trials.csv")
        assert len(frame) == 2 * TRIALS_PER_WORKER and set(frame["state"]) <= {
            "COMPLETE",
            "PRUNED",
        }


def test_joining_with_other_budgets_is_refused(postgres_url, tmp_path):
    common = [
        "search", SPACES / "mobilenetv2.yaml", "--storage", postgres_url, "--study-name",
        "strict", "--trials", "1", "--no-progress",
    ]  # fmt: skip
    first = archkit(*common, "--budget-madds", "5G", "--run-dir", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    second = archkit(*common, "--budget-madds", "300M", "--run-dir", tmp_path / "b")
    assert second.returncode == 2
    assert "--study-name: study 'strict' was created with other settings" in second.stderr
