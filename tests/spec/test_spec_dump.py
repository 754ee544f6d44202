"""The spec writer is the reader's inverse: every shipped spec and a variant of it read back
equal."""

from __future__ import annotations

import pytest

from archkit._data import shipped_file, shipped_names
from archkit.spec import apply_overrides, dump_spec, load_spec, parse_spec


@pytest.mark.parametrize("name", shipped_names("specs"))
def test_shipped_spec_reads_back_equal(name):
    spec = load_spec(shipped_file("specs", name))
    for variant in (spec, apply_overrides(spec, width=0.35, resolution=spec.resolution)):
        again = parse_spec(dump_spec(variant, comment="provenance\nsecond line"))
        assert again == variant


def test_comment_is_yaml_comment_lines():
    text = dump_spec(load_spec(shipped_file("specs", "mobilenetv2")), comment="a\nb")
    assert text.startswith("# a\n# b\n")
