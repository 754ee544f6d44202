"""archkit.reference against its sources: shared/reference/published_imagenet.md (TF-slim's and
the papers' tables, gathered with their sources) and the MobileNetV2 paper's plain text. A typo
in the transcription fails here; both files sit beside the checkout in the project's CI layout
(the tests skip where they are absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from archkit import reference

from .conftest import ROOT


def _shared(pattern: str) -> Path:
    # shared/ is beside the checkout (a worktree sits one level deeper).
    for folder in ROOT.parents:
        found = sorted((folder / "shared").glob(pattern))
        if found:
            return found[0]
    pytest.skip(f"shared/{pattern} is not present (only in the project's CI layout)")


def _published_table(heading: str) -> list[list[str]]:
    text = _shared("reference/published_imagenet.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    # lines[0] is the header, lines[1] the |---| rule.
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def _number(cell: str) -> float | None:
    cell = cell.removesuffix("ms").removesuffix("M").strip()
    return None if cell == "-" else float(cell)


@pytest.mark.parametrize(
    ("heading", "rows"),
    [
        ("MobileNetV2 (TF-slim", reference.TFSLIM_MOBILENET_V2),
        ("MobileNetV1 (TF-slim", reference.TFSLIM_MOBILENET_V1),
    ],
)
def test_tfslim_rows_are_the_published_ones(heading, rows):
    table = _published_table(heading)
    expected = [tuple(_number(c) for c in row) for row in table]
    actual = [
        (r.width, r.resolution, r.macs_m, r.params_m, r.top1, r.top5)
        + (() if r.cpu_ms is None else (r.cpu_ms,))
        for r in rows
    ]
    assert actual == expected


def test_table4_is_the_published_one():
    table = _published_table("Other rows of the MobileNetV2 paper's Table 4")
    expected = [(row[0], *(_number(c) for c in row[1:])) for row in table]
    assert [(r.model, r.top1, r.params_m, r.madds_m, r.cpu_ms) for r in reference.TABLE4] == (
        expected
    )
    nasnet = next(r for r in reference.TABLE4 if r.model == "NasNet-A")
    assert reference.NASNET_A == {
        "madds_m": nasnet.madds_m,
        "params_m": nasnet.params_m,
        "top1": nasnet.top1,
    }


def test_shufflenet_rows_are_the_published_ones():
    table = _published_table("ShuffleNet v1, g = 3")
    published = [
        (_number(row[1]), _number(row[2].split()[0]), _number(row[3])) for row in table[:3]
    ]
    assert [(madds, params, top1) for _, madds, params, top1, _ in reference.SHUFFLENET_G3] == (
        published
    )


def test_torchvision_count_is_the_quoted_one():
    text = _shared("reference/published_imagenet.md").read_text(encoding="utf-8")
    assert f"{reference.TORCHVISION_MOBILENET_V2_PARAMS:,} in a PyTorch model" in text


def _paper_tokens() -> set[str]:
    # The MobileNetV2 paper, as plain text.
    return set(_shared("seeds/*.txt").read_text(encoding="utf-8").split())


def test_table3_cells_are_printed_in_the_paper():
    tokens = _paper_tokens()
    for name, cells in reference.TABLE3.items():
        for cell in cells:
            printed = f"{cell.channels}/{cell.kb:g}"
            assert printed in tokens or f"{printed}K" in tokens, (name, printed)
        assert f"{reference.TABLE3_MAX_KB[name]}K" in tokens


def test_tables_5_6_7_numbers_are_printed_in_the_paper():
    tokens = _paper_tokens()
    rows = [*reference.TABLE5, *reference.TABLE6, *reference.TABLE7]
    for row in rows:
        assert f"{row.params_m:g}M" in tokens, row
        assert {f"{row.madds_b:g}B", f"{row.madds_b:.1f}B"} & tokens, row
    for row in reference.TABLE6:
        assert f"{row.map:g}" in tokens, row
    for row in reference.TABLE7:
        assert f"{row.miou:.2f}" in tokens, row


def test_import_is_light():
    code = (
        "import sys, archkit.reference; "
        "print(sorted({'torch', 'pandas', 'optuna', 'plotly'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
