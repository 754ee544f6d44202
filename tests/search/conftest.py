"""Fixtures of the search tests: the shipped search spaces, the archkit command, a throwaway
PostgreSQL server (scripts/postgres.sh) and a small real image data set (scikit-learn's digits
written as an ImageFolder)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "search_spaces"
SPECS = ROOT / "specs"
POSTGRES_SCRIPT = ROOT / "scripts" / "postgres.sh"
_ENTRY_POINT = Path(sys.executable).parent / "archkit"
ARCHKIT = [str(_ENTRY_POINT)] if _ENTRY_POINT.exists() else [sys.executable, "-m", "archkit.cli"]
#: One torch thread per process: CI has 2 cores and tests run training in several processes.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def archkit(
    *args: str, cwd: Path | None = None, timeout: float = 180, **popen: object
) -> subprocess.CompletedProcess[str]:
    """Run the ``archkit`` command as a user would."""
    popen.setdefault("env", SUBPROCESS_ENV)
    return subprocess.run(
        [*ARCHKIT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        **popen,
    )


def finished_trials(storage) -> dict[tuple[str, int], tuple]:
    """(study, trial number) -> (state, params, values) of every finished trial (COMPLETE,
    PRUNED or FAIL) of every study in an Optuna storage."""
    found = {}
    for study in storage.get_all_studies():
        for t in storage.get_all_trials(study._study_id, deepcopy=False):
            if t.state.name in ("COMPLETE", "PRUNED", "FAIL"):
                found[(study.study_name, t.number)] = (t.state.name, t.params, t.values)
    return found


def journal_storage(path: Path):
    """Optuna's own reader of a journal file (no archkit code in between)."""
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def journal_trials(run_dir: Path) -> dict[tuple[str, int], tuple]:
    """:func:`finished_trials` of a run directory's journal ({} while it has none)."""
    path = run_dir / "study.journal"
    return finished_trials(journal_storage(path)) if path.exists() else {}


def start_archkit(*args: object, **popen: object) -> subprocess.Popen:
    """Start the ``archkit`` command as a user would, without waiting (stdout and stderr piped,
    text)."""
    popen.setdefault("env", SUBPROCESS_ENV)
    popen.setdefault("cwd", ROOT)
    return subprocess.Popen(
        [*ARCHKIT, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def postgres(action: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """``scripts/postgres.sh ACTION FOLDER``."""
    return subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), action, str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def postgres_folder() -> Path:
    """A folder for a cluster: not under pytest's tmp_path, since PostgreSQL runs as the
    'postgres' user when the tests run as root, and pytest's per-user temp folders are
    private."""
    folder = Path(tempfile.mkdtemp(prefix="archkit-pg-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server on 127.0.0.1 for the session (started by scripts/postgres.sh)."""
    skip_without_postgres()
    folder = postgres_folder()
    try:
        proc = postgres("start", folder / "cluster")
        assert proc.returncode == 0, f"scripts/postgres.sh start failed:\n{proc.stderr}"
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        postgres("stop", folder / "cluster")
        shutil.rmtree(folder, ignore_errors=True)


def skip_without_postgres() -> None:
    """``ARCHKIT_SKIP_POSTGRES=1`` skips the tests that need PostgreSQL (instead of failing)."""
    if os.environ.get("ARCHKIT_SKIP_POSTGRES", "") not in ("", "0"):
        pytest.skip("ARCHKIT_SKIP_POSTGRES is set")


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """scikit-learn's 8x8 handwritten digits (a real data set a package ships), 30 per class,
    upsampled to 32x32 grayscale PNGs in an ImageFolder layout (one folder per class)."""
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn provides the digits")
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("digits")
    digits = datasets.load_digits()
    for label in range(10):
        (root / str(label)).mkdir()
        for i in np.flatnonzero(digits.target == label)[:30]:
            pixels = (digits.images[i] / 16.0 * 255).astype(np.uint8)
            image = Image.fromarray(pixels, "L").resize((32, 32), Image.Resampling.BILINEAR)
            image.save(root / str(label) / f"{i:04d}.png")
    return root
