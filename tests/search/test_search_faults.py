"""Faults from outside, on a real ``archkit search`` subprocess: SIGKILLs at random moments
(right after the study is created, mid-search, while the run directory is written), a stale
journal lock left by a killed process, a full disk and a read-only run directory (real tmpfs
mounts; skipped where mounting is not allowed), a PostgreSQL server stopped under a running
worker (scripts/postgres.sh), and passwords in storage URLs.

Every case checks the same promises: no completed trial is lost, no file names a missing file,
no traceback, and one ``archkit: error:`` line that says what failed, what is safe and how to
resume. ``ARCHKIT_FAULT_KILLS=N`` runs N random kills instead of 12 (a longer soak).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from archkit.search._rundir import stale_note
from archkit.search._storage import OwnedFileLock, mask_secrets, open_storage

from .conftest import (
    ROOT,
    SPACES,
    archkit,
    finished_trials,
    journal_storage,
    journal_trials,
    postgres,
    postgres_folder,
    skip_without_postgres,
    start_archkit,
)

SPACE = str(SPACES / "mobilenetv2.yaml")
KILLS = int(os.environ.get("ARCHKIT_FAULT_KILLS", "12"))
TRIALS = 30
FINISH = b'"op_code":6'  # Optuna's journal: a trial's state and values set (it finished)
CREATE_STUDY = b'"op_code":0'


def search_args(run_dir: Path, trials: int = TRIALS, seed: int = 0, *extra: object) -> list:
    return [
        "search", SPACE, "--budget-madds", "150M", "--trials", trials, "--seed", seed,
        "--run-dir", run_dir, "--no-progress", "--format", "json", *extra,
    ]  # fmt: skip


def journal_bytes(run_dir: Path) -> bytes:
    try:
        return (run_dir / "study.journal").read_bytes()
    except OSError:
        return b""


def dangling(run_dir: Path) -> list[str]:
    """Every file of the run directory that does not parse, or names a file that is missing."""
    problems = []
    named: list[tuple[str, str]] = []
    for name in ("run.json", "best.json"):
        path = run_dir / name
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            results = data.get("results", []) if name == "best.json" else [data.get("best") or {}]
            named += [(name, r["spec"]) for r in results if r.get("spec")]
    for name in ("trials.csv", "best.csv"):
        path = run_dir / name
        if path.exists():
            try:
                frame = pd.read_csv(path)
            except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                problems.append(f"{name}: {exc}")
                continue
            if name == "best.csv":
                named += [(name, s) for s in frame["spec"].dropna()]
    missing = [(by, spec) for by, spec in named if not (run_dir / spec).exists()]
    problems += [f"{by} names {spec}, missing" for by, spec in missing]
    return problems


def wait_until(condition, proc: subprocess.Popen, timeout: float = 120, poll: float = 0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    raise AssertionError(f"condition not met in {timeout} s")


def kill_at(proc: subprocess.Popen, run_dir: Path, mode: str, rng: random.Random) -> None:
    if mode == "after study created":
        wait_until(lambda: CREATE_STUDY in journal_bytes(run_dir), proc)
        time.sleep(rng.uniform(0, 0.05))  # the first write of the run directory is here
    elif mode == "while the run directory is written":
        # The run directory is written after the last trial (about 0.2 s here).
        wait_until(lambda: journal_bytes(run_dir).count(FINISH) >= TRIALS, proc)
        time.sleep(rng.uniform(0, 0.2))
    else:
        wait_until(lambda: FINISH in journal_bytes(run_dir), proc)
        time.sleep(rng.uniform(0, 0.6))
    proc.send_signal(signal.SIGKILL)


def test_random_kills_lose_no_trial_and_resume(tmp_path):
    """SIGKILL a real search at random moments over many seeds; each time resume it (or, when
    nothing was started yet, run the same command again)."""
    modes = ("after study created", "mid-search", "while the run directory is written")
    tally: Counter = Counter()
    failures = []
    for seed in range(KILLS):
        rng = random.Random(seed)
        mode = modes[seed % len(modes)]
        run_dir = tmp_path / f"kill{seed}"
        args = search_args(run_dir, seed=seed)
        proc = start_archkit(*args)
        kill_at(proc, run_dir, mode, rng)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != -signal.SIGKILL:
            tally["finished before the kill"] += 1
        tally["kills"] += 1
        before = journal_trials(run_dir)
        run_json = run_dir / "run.json"
        info = json.loads(run_json.read_text()) if run_json.exists() else {}
        mid_write = len(before) >= TRIALS and (info.get("counts", {}).get("this_call") != TRIALS)
        tally["landed while the run directory was written"] += mid_write
        tally["landed before any trial"] += not before
        tally["left a stale journal lock"] += (run_dir / "study.journal.lock").is_symlink()
        problems = dangling(run_dir)

        started = time.monotonic()
        if info:
            again = archkit("search", "--resume", run_dir, "--no-progress", "--format", "json")
        else:  # killed before run.json: nothing was started, so the same command starts it
            again = archkit(*args)
        again_s = time.monotonic() - started
        after = journal_trials(run_dir)
        lost = [k for k, v in before.items() if after.get(k) != v]
        tally["trials lost"] += len(lost)
        tally["tracebacks"] += ("Traceback" in err) + ("Traceback" in again.stderr)
        problems += dangling(run_dir)
        if again.returncode != 0:
            problems.append(f"resume exit {again.returncode}: {again.stderr}")
        else:
            trials_csv = pd.read_csv(run_dir / "trials.csv")
            if len(trials_csv) < len(after) or stale_note(run_dir):
                problems.append(f"trials.csv has {len(trials_csv)} rows, journal {len(after)}")
        if "lock" in again.stderr.lower() or again_s > 15:
            problems.append(f"resume waited {again_s:.1f} s: {again.stderr}")
        tally["longest resume (s)"] = max(tally["longest resume (s)"], round(again_s, 1))
        if problems or lost:
            failures.append((seed, mode, lost, problems))
    print(f"\nrandom kills: {dict(tally)}")
    assert not failures, failures
    assert tally["trials lost"] == 0 and tally["tracebacks"] == 0


# --- stale journal locks ----------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from archkit.search._storage import OwnedFileLock, mask_secrets, open_storage
OwnedFileLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _lock_holder(journal: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(journal)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


class _Waiter:
    """A thread taking the journal lock, as another worker would."""

    def __init__(self, journal: Path) -> None:
        self.lock = OwnedFileLock(str(journal))
        self.taken = threading.Event()
        self.started = time.monotonic()
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self) -> None:
        self.lock.acquire()
        self.taken_s = time.monotonic() - self.started
        self.taken.set()

    def wait(self, timeout: float) -> float | None:
        """Seconds it took to get the lock (released again), None if not within ``timeout``."""
        if not self.taken.wait(timeout):
            return None
        self.lock.release()
        return self.taken_s


def test_a_lock_whose_owner_was_killed_is_broken_at_once(tmp_path):
    journal = tmp_path / "study.journal"
    journal.touch()
    holder = _lock_holder(journal)
    holder.kill()
    # Not reaped yet: a zombie still has its pid, and its lock is stale all the same.
    assert _Waiter(journal).wait(timeout=2) < 1
    holder.wait()
    holder = _lock_holder(journal)
    holder.kill()
    holder.wait()
    assert _Waiter(journal).wait(timeout=2) < 1
    assert not Path(str(journal) + ".lock").exists()


def test_a_live_owner_keeps_its_lock(tmp_path):
    journal = tmp_path / "study.journal"
    journal.touch()
    holder = _lock_holder(journal)
    waiter = _Waiter(journal)
    try:
        # Longer than it takes to break a dead owner's lock: a live one is never broken early.
        assert waiter.wait(timeout=1.5) is None
    finally:
        holder.kill()
        holder.wait()
    # The waiter takes it as soon as the owner is gone.
    assert waiter.wait(timeout=2) is not None
    assert not Path(str(journal) + ".lock").exists()


def test_resume_after_a_kill_holding_the_lock_does_not_wait(tmp_path):
    """The lock is left by a real search process that was killed while holding it."""
    run_dir = tmp_path / "run"
    proc = start_archkit(*search_args(run_dir, trials=500))
    lock = run_dir / "study.journal.lock"
    wait_until(lambda: journal_bytes(run_dir).count(FINISH) >= 5, proc)
    # The journal lock is held for each append: freeze the process until it is caught holding
    # the lock, then kill it.
    for _ in range(10_000):
        proc.send_signal(signal.SIGSTOP)
        if lock.is_symlink() and f";{proc.pid};" in os.readlink(lock):
            break
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.0005)
    proc.kill()
    proc.communicate()
    assert lock.is_symlink(), "the killed process left its lock"
    started = time.monotonic()
    again = archkit("search", "--resume", run_dir, "--trials", "3", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 8  # Optuna's rule would wait out a 10 s grace period
    assert "lock" not in again.stderr.lower() and "Traceback" not in again.stderr


def test_workers_sharing_a_journal_survive_a_killed_one(tmp_path):
    """Three local workers on one journal; one is killed mid-search (often holding the lock):
    the others finish at once, with no trial lost or numbered twice."""
    journal = tmp_path / "shared.journal"
    workers = [
        start_archkit(
            "search",
            SPACE,
            "--budget-madds",
            "150M",
            "--storage",
            f"journal:{journal}",
            "--study-name",
            "shared",
            "--worker",
            k,
            "--trials",
            25 if k else 1000,
            "--run-dir",
            tmp_path / f"w{k}",
            "--no-progress",
            "--format",
            "json",
        )  # fmt: skip
        for k in range(3)
    ]
    read = lambda: journal.read_bytes() if journal.exists() else b""  # noqa: E731
    # Worker 0 (1000 trials) is killed once it has recorded a few trials of its own.
    wait_until(lambda: read().count(b'"worker":0') >= 5, workers[0])
    workers[0].kill()
    workers[0].communicate()
    started = time.monotonic()
    for worker in workers[1:]:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0 and "Traceback" not in err and "lock" not in err, err
        assert json.loads(out)["counts"]["this_call"] == 25
    assert time.monotonic() - started < 30
    trials = journal_storage(journal).get_all_trials(0, deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # no duplicate, no gap
    by_worker = Counter(t.user_attrs.get("archkit", {}).get("worker") for t in trials)
    assert by_worker[1] == by_worker[2] == 25 and by_worker[0] >= 1


# --- a storage that goes away -----------------------------------------------------------------


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("archkit: error: "), stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("--storage postgresql://u:pw@h:5/db", "--storage postgresql://u:***@h:5/db"),
        ("--storage=mysql+pymysql://u:p%40ss@h/db x", "--storage=mysql+pymysql://u:***@h/db x"),
        ("postgresql://h/db?user=u&password=pw&x=1", "postgresql://h/db?user=u&password=***&x=1"),
        ("host=h password=pw dbname=d", "host=h password=*** dbname=d"),
        (
            "postgresql://u@h/db journal:/tmp/a.journal",
            "postgresql://u@h/db journal:/tmp/a.journal",
        ),
    ],
)
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked


@pytest.fixture
def small_disk():
    """A 1 MiB tmpfs mounted on a fresh folder (root only: skipped elsewhere)."""
    folder = Path(tempfile.mkdtemp(prefix="archkit-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("fault", ["full disk", "read-only run directory"])
def test_disk_fault_mid_search(small_disk, fault):
    run_dir = small_disk / "run"
    proc = start_archkit(*search_args(run_dir, trials=5000))
    wait_until(lambda: journal_bytes(run_dir).count(FINISH) >= 10, proc, poll=0.01)
    if fault == "full disk":
        filler = _fill(small_disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    line = _one_error_line(err)
    print(f"\n{line}")
    assert f"journal {run_dir / 'study.journal'}" in line
    reason = "No space left on device" if fault == "full disk" else "Read-only file system"
    assert reason in line and "finished trials are safe" in line
    assert f"resume with: archkit search --resume {run_dir}" in line
    assert out == ""
    before = journal_trials(run_dir)
    assert len(before) >= 10 and dangling(run_dir) == []
    # Once the disk is writable again, resuming loses nothing and refreshes every file.
    if fault == "full disk":
        filler.unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    again = archkit("search", "--resume", run_dir, "--trials", "3", "--format", "json")
    assert again.returncode == 0, again.stderr
    after = journal_trials(run_dir)
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 3
    assert len(pd.read_csv(run_dir / "trials.csv")) >= len(after)
    assert dangling(run_dir) == [] and stale_note(run_dir) is None


def test_read_only_run_directory_at_the_start(small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = archkit(*search_args(small_disk, trials=3))
    assert proc.returncode == 2
    assert _one_error_line(proc.stderr) == (
        f"archkit: error: cannot write the run directory {small_disk}: Read-only file system"
    )


def test_optunas_sqlalchemy_fallback_warning_is_not_printed(tmp_path):
    """Optuna logs the SQL and the driver's text when a query fails ("Caught an error from
    sqlalchemy ... Falling back"); a database lost under a worker must still print one line
    (CI once saw nine). Other Optuna warnings still print."""
    import logging

    import optuna

    open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger("optuna")
    root.addHandler(handler)
    try:
        logger = optuna.logging.get_logger("optuna.storages._rdb.storage")
        logger.warning("Caught an error from sqlalchemy: server closed the connection. Falling")
        logger.warning("a warning of another kind")
    finally:
        root.removeHandler(handler)
    assert seen == ["a warning of another kind"]


def test_postgres_stopped_under_a_running_worker(tmp_path):
    """scripts/postgres.sh stops the database under a worker; started again, it keeps its
    port, and the worker's run resumes with every trial it had finished."""
    skip_without_postgres()
    folder = postgres_folder()
    cluster = folder / "cluster"
    try:
        started = postgres("start", cluster)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        secret_url = url.replace("archkit@", "archkit:s3cretpw@")  # trust auth ignores it
        run_dir = tmp_path / "worker"
        worker = start_archkit(
            "search", SPACE, "--budget-madds", "150M", "--trials", "100000", "--storage",
            secret_url, "--study-name", "stopped", "--run-dir", run_dir, "--no-progress",
        )  # fmt: skip
        watcher = open_storage(url)
        wait_until(lambda: len(finished_trials(watcher)) >= 10, worker, poll=0.2)
        stopped = postgres("stop", cluster)
        assert stopped.returncode == 0, stopped.stderr
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 1, err
        line = _one_error_line(err)
        print(f"\n{line}")
        assert "database postgresql" in line and "127.0.0.1" in line
        assert "finished trials are safe" in line
        assert f"resume with: archkit search --resume {run_dir} --storage" in line
        written = pd.read_csv(run_dir / "trials.csv")
        info = json.loads((run_dir / "run.json").read_text())
        assert len(written[written["state"] == "COMPLETE"]) >= 1
        assert info["snapshot"]["complete"] is False and dangling(run_dir) == []

        restarted = postgres("start", cluster)
        assert restarted.returncode == 0 and restarted.stdout.strip() == url  # same port
        before = finished_trials(open_storage(url))
        assert len(before) >= len(written[written["state"].isin(["COMPLETE", "PRUNED"])])
        again = archkit(
            "search", "--resume", run_dir, "--storage", secret_url, "--trials", "2",
            "--format", "json",
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        after = finished_trials(open_storage(url))
        assert {k: after[k] for k in before} == before
        texts = [out, err, again.stdout, again.stderr]
        texts += [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()]
        assert not [t for t in texts if "s3cretpw" in t]
    finally:
        postgres("stop", cluster)
        shutil.rmtree(folder, ignore_errors=True)


def test_no_password_in_any_file_or_output(postgres_url, tmp_path):
    secret_url = postgres_url.replace("archkit@", "archkit:s3cretpw@")
    run_dir = tmp_path / "secret"
    proc = archkit(
        "search", SPACE, "--budget-madds", "150M", "--trials", "3",
        f"--storage={secret_url}", "--study-name", "secret", "--run-dir", run_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert "archkit:***@127.0.0.1" in info["command"]
    texts = [proc.stdout, proc.stderr]
    texts += [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()]
    assert not [t for t in texts if "s3cretpw" in t]


# --- the run's config, and readers of a stale run ---------------------------------------------


def test_resume_rebuilds_a_lost_run_json_from_the_study(tmp_path):
    run_dir = tmp_path / "run"
    first = archkit(*search_args(run_dir, trials=4))
    assert first.returncode == 0, first.stderr
    (run_dir / "run.json").unlink()
    again = archkit("search", "--resume", run_dir, "--trials", "2", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["trials"] == 6


def test_a_reader_says_when_the_run_is_older_than_its_journal(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_archkit(*search_args(run_dir, trials=500))
    wait_until(lambda: journal_bytes(run_dir).count(FINISH) >= 5, proc)
    proc.kill()
    proc.communicate()
    note = stale_note(run_dir)
    assert note and "older than its journal" in note
    assert f"archkit search --resume {run_dir} --trials 0" in note
    plot = archkit("plot", "--run", run_dir, "-o", tmp_path / "figure.html")
    assert "older than its journal" in plot.stderr and "Traceback" not in plot.stderr
    refreshed = archkit("search", "--resume", run_dir, "--trials", "0", "--format", "json")
    assert refreshed.returncode == 0, refreshed.stderr
    assert stale_note(run_dir) is None
