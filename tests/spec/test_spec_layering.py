"""The spec decoder depends on no other archkit layer; validated loading composes it with lowering.

Run in a fresh interpreter, so that what other tests imported does not hide an import.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from archkit.errors import SpecError
from archkit.spec import COMMON_FIELDS, FieldRule, decode_spec, parse_spec


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        check=True, capture_output=True, text=True,
    ).stdout
    return set(out.split())


def test_decoding_imports_no_layer_above_spec():
    loaded = _modules_after(
        "from archkit.spec import FieldRule, decode_spec\n"
        "decode_spec('layers: [{op: thing, c: 3}]', 'x.yaml',"
        " {'thing': (FieldRule('c', 'out_channels', int),)})"
    )
    assert {m for m in loaded if m.startswith("archkit.")} <= {
        "archkit._schema", "archkit.errors", "archkit.spec", "archkit.spec._fields",
        "archkit.spec._load",
        "archkit.spec._model",
    }


def test_import_archkit_imports_no_heavy_dependency():
    loaded = _modules_after("import archkit")
    assert not loaded & {"torch", "tvm", "optuna", "plotly", "pandas"}


def test_decoder_checks_keys_against_the_fields_it_is_given():
    fields = {"thing": (FieldRule("c", "out_channels", int, minimum=1),)}
    spec = decode_spec("layers: [{op: thing, c: 3, name: a}]", "x.yaml", fields)
    assert (spec.rows[0].op, spec.rows[0].out_channels, spec.rows[0].name) == ("thing", 3, "a")
    with pytest.raises(SpecError, match=r"^x.yaml: row 0: op: unknown operator 'conv2d' \(known: "
                       r"thing\)$"):
        decode_spec("layers: [{op: conv2d, c: 3}]", "x.yaml", fields)
    allowed = ", ".join(["op", "c", *(r.key for r in COMMON_FIELDS)])
    message = rf"row 0 \(thing\): k: unknown key 'k' for thing \(allowed: {allowed}\)$"
    with pytest.raises(SpecError, match=message):
        decode_spec("layers: [{op: thing, c: 3, k: 1}]", "x.yaml", fields)


def test_decoding_checks_no_shapes_but_parsing_does():
    """A grouped conv whose groups do not divide its input channels decodes, and fails to lower."""
    from archkit.ops import OPERATORS

    text = "layers: [{op: conv2d, c: 8, groups: 2}]\n"  # 3 input channels
    decode_spec(text, "g.yaml", {name: op.fields for name, op in OPERATORS.items()})
    with pytest.raises(SpecError, match=r"^g.yaml: row 0 \(conv2d\): groups: "):
        parse_spec(text, source="g.yaml")
