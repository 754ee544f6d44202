"""Validation errors a user can act on: each names the file, the row (index and operator) and the
field, and the CLI turns them into exit status 2 without a traceback."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from archkit.errors import SpecError
from archkit.spec import load_spec, parse_spec

HEADER = "name: bad\ninput: {resolution: 32, channels: 3}\nnum_classes: 10\nlayers:\n"
GOOD_ROWS = [
    "  - {op: conv2d, c: 16, s: 2}",
    "  - {op: bottleneck, t: 6, c: 24, n: 2, s: 2}",
    "  - {op: avgpool}",
    "  - {op: fc}",
]


def _with_row(index: int, row: str, *, replace: bool = True) -> str:
    rows = list(GOOD_ROWS)
    if replace:
        rows[index] = row
    else:
        rows.insert(index, row)
    return HEADER + "\n".join(rows) + "\n"


# (id, spec text, row index, operator named in the message or None, field, words in the reason)
BAD_ROWS = [
    (
        "wrong type",
        _with_row(1, "  - {op: bottleneck, t: 6, c: many, n: 2, s: 2}"),
        1,
        "bottleneck",
        "c",
        ["integer", "'many'"],
    ),
    (
        "wrong type float",
        _with_row(1, "  - {op: bottleneck, t: six, c: 24}"),
        1,
        "bottleneck",
        "t",
        ["number", "'six'"],
    ),
    (
        "wrong type bool",
        _with_row(0, "  - {op: conv2d, c: 16, bn: 1}"),
        0,
        "conv2d",
        "bn",
        ["true or false"],
    ),
    (
        "unknown operator",
        _with_row(1, "  - {op: convolution, c: 24}"),
        1,
        None,
        "op",
        ["unknown operator", "'convolution'"],
    ),
    (
        "stride 3",
        _with_row(1, "  - {op: bottleneck, t: 6, c: 24, n: 2, s: 3}"),
        1,
        "bottleneck",
        "s",
        ["1, 2", "3"],
    ),
    ("stride 0", _with_row(0, "  - {op: conv2d, c: 16, s: 0}"), 0, "conv2d", "s", ["0"]),
    (
        "channels zero",
        _with_row(1, "  - {op: bottleneck, t: 6, c: 0}"),
        1,
        "bottleneck",
        "c",
        ["at least 1", "0"],
    ),
    (
        "channels negative",
        _with_row(0, "  - {op: conv2d, c: -16, s: 2}"),
        0,
        "conv2d",
        "c",
        ["-16"],
    ),
    (
        "groups do not divide",
        _with_row(0, "  - {op: conv2d, c: 16, s: 2, groups: 2}"),
        0,
        "conv2d",
        "groups",
        ["groups=2", "divide", "3"],
    ),
    (
        "groups do not divide output",
        _with_row(1, "  - {op: conv2d, c: 10, groups: 4}"),
        1,
        "conv2d",
        "groups",
        ["groups=4", "divide"],
    ),
    (
        "spatial size zero",
        _with_row(3, "  - {op: conv2d, c: 8, kernel: 2}", replace=False),
        3,
        "conv2d",
        "kernel",
        ["zero", "1x1"],
    ),
    (
        "unknown key",
        _with_row(1, "  - {op: bottleneck, t: 6, c: 24, stride: 2}"),
        1,
        "bottleneck",
        "stride",
        ["unknown key", "'stride'"],
    ),
    ("fc on a feature map", _with_row(2, "  - {op: dropout}"), 3, "fc", "op", ["1x1"]),
    (
        "row after fc",
        _with_row(4, "  - {op: conv2d, c: 8, kernel: 1}", replace=False),
        4,
        "conv2d",
        "op",
        ["fc"],
    ),
    (
        "shuffle channels",
        _with_row(1, "  - {op: shuffle, c: 24, s: 1, groups: 3}"),
        1,
        "shuffle",
        "c",
        ["16", "24"],
    ),
    ("row not a mapping", _with_row(1, "  - bottleneck"), 1, None, None, ["mapping"]),
    (
        "duplicate key",
        _with_row(1, "  - {op: bottleneck, t: 6, c: 24, n: 2, s: 2, c: 32}"),
        1,
        "bottleneck",
        "c",
        ["duplicate key 'c'", "line 6, again at line 6", "keep the last"],
    ),
    (
        "duplicate key on its own lines",
        _with_row(1, "  - op: bottleneck\n    c: 16\n    t: 6\n    c: 32"),
        1,
        "bottleneck",
        "c",
        ["duplicate key 'c' (first at line 7, again at line 9"],
    ),
    (
        "misspelt operator",
        _with_row(1, "  - {op: bottlenek, t: 6, c: 24}"),
        1,
        None,
        "op",
        ["unknown operator 'bottlenek', did you mean 'bottleneck'? (known: conv2d, "],
    ),
    (
        "misspelt key",
        _with_row(0, "  - {op: conv2d, c: 16, kernal: 3}"),
        0,
        "conv2d",
        "kernal",
        ["unknown key 'kernal' for conv2d, did you mean 'kernel'? (allowed: op, c, "],
    ),
    (
        "misspelt choice",
        _with_row(0, "  - {op: conv2d, c: 16, activation: relu5}"),
        0,
        "conv2d",
        "activation",
        ["must be one of relu6, relu, none, got 'relu5', did you mean"],
    ),
    (
        "kernel too big",
        _with_row(0, "  - {op: conv2d, c: 16, kernel: 99}"),
        0,
        "conv2d",
        "kernel",
        ["99"],
    ),
    (
        "nan expansion",
        _with_row(1, "  - {op: bottleneck, t: .nan, c: 24}"),
        1,
        "bottleneck",
        "t",
        ["nan"],
    ),
]


@pytest.mark.parametrize(
    ("text", "row", "op", "field", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_ROWS],
)
def test_row_errors_name_file_row_and_field(text, row, op, field, words, tmp_path):
    path = tmp_path / "BAD.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    error = info.value
    message = str(error)
    assert message.startswith(f"{path}: row {row}"), message
    if op is not None:
        assert message.startswith(f"{path}: row {row} ({op}): "), message
        assert error.op == op
    if field is not None:
        assert f": {field}: " in message, message
        assert error.field == field
    assert error.row == row
    assert error.source == str(path)
    for word in words:
        assert word in error.reason, message
    assert "\n" not in message


BAD_TOP = [
    ("resolution type", "input: {resolution: big}\nlayers: [{op: avgpool}]", "input.resolution"),
    ("resolution zero", "input: {resolution: 0}\nlayers: [{op: avgpool}]", "input.resolution"),
    ("channels zero", "input: {channels: 0}\nlayers: [{op: avgpool}]", "input.channels"),
    ("width negative", "width: -1\nlayers: [{op: avgpool}]", "width"),
    ("width nan", "width: .nan\nlayers: [{op: avgpool}]", "width"),
    ("num_classes zero", "num_classes: 0\nlayers: [{op: avgpool}]", "num_classes"),
    (
        "divisor zero",
        "channel_rounding: {divisor: 0}\nlayers: [{op: avgpool}]",
        "channel_rounding.divisor",
    ),
    ("unknown key", "resolution: 224\nlayers: [{op: avgpool}]", "resolution"),
    ("no layers", "name: x\n", "layers"),
    ("empty layers", "layers: []\n", "layers"),
]


@pytest.mark.parametrize(("text", "field"), [pytest.param(*c[1:], id=c[0]) for c in BAD_TOP])
def test_top_level_errors_name_file_and_field(text, field, tmp_path):
    path = tmp_path / "BAD.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert info.value.field == field and info.value.row is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"layers: [\n", ["not valid YAML", "line"]),
        (b"\xff\xfe\x00layers", ["UTF-8"]),
        (b"- just\n- a list\n", ["mapping"]),
        (b"", ["mapping"]),
    ],
    ids=["broken yaml", "not utf-8", "a list", "empty"],
)
def test_file_level_errors(content, words, tmp_path):
    path = tmp_path / "BAD.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(str(path))
    for word in words:
        assert word in str(info.value)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path)  # a directory


def test_parse_spec_names_its_source():
    with pytest.raises(SpecError) as info:
        parse_spec("layers: [{op: conv2d, c: 8, s: 3}]", source="inline.yaml")
    assert str(info.value) == "inline.yaml: row 0 (conv2d): s: must be one of 1, 2, got 3"


def test_specs_are_frozen():
    import dataclasses

    spec = parse_spec("layers: [{op: conv2d, c: 8}]")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.width = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.rows[0].stride = 2  # type: ignore[misc]


# --------------------------------------------------------------------------- CLI

ARCHKIT = Path(sys.executable).with_name("archkit")


def _require_profile_command() -> None:
    if not ARCHKIT.exists():
        pytest.skip(f"{ARCHKIT} is not installed")
    if importlib.util.find_spec("archkit.cli.profile") is None:
        pytest.skip("`archkit profile` is not written yet (no archkit.cli.profile module)")


def _profile(path: Path, status: int) -> str:
    """``archkit profile PATH``: its exit status must be ``status``, with no traceback."""
    _require_profile_command()
    result = subprocess.run(
        [str(ARCHKIT), "profile", str(path)], capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == status, output
    assert "Traceback" not in output
    return output


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(case[1], f"row {case[2]}", id=case[0]) for case in BAD_ROWS[:12]]
    + [
        pytest.param("layers: [\n", "not valid YAML", id="broken yaml"),
        pytest.param(
            "width: 0x" + "f" * 4000 + "\nlayers: [{op: avgpool}]", "width", id="huge hex width"
        ),
    ],
)
def test_cli_profile_bad_spec_exits_2_without_traceback(text, expected, tmp_path):
    path = tmp_path / "BAD.yaml"
    path.write_text(text)
    output = _profile(path, 2)
    assert str(path) in output and expected in output


def test_cli_profile_good_spec_exits_0_and_a_missing_file_2(tmp_path):
    from conftest import SPECS_DIR

    _profile(SPECS_DIR / "mobilenetv2.yaml", 0)
    assert "cannot read the spec" in _profile(tmp_path / "nope.yaml", 2)
