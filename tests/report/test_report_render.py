"""The plots as files: a PNG of the expected size with something drawn on it, and an HTML plot
that a headless Chromium renders with its traces.

Needs Chromium (kaleido's PNG export and the render check): the ``chromium`` fixture installs
Debian's with scripts/chromium.sh when it is missing.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from archkit.cli import cli
from archkit.report import PNG_SIZE

from .conftest import SPECS_DIR

HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (signature, then the IHDR chunk)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def drawn_fraction(path: Path) -> float:
    """Fraction of pixels that are not the background colour."""
    from PIL import Image

    with Image.open(path) as image:
        histogram = image.convert("L").histogram()
    background = max(range(256), key=histogram.__getitem__)
    drawn = sum(n for level, n in enumerate(histogram) if abs(level - background) > 30)
    return drawn / sum(histogram)


@pytest.fixture(scope="module")
def plotted(chromium: str, tmp_path_factory) -> dict[str, Path]:
    """One run plot through the CLI (HTML + PNG); PNG export goes through kaleido."""
    from .conftest import write_run

    base = tmp_path_factory.mktemp("plots")
    run = write_run(base / "runs" / "fixture")
    env = {"BROWSER_PATH": chromium}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = CliRunner().invoke(
            cli,
            [
                "plot",
                "--y",
                "latency",
                "--run",
                str(run),
                "--specs-dir",
                str(SPECS_DIR),
                "-o",
                str(base / "run_latency"),
            ],
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert result.exit_code == 0, result.output
    return {"html": base / "run_latency.html", "png": base / "run_latency.png", "dir": base}


def test_png_is_a_real_image_of_the_expected_size(plotted):
    assert png_size(plotted["png"]) == PNG_SIZE
    assert drawn_fraction(plotted["png"]) > 0.01  # axes, markers and text, not a blank page


def test_html_renders_its_traces_in_headless_chromium(plotted, chromium: str, tmp_path: Path):
    source = plotted["html"].read_text(encoding="utf-8")
    assert "width 0.75, resolution 192, expansion 6" in source  # hover shows the spec
    url = plotted["html"].resolve().as_uri()
    common = [
        chromium,
        *HEADLESS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'class="main-svg"' in html, "plotly did not draw (is plotly.min.js next to it?)"
    traces = re.findall(r'class="trace scatter', html)
    # The run's trials (feasible and infeasible) and its winner; no family has a latency here,
    # and the run's front (accuracy against costs) has no place on a latency axis.
    assert len(traces) == 3, len(traces)
    assert len(re.findall(r'class="point"', html)) == 6 + 1
    assert "fixture: winner" in html and "Pareto front</text>" not in html

    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,800", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert png_size(shot) == (1200, 800)
    assert drawn_fraction(shot) > 0.01


def test_a_skipped_browser_message_is_not_printed_but_other_browser_errors_are(caplog):
    """choreographer (kaleido's browser channel) logs a message it cannot decode and skips,
    with a traceback; PNG export silences that record only (a CI run printed it once)."""
    import logging

    from choreographer.channels import pipe

    from archkit.report._draw import quiet_browser_channel

    logger = pipe._logger
    quiet_browser_channel()
    quiet_browser_channel()  # idempotent
    assert len([f for f in logger.filters if type(f).__name__ == "_DropIgnoredMessages"]) == 1
    with caplog.at_level(logging.DEBUG, logger="choreographer.channels.pipe"):
        try:
            raise ValueError("Expecting property name enclosed in double quotes")
        except ValueError:
            # choreographer's own lines (channels/pipe.py, read_jsons).
            logger.exception("JSONError decoding message. Ignoring")
            logger.exception("Error in trying to decode JSON off our read.")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["Error in trying to decode JSON off our read."]
