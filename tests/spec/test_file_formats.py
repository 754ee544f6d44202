"""One contract for archkit's three YAML formats (specs, search spaces, device profiles).

They are read the one way ``archkit._schema`` gives them, so every mistake a file can hold reads
the same in all three: one line that starts with the file, names the field, says what must hold
and what was found, raises the format's own error (exit status 2), and never runs code, hangs or
prints a traceback. Format-specific cases stay with each format (tests/spec/test_spec_errors.py,
tests/search/test_search_space.py, tests/device/test_devices.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from archkit._data import shipped_file
from archkit._schema import MAX_FILE_BYTES, Where, did_you_mean, load_yaml
from archkit.device import DeviceError, load_device
from archkit.errors import FileFormatError, SpecError
from archkit.search import SearchSpaceError, load_search_space
from archkit.spec import load_spec


@dataclass(frozen=True)
class Format:
    name: str
    load: Any
    error: type[FileFormatError]
    #: A valid file, as YAML lines.
    valid: tuple[str, ...]
    #: A nested mapping (its key on the valid file's first line) and one of its keys.
    nested: tuple[str, str]
    #: A top-level key and a misspelling of it.
    typo: tuple[str, str]


MOBILENETV1 = shipped_file("specs", "mobilenetv1")
FORMATS = [
    Format(
        "spec", load_spec, SpecError,
        ("input: {resolution: 32, channels: 3}", "layers: [{op: conv2d, c: 8}, {op: avgpool}]"),
        ("input", "resolution"),
        ("num_classes", "num_clases"),
    ),
    Format(
        "search space", load_search_space, SearchSpaceError,
        ("width: {low: 0.5, high: 1.0}", f"base: {MOBILENETV1}"),
        ("width", "low"),
        ("resolution", "resolutoin"),
    ),
    Format(
        "device", load_device, DeviceError,
        ("connection: {kind: rpc, host: board.lan, port: 9090}", "target: {kind: llvm}"),
        ("connection", "port"),
        ("threads", "threds"),
    ),
]


@pytest.fixture(params=FORMATS, ids=lambda f: f.name)
def fmt(request) -> Format:
    return request.param


def _error(fmt: Format, path: Path, text: str | bytes) -> FileFormatError:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(fmt.error) as info:
        fmt.load(str(path))
    error = info.value
    message = str(error)
    assert isinstance(error, FileFormatError) and error.exit_code == 2
    assert message.startswith(f"{path}: ") and error.source == str(path), message
    assert "\n" not in message and len(message) < 2_000, message
    return error


def test_the_valid_file_loads(fmt, tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("\n".join(fmt.valid) + "\n")
    assert fmt.load(str(path)) is not None


def test_a_key_written_twice_is_rejected_with_both_lines(fmt, tmp_path):
    key = fmt.typo[0]
    value = yaml.safe_load("\n".join(fmt.valid)).get(key, 1)
    text = "\n".join(fmt.valid) + f"\n{key}: {value}\n{key}: {value}\n"
    error = _error(fmt, tmp_path / "f.yaml", text)
    assert error.field == key
    assert f"duplicate key '{key}' (first at line 3, again at line 4" in error.reason


def test_a_nested_key_written_twice_names_its_path(fmt, tmp_path):
    parent, key = fmt.nested
    first, *rest = fmt.valid
    doubled = first.replace(f"{key}:", f"{key}: 1, {key}:", 1)
    assert doubled != first
    error = _error(fmt, tmp_path / "f.yaml", "\n".join([doubled, *rest]))
    assert error.field == f"{parent}.{key}"
    assert f"duplicate key '{key}'" in error.reason


def test_an_unknown_key_says_which_key_was_meant(fmt, tmp_path):
    meant, typo = fmt.typo
    error = _error(fmt, tmp_path / "f.yaml", "\n".join(fmt.valid) + f"\n{typo}: 4\n")
    assert error.field == typo
    assert f"unknown key '{typo}', did you mean '{meant}'? (allowed: " in error.reason


def test_an_unknown_nested_key_is_named_with_its_parent(fmt, tmp_path):
    parent, _ = fmt.nested
    first, *rest = fmt.valid
    text = "\n".join([first.replace("{", "{zz_colour: red, ", 1), *rest])
    error = _error(fmt, tmp_path / "f.yaml", text)
    assert error.field == f"{parent}.zz_colour" and "unknown key 'zz_colour'" in error.reason


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"a: [\n", ["not valid YAML at line 2, column 1"]),
        (b"a: 1\n\x1d", ["not valid YAML at line 2: #x001d is not allowed (special"]),
        (b"\xff\xfe\x00a", ["not UTF-8 text"]),
        (b"- a\n- list\n", ["the top level must be a mapping of keys, got list"]),
        (b"", ["the top level must be a mapping of keys, got nothing"]),
        (b"a: !!python/object/apply:os.system ['echo pwned']\n", ["not valid YAML"]),
        (b"a: " + b"[" * 100_000 + b"]" * 100_000, ["not valid YAML"]),
        (b"x" * (MAX_FILE_BYTES + 1), ["larger than"]),
    ],
    ids=["broken", "control character", "not utf-8", "a list", "empty", "code tag", "deep",
         "too large"],
)
def test_a_broken_file_is_one_located_line(fmt, tmp_path, content, words):
    error = _error(fmt, tmp_path / "f.yaml", content)
    for word in words:
        assert word in error.reason


def test_a_missing_file(fmt, tmp_path):
    with pytest.raises(fmt.error, match=r"cannot read the .*: No such file"):
        fmt.load(str(tmp_path / "nope.yaml"))


def test_values_are_shown_bounded(fmt, tmp_path):
    """Billion laughs and integers of thousands of digits: a short message, no hang."""
    laughs = "[" + ", ".join(
        ["&a0 [" + ",".join(["lol"] * 10) + "]"]
        + [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    ) + "]"
    meant = fmt.typo[0]
    for value in (laughs, "0x" + "f" * 4000):
        error = _error(fmt, tmp_path / "f.yaml", "\n".join(fmt.valid) + f"\n{meant}: {value}\n")
        assert error.field.startswith(meant)  # a list is a space's choices: resolution.choices[0]


# --------------------------------------------------------------------------- the helper itself

WHERE = Where("x.yaml", SpecError)


def test_merge_keys_may_be_overridden_but_not_written_twice():
    data = load_yaml("base: &b {c: 1, n: 2}\nrow: {<<: *b, c: 3}\n", WHERE)
    assert data["row"] == {"c": 3, "n": 2}
    with pytest.raises(SpecError, match="duplicate key 'c'"):
        load_yaml("row: {<<: {c: 1}, c: 3, c: 4}\n", WHERE)


def test_quoting_does_not_make_another_key():
    with pytest.raises(SpecError, match=r"^x.yaml: a: duplicate key 'a'"):
        load_yaml('a: 1\n"a": 2\n', WHERE)
    assert load_yaml("a: 1\n'1': 2\n1: 3\n", WHERE) == {"a": 1, "1": 2, 1: 3}


def test_a_duplicate_in_a_list_of_rows_names_the_row_and_operator():
    text = "layers:\n  - {op: avgpool}\n  - op: conv2d\n    c: 16\n    c: 32\n"
    with pytest.raises(SpecError) as info:
        load_yaml(text, WHERE, rows="layers")
    assert str(info.value) == (
        "x.yaml: row 1 (conv2d): c: duplicate key 'c' (first at line 4, again at line 5; "
        "YAML would silently keep the last)"
    )
    with pytest.raises(SpecError) as info:
        load_yaml(text, WHERE)  # a format without rows: the path
    assert info.value.field == "layers[1].c" and info.value.row is None


def test_did_you_mean():
    assert did_you_mean("bottlenek", ["conv2d", "bottleneck"]) == ", did you mean 'bottleneck'?"
    assert did_you_mean("warp", ["conv2d", "bottleneck"]) == ""
    assert did_you_mean(3, ["conv2d"]) == ""
