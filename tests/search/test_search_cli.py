"""``archkit search`` as a user runs it (subprocess): exit codes, formats, lazy imports,
Ctrl-C and kill -9 followed by --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from .conftest import ROOT, SPACES, SUBPROCESS_ENV, archkit, journal_trials, start_archkit

SPACE = str(SPACES / "mobilenetv2.yaml")


def test_imports_no_optuna_or_torch():
    code = (
        "import sys\n"
        "import archkit.search, archkit.cli.search\n"
        "from archkit.cli import main\n"
        "main(['--help'])\n"
        "print([m for m in ('optuna', 'torch', 'plotly', 'tvm') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_help_lists_the_budgets():
    proc = archkit("search", "--help")
    assert proc.returncode == 0
    for option in (
        "--budget-madds",
        "--budget-latency",
        "--budget-params",
        "--budget-memory",
        "--objective",
        "--pareto",
        "--storage",
        "--resume",
        "--format",
    ):
        assert option in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--budget-madds", "150Q"], "--budget-madds: unknown unit 'Q'"),
        (["--budget-madds", "-150M"], "--budget-madds: must be positive"),
        (["--budget-memory", "512"], "--budget-memory: needs a unit"),
        (["--budget-latency", "30"], "--budget-latency: needs a unit"),
        (["--budget-latency", "30ms"], "--budget-latency: needs --device"),
        (["--objective", "train"], "--data: --objective train needs --data"),
        (["--pareto", "accuracy,colour"], "--pareto: unknown metric 'colour'"),
        (["--objective", "oracle"], "Invalid value for '--objective'"),
        (
            ["--storage", "postgresql://archkit:secret@127.0.0.1:9/none"],
            "--storage: cannot open postgresql+psycopg2://archkit:***@127.0.0.1:9/none",
        ),
        (["--storage", "ftp://somewhere"], "--storage: expected postgresql://"),
    ],
)
def test_bad_input_exits_2_before_any_trial(tmp_path, args, needle):
    run_dir = tmp_path / "run"
    proc = archkit("search", SPACE, "--trials", "3", "--run-dir", run_dir, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr
    assert "secret" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "trials.csv").exists()


def test_space_file_that_does_not_parse_exits_2(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("base: [\n")
    proc = archkit("search", bad, "--budget-madds", "150M")
    assert proc.returncode == 2
    assert f"{bad}: not valid YAML at line" in proc.stderr
    missing = archkit("search", tmp_path / "nowhere.yaml")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_budget_nobody_meets_exits_1_and_names_the_smallest_cost(tmp_path):
    proc = archkit("search", SPACE, "--budget-madds", "5M", "--run-dir", tmp_path / "r")
    assert proc.returncode == 1
    assert "no candidate of search space 'mobilenetv2' meets --budget-madds 5.00M" in proc.stderr
    assert "the smallest candidate (width 0.35, resolution 96, expansion 2) costs 6.77M" in (
        proc.stderr
    )


def test_table_json_csv_give_the_same_numbers(tmp_path):
    common = ["search", SPACE, "--budget-madds", "150M", "--trials", "12", "--top", "3"]
    table = archkit(*common, "--run-dir", tmp_path / "t")
    assert table.returncode == 0, table.stderr
    assert "Best of 12 trials" in table.stdout and "leave-one-out error" in table.stdout
    as_json = archkit(*common, "--run-dir", tmp_path / "j", "--format", "json")
    results = json.loads(as_json.stdout)["results"]
    as_csv = archkit(*common, "--run-dir", tmp_path / "c", "--format", "csv")
    frame = pd.read_csv(pd.io.common.StringIO(as_csv.stdout))
    assert [r["madds"] for r in results] == frame["madds"].tolist()
    assert [r["objective"] for r in results] == pytest.approx(frame["objective"].tolist())
    assert f"{results[0]['objective']:.2f}" in table.stdout
    info = json.loads((tmp_path / "j" / "run.json").read_text())
    assert (
        info["command"].startswith("archkit search ") and "--budget-madds 150M" in (info["command"])
    )


def _start(run_dir, trials: int) -> subprocess.Popen:
    return start_archkit(
        "search", SPACE, "--budget-madds", "150M", "--trials", trials, "--run-dir", run_dir,
        "--no-progress",
    )  # fmt: skip


def _wait_for(run_dir, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(journal_trials(run_dir)) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} trials after {timeout} s")


def test_kill_loses_no_completed_trial_and_resume_continues(tmp_path):
    run_dir = tmp_path / "killed"
    proc = _start(run_dir, trials=200)
    _wait_for(run_dir, 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before = journal_trials(run_dir)
    assert len(before) >= 10
    resumed = archkit("search", "--resume", run_dir, "--trials", "5", "--format", "json")
    assert resumed.returncode == 0, resumed.stderr
    after = journal_trials(run_dir)
    assert {n: after[n] for n in before} == before  # every completed trial survived as it was
    assert len(after) == len(before) + 5
    counts = json.loads(resumed.stdout)["counts"]
    assert counts["this_call"] == 5 and counts["running"] <= 1  # at most the one killed mid-way
    # The first call wanted 200 trials: a plain --resume runs the rest.
    info = json.loads((run_dir / "run.json").read_text())
    assert info["trials_target"] == 200


def test_ctrl_c_writes_the_run_and_exits_130(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = _start(run_dir, trials=500)
    _wait_for(run_dir, 5, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopping after the running trial" in stderr
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) >= 5 and "RUNNING" not in set(trials["state"])
    # How many trials are saved, and the command that continues.
    assert (
        f"archkit: error: interrupted: {len(trials)} finished trials are saved ({len(trials)} "
        f"by this call) in {run_dir}; continue with: archkit search --resume {run_dir}"
    ) in stderr and "Traceback" not in stderr
    resumed = archkit("search", "--resume", run_dir, "--trials", "2", "--format", "json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["counts"]["trials"] == len(trials) + 2


def test_resume_needs_a_run(tmp_path):
    proc = archkit("search", "--resume", tmp_path)
    assert proc.returncode == 2 and "--resume: " in proc.stderr and "no run.json" in proc.stderr


def test_device_options_are_named_as_in_profile():
    text = archkit("search", "--help").stdout
    profile = archkit("profile", "--help").stdout
    for option in ("--host", "--port", "--key", "--tracker"):
        assert option in text and option in profile
    assert "--device-host" not in text  # the old names still work, but are not advertised
    assert "Seeds the sampler" in text  # --seed has help


def test_old_device_option_names_warn(tmp_path):
    old = archkit("search", "--device-host", "127.0.0.1", "--budget-madds", "5M")
    assert old.returncode == 2, old.stderr
    assert "archkit: warning: --device-host is deprecated; use --host" in old.stderr
    # Without --device it would do nothing: that is an error, as in `archkit profile`.
    assert "archkit: error: --host: only applies with --device NAME" in old.stderr
    both = archkit("search", "--host", "a", "--device-host", "b", "--budget-madds", "5M")
    assert both.returncode == 2
    assert "archkit: error: --device-host: contradicts --host a" in both.stderr


def test_resume_refuses_other_budgets_objective_or_space(tmp_path):
    run_dir = tmp_path / "run"
    first = archkit(
        "search", SPACE, "--budget-madds", "150M", "--trials", "4", "--run-dir", run_dir
    )
    assert first.returncode == 0, first.stderr
    other = archkit(
        "search", SPACES / "mobilenetv1.yaml", "--resume", run_dir, "--budget-madds", "100M",
        "--objective", "proxy",
    )  # fmt: skip
    assert other.returncode == 2
    line = other.stderr.strip()
    assert line.startswith(f"archkit: error: --resume: {run_dir} was searched with ")
    assert "--budget-madds 150.00M (given 100.00M)" in line
    assert "--objective published (given proxy)" in line
    assert f"mobilenetv2.yaml (given {SPACES / 'mobilenetv1.yaml'})" in line
    assert "Traceback" not in other.stderr
    # The same settings again are fine: they are what the run was searched with.
    same = archkit(
        "search", SPACE, "--resume", run_dir, "--budget-madds", "150M", "--trials", "1",
        "--format", "json",
    )  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["counts"]["trials"] == 5


def test_piped_table_is_whole_and_says_what_to_do_next(tmp_path):
    env = {k: v for k, v in SUBPROCESS_ENV.items() if k not in ("COLUMNS", "LINES")}
    run_dir = tmp_path / "run"
    proc = archkit(
        "search", SPACE, "--budget-madds", "150M", "--trials", "12", "--run-dir", run_dir,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "…" not in out  # nothing cut at 80 columns
    for header in ("resolution", "expansion", "MAdds", "peak memory", "latency", "top-1 %"):
        assert header in out
    best = pd.read_csv(run_dir / "best.csv")
    winner = run_dir / best["spec"].iloc[0]
    first = next(line for line in out.splitlines() if line.replace(" ", "").startswith("│1│"))
    assert first.split("│")[6].strip() == f"{best['madds'].iloc[0] / 1e6:.2f}M"
    assert "next steps:" in out
    assert f"archkit profile {winner}" in out
    assert f"archkit plot --run {run_dir} -o {run_dir}/pareto" in out
    assert f"archkit export {winner} -o " in out
    # The first step runs as printed.
    step = archkit("profile", winner, "--format", "json")
    assert step.returncode == 0 and str(best["madds"].iloc[0]) in step.stdout
