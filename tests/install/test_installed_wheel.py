"""archkit installed from its wheel (not editable, not the source tree) works from any folder.

Offline and in well under two minutes: the wheel is built from a copy of the sources with the
build backend already installed (``--no-build-isolation --no-index``), installed with ``--no-deps``
into a fresh virtual environment, and that environment sees the dependencies already installed
here through a ``.pth`` line naming this environment's site-packages. A ``.pth`` line only adds
a folder to ``sys.path`` after the fresh environment's own site-packages, and never runs the
``.pth`` files inside it, so this environment's editable hook for the source tree stays off:
``archkit`` can only come from the wheel. The commands run with no ``PYTHONPATH``, from an empty
temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("specs", "devices", "search_spaces")


def _run(args: list[str], cwd: Path, env: dict, timeout: int = 300) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    pytest.importorskip("setuptools", minversion="70.1")
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    # The package and its metadata only: no tests/, no top-level links, no build leftovers.
    shutil.copytree(ROOT / "archkit", source / "archkit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--quiet", "-w", str(dist), str(source)], base, env)
    (wheel,) = dist.glob("archkit-*.whl")

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; "
                         "print(sysconfig.get_paths()['purelib'])"], base, env).strip())
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--quiet", str(wheel)], base, env)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_archkit_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    work = base / "elsewhere"
    work.mkdir()
    return {"wheel": wheel, "python": python, "archkit": venv / "bin" / "archkit",
            "venv": venv, "env": env, "work": work}


def test_the_wheel_ships_every_spec_device_and_search_space(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for kind in KINDS:
        shipped = sorted((ROOT / "archkit" / "data" / kind).glob("*.yaml"))
        assert shipped
        for path in shipped:
            assert f"archkit/data/{kind}/{path.name}" in names


def test_archkit_comes_from_the_wheel_not_the_source_tree(installed):
    where = _run([str(installed["python"]), "-c", "import archkit; print(archkit.__file__)"],
                 installed["work"], installed["env"]).strip()
    assert Path(where).is_relative_to(installed["venv"]), where
    assert not Path(where).is_relative_to(ROOT)


def test_every_shipped_name_works_from_any_folder(installed):
    archkit, work, env = installed["archkit"], installed["work"], installed["env"]
    specs = sorted(p.stem for p in (ROOT / "archkit/data/specs").glob("*.yaml"))
    docs = json.loads(_run([str(archkit), "profile", *specs, "--format", "json"], work, env))
    assert [d["totals"]["name"] for d in docs] == specs
    v2 = docs[specs.index("mobilenetv2")]["totals"]
    assert v2["madds"] // 10**6 == 300  # TF-slim's MobileNetV2 1.0/224: 300M MACs
    devices = json.loads(_run([str(archkit), "devices", "--format", "json"], work, env))
    assert [d["name"] for d in devices] == sorted(
        p.stem for p in (ROOT / "archkit/data/devices").glob("*.yaml"))
    spaces = sorted(p.stem for p in (ROOT / "archkit/data/search_spaces").glob("*.yaml"))
    code = ("import sys; from archkit.search import resolve_space; "
            "[resolve_space(n) for n in sys.argv[1:]]; print('ok')")
    assert _run([str(installed["python"]), "-c", code, *spaces], work, env).strip() == "ok"


def test_profile_search_and_plot_run_installed(installed):
    archkit, work, env = installed["archkit"], installed["work"], installed["env"]
    table = _run([str(archkit), "profile", "mobilenetv2"], work, env)
    assert "300,774,272 MAdds" in table
    _run([str(archkit), "search", "--budget-madds", "150M", "--trials", "6", "--run-dir",
          "runs/installed", "--no-progress"], work, env)
    best = (work / "runs" / "installed" / "best.csv").read_text().splitlines()
    assert len(best) > 1
    out = _run([str(archkit), "plot", "--run", "runs/installed", "--spec", "mobilenetv2",
                "--no-png", "-o", "plots/run"], work, env)
    assert "plots/run.html" in out
    html = (work / "plots" / "run.html").read_text()
    assert "mobilenetv2" in html and (work / "plots" / "plotly.min.js").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["plots", "runs"]  # wrote nothing else
