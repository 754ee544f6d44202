"""The extras of pyproject.toml, the pins of constraints.txt and the missing-dependency message."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from archkit._imports import EXTRAS, MissingDependency, missing_dependency, try_import

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {name.lower(): version for name, version in pins}


def test_every_module_names_an_extra_that_exists():
    extras = PROJECT["optional-dependencies"]
    for module, extra in EXTRAS.items():
        assert extra in extras, (module, extra)


def test_constraints_pin_every_requirement_within_its_range():
    requirements = pytest.importorskip("packaging.requirements")
    pins = _pins()
    declared = [*PROJECT["dependencies"]]
    for extra, reqs in PROJECT["optional-dependencies"].items():
        if extra != "all":
            declared += reqs
    for text in declared:
        req = requirements.Requirement(text)
        name = req.name.lower()
        assert name in pins, f"constraints.txt pins no version of {name}"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_the_makefile_installs_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in makefile.splitlines() if "pip install" in line
                and "--upgrade pip" not in line]
    assert installs and all("-c constraints.txt" in line for line in installs)


def test_missing_dependency_names_the_extra_and_nothing_else():
    exc = ModuleNotFoundError("No module named 'optuna'", name="optuna")
    missing = missing_dependency(exc)
    assert isinstance(missing, MissingDependency) and missing.exit_code == 2
    assert "pip install 'archkit[search]'" in str(missing)
    # Not an optional dependency: a bug, which keeps its traceback.
    assert missing_dependency(ModuleNotFoundError("x", name="archkit.nope")) is None
    # An installed package without one of its submodules is another version, not a missing
    # extra.
    pytest.importorskip("optuna")
    assert missing_dependency(ModuleNotFoundError("x", name="optuna.nope")) is None
    # "cannot import name" is an ImportError of a present module: not missing either.
    assert missing_dependency(ImportError("cannot import name 'x'", name="optuna")) is None


def test_try_import():
    with pytest.raises(MissingDependency, match=r"archkit\[report\]"), try_import():
        raise ModuleNotFoundError("No module named 'plotly'", name="plotly")
    with pytest.raises(ModuleNotFoundError), try_import():
        raise ModuleNotFoundError("No module named 'nothing_of_ours'", name="nothing_of_ours")
