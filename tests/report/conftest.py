"""Fixtures for the report tests: a small search run directory and a headless Chromium."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = ROOT / "specs"

# A run as archkit search writes it (docs/search.md): trials.csv with the contract's columns
# (plus the optional ones the search adds), winners/*.yaml, best.csv and run.json. Numbers are
# made up but plausible; `pareto` is the search's own flag, which the plot must keep.
TRIALS_CSV = """\
number,state,width,resolution,expansion,madds,params,peak_activation_bytes,latency_ms,\
objective,feasible,pareto,calibrated,note,violation,duration_s,worker,error
0,COMPLETE,1.0,224,6.0,300774272,3504872,6021120,41.5,71.8,True,False,True,,0.0,0.5,0,
1,COMPLETE,0.75,192,6.0,153941888,2636424,3317760,21.0,68.6,True,True,True,,0.0,0.4,0,
2,COMPLETE,0.5,160,4.0,40100000,1700000,1300000,9.0,59.9,True,True,False,t != 6,0.0,0.3,1,
3,COMPLETE,1.4,224,6.0,582195824,6108776,9031680,80.0,74.9,False,False,True,,12.5,0.6,1,
4,FAIL,0.35,96,6.0,,,,,,False,False,,,,,1,boom
5,COMPLETE,0.35,128,6.0,20220672,1677128,983040,5.5,50.7,True,True,True,,0.0,0.3,0,
6,COMPLETE,0.5,224,6.0,97131840,1968680,3010560,15.0,65.0,True,False,True,,0.0,0.4,0,
"""


def write_run(directory: Path, trials: str = TRIALS_CSV) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trials.csv").write_text(trials, encoding="utf-8")
    winners = directory / "winners"
    winners.mkdir(exist_ok=True)
    (winners / "01_w075_r192.yaml").write_text(
        (SPECS_DIR / "mobilenetv2.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (directory / "best.csv").write_text("rank,number\n1,1\n2,5\n", encoding="utf-8")
    (directory / "run.json").write_text(
        json.dumps(
            {
                "objective": "published",
                "memory_dtype": "fp32",
                "memory_schedule": "naive",
            }
        ),
        encoding="utf-8",
    )
    return directory


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "runs" / "fixture")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium, installed by scripts/chromium.sh if missing (idempotent)."""
    script = ROOT / "scripts" / "chromium.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"scripts/chromium.sh failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    path = done.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), path
    return path
