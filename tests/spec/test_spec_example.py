"""docs/spec.md's complete example spec: the file it shows is the file that ships in
docs/examples/, it loads without warnings, and archkit counts it exactly as fvcore and PyTorch do
on the built model."""

from __future__ import annotations

import re
import warnings

from conftest import FVCORE_MAC_OPS, ROOT, calibrate, fvcore_analysis, fvcore_madds

from archkit.spec import load_spec

DOC = ROOT / "docs" / "spec.md"
EXAMPLE = ROOT / "docs" / "examples" / "small_mobilenet.yaml"


def test_the_doc_shows_the_shipped_example_file_verbatim():
    text = DOC.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert EXAMPLE.read_text() in blocks
    assert "docs/examples/small_mobilenet.yaml" in text
    assert "`layers`" in text


def test_the_example_counts_like_fvcore_and_torch():
    from archkit.build import build_model, example_input
    from archkit.cost import count

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = load_spec(EXAMPLE)
    model = build_model(spec)
    calibrate(model, spec)
    by_op = fvcore_analysis(model, example_input(spec)).by_operator()
    costs = count(spec)
    assert costs.madds == fvcore_madds(by_op)
    assert set(by_op) & set(FVCORE_MAC_OPS) <= {"conv", "linear"}
    assert costs.params == sum(p.numel() for p in model.parameters())
    # Every top-level key is written out, not left to its default.
    assert (spec.resolution, spec.num_classes, spec.width, spec.divisor) == (96, 10, 0.5, 8)
    assert model(example_input(spec)).shape == (1, 10)
