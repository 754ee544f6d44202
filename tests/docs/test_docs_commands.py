"""Every ``archkit`` command in README.md and docs/*.md runs as written.

The extractor reads fenced code blocks (any language but python, yaml and csv) and takes each
line that starts with ``archkit`` (or ``.venv/bin/archkit``). It skips, by explicit marker, a
line that ends in the comment ``# needs a board`` and a line that holds a ``<placeholder>``
(``--host <board-ip>``): neither can run as written on a machine without a board. The python
blocks of :data:`PYTHON_DOCS` run too.

Commands run with bash (globs such as ``specs/*.yaml`` expand) in one scratch folder laid out like
the repository (``specs/``, ``devices/``, ``search_spaces/``), with the files the docs say a reader
has: ``runs/my-search`` (a search run with measured latencies), ``my.yaml`` (a spec of one's
own), ``latency.csv`` (measured latencies: TF-slim's published Pixel 1 numbers) and the run that
``archkit search --resume`` continues.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
PYTHON_DOCS = (ROOT / "README.md", ROOT / "docs" / "reports.md")
SKIP_MARKER = "# needs a board"
#: Measurement runs of minutes (building a latency model): documented, run by benchmarks/.
LONG_MARKER = "# takes minutes"
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w-]*>")
_NOT_SHELL = ("python", "yaml", "csv", "json")


@dataclass(frozen=True)
class Snippet:
    doc: Path
    line: int
    text: str
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _blocks(path: Path):
    """``(language, first line number, lines)`` of each fenced code block."""
    lang, start, lines = None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            if lang is None:
                lang, start, lines = line[3:].strip() or "text", number + 1, []
            else:
                yield lang, start, lines
                lang = None
        elif lang is not None:
            lines.append(line)


def commands() -> list[Snippet]:
    found = []
    for doc in DOCS:
        for lang, start, lines in _blocks(doc):
            if lang in _NOT_SHELL:
                continue
            for offset, line in enumerate(lines):
                text = line.strip().removeprefix("$ ").removeprefix(".venv/bin/")
                if not (text == "archkit" or text.startswith("archkit ")):
                    continue
                skip = None
                if text.endswith(SKIP_MARKER) or SKIP_MARKER + " " in text:
                    skip = "marked: needs a board"
                elif LONG_MARKER in text:
                    skip = "marked: takes minutes (benchmarks/latency_predictor.py runs it)"
                elif _PLACEHOLDER.search(text.split(" #")[0]):
                    skip = "holds a <placeholder>"
                found.append(Snippet(doc, start + offset, text, skip))
    return found


def python_blocks() -> list[Snippet]:
    return [
        Snippet(doc, start, "\n".join(lines))
        for doc in PYTHON_DOCS
        for lang, start, lines in _blocks(doc)
        if lang == "python"
    ]


def test_the_docs_hold_commands_to_run():
    found = commands()
    assert len([c for c in found if c.skip is None]) >= 20
    assert {c.doc.name for c in found} >= {"README.md", "reports.md", "search.md"}


def _load_report_fixtures():
    path = ROOT / "tests" / "report" / "conftest.py"
    spec = importlib.util.spec_from_file_location("archkit_tests_report_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> dict:
    """A folder laid out as the docs assume, and the environment to run archkit in it."""
    from archkit import reference as paper

    folder = tmp_path_factory.mktemp("docs")
    for kind in ("specs", "devices", "search_spaces"):
        (folder / kind).symlink_to(ROOT / "archkit" / "data" / kind, target_is_directory=True)
    _load_report_fixtures().write_run(folder / "runs" / "my-search")
    mine = (ROOT / "specs" / "mobilenetv2.yaml").read_text(encoding="utf-8")
    (folder / "my.yaml").write_text(mine.replace("name: mobilenetv2", "name: my_net", 1))
    rows = [f"mobilenetv2,{r.width},{r.resolution},{r.cpu_ms}"
            for r in paper.TFSLIM_MOBILENET_V2 if r.cpu_ms is not None]
    (folder / "latency.csv").write_text(
        "family,width,resolution,latency_ms\n" + "\n".join(rows) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "ARCHKIT_PYTHON": sys.executable,
        # Latency models and tuning records the docs' commands make stay in the scratch folder.
        "ARCHKIT_CACHE_DIR": str(folder / "cache")}
    for name in ("ARCHKIT_DEVICE_HOST", "ARCHKIT_DEVICE_PORT", "ARCHKIT_RPC_TRACKER",
                 "ARCHKIT_DEVICES_DIR"):
        env.pop(name, None)
    chromium = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh")],
                              capture_output=True, text=True, timeout=900)
    if chromium.returncode == 0:
        env["BROWSER_PATH"] = chromium.stdout.strip().splitlines()[-1]
    # The run `archkit search --resume runs/mobilenetv2-published-20260101-120000` continues.
    resumed = "runs/mobilenetv2-published-20260101-120000"
    _bash(f"archkit search --budget-madds 150M --trials 4 --run-dir {resumed}", folder, env)
    return {"folder": folder, "env": env}


def _bash(line: str, folder: Path, env: dict) -> subprocess.CompletedProcess[str]:
    script = 'archkit() { "$ARCHKIT_PYTHON" -m archkit.cli "$@"; }\n' + line
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=folder,
                          env=env, timeout=600)
    assert proc.returncode == 0, f"{line}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.mark.parametrize("snippet", [pytest.param(c, id=c.id) for c in commands()])
def test_command_runs_as_written(snippet: Snippet, scratch: dict):
    if snippet.skip:
        pytest.skip(snippet.skip)
    writes_png = re.search(r"archkit (plot|report)\b", snippet.text) and not re.search(
        r"--no-png|--format (csv|json)|--stdout|paper-tables", snippet.text)
    if writes_png and "BROWSER_PATH" not in scratch["env"]:
        pytest.fail("PNG export needs Chromium, and scripts/chromium.sh failed")
    proc = _bash(snippet.text, scratch["folder"], scratch["env"])
    assert "Traceback" not in proc.stderr
    # Warnings that are not archkit's own (torch, exporters) have no place in the output.
    assert "Warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("snippet", [pytest.param(c, id=c.id) for c in python_blocks()])
def test_python_block_runs_as_written(snippet: Snippet, scratch: dict):
    proc = subprocess.run([sys.executable, "-c", snippet.text], capture_output=True, text=True,
                          cwd=scratch["folder"], env=scratch["env"], timeout=600)
    assert proc.returncode == 0, proc.stderr


def test_only_commands_that_need_a_board_are_skipped():
    """The skip markers are for boards and device measurements only: every skipped line names a
    device (--device, --host, or the `latency` command's DEVICE)."""
    for snippet in commands():
        if snippet.skip:
            device = ("--device", "--host", "archkit serve", "archkit latency build",
                      "archkit latency evaluate")
            assert any(word in snippet.text for word in device), snippet.id
