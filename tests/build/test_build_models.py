"""Every shipped spec and the published family members build, run, and export to ONNX.

Models are calibrated (BatchNorm statistics from one random batch, tests/conftest.py) so that the
outputs compared are O(1), not the ~1e-9 logits of fresh statistics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHIPPED, SPECS_DIR, as_tensors, family_params
from torch import nn

from archkit.build import build_model, example_input, export_onnx
from archkit.ops import lower
from archkit.spec import apply_overrides, load_spec

ONNX_TOLERANCE = 1e-4


def _expected_output_shapes(spec) -> list[tuple[int, ...]]:
    """What the model must return: ``N x num_classes`` logits for a classifier (the last row an
    fc, or dropout after an fc), otherwise the lowered network's output feature maps."""
    rows = [r for r in spec.rows if r.op != "dropout"]
    if rows and rows[-1].op == "fc":
        c = rows[-1].out_channels
        return [(1, spec.num_classes if c == "num_classes" else c)]
    network = lower(spec)
    shapes = getattr(network, "output_shapes", None) or (network.output_shape,)
    out = []
    for s in shapes:
        out.append(
            (1, s.channels)
            if (s.height, s.width) == (1, 1) and len(shapes) == 1
            else (1, s.channels, s.height, s.width)
        )
    return out


@pytest.mark.parametrize("variant", family_params())
def test_forward_output_shape(variant, models):
    spec = models.spec(variant)
    model = models.model(variant)
    with torch.no_grad():
        result = model(example_input(spec))
    outputs = as_tensors(result)
    assert [tuple(t.shape) for t in outputs] == _expected_output_shapes(spec)
    for t in outputs:
        assert torch.isfinite(t).all()
    if spec.rows[-1].op in ("fc", "dropout") and any(r.op == "fc" for r in spec.rows):
        assert tuple(outputs[0].shape) == (1, spec.num_classes)


@pytest.mark.parametrize("name", SHIPPED)
def test_native_resolution_forward(name):
    """Each shipped spec as shipped (full resolution), one eval forward pass."""
    spec = load_spec(SPECS_DIR / f"{name}.yaml")
    model = build_model(spec).eval()
    with torch.no_grad():
        outputs = as_tensors(model(example_input(spec)))
    assert [tuple(t.shape) for t in outputs] == _expected_output_shapes(spec)


@pytest.mark.parametrize("name", SHIPPED)
def test_batch_of_two_runs_in_train_mode(name):
    spec = apply_overrides(load_spec(SPECS_DIR / f"{name}.yaml"), resolution=64)
    model = build_model(spec)
    assert model.training  # build_model returns a train-mode model
    out = as_tensors(model(example_input(spec, batch=2)))
    assert all(t.shape[0] == 2 for t in out)
    sum(t.sum() for t in out).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("variant", family_params())
def test_onnx_export_matches_pytorch(variant, models, tmp_path):
    import onnx
    import onnxruntime as ort

    spec = models.spec(variant)
    model = models.model(variant)
    path = export_onnx(spec, tmp_path / f"{variant.id}.onnx", model=model)
    onnx.checker.check_model(str(path))
    x = example_input(spec, seed=3)
    with torch.no_grad():
        expected = [t.numpy() for t in as_tensors(model.eval()(x))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        scale = float(np.abs(e).max())
        # Not vacuous: calibrated outputs are O(1e-2) or more.
        assert scale > 1e-3
        # 1e-4 absolute on O(1) outputs; relative to the largest output above that (DeepLab's
        # calibrated logits reach ~15, where float32 reordering alone gives ~1e-3).
        np.testing.assert_allclose(g, e, rtol=0, atol=ONNX_TOLERANCE * max(1.0, scale))


def test_mobilenetv2_has_torchvision_parameter_count():
    """torchvision's mobilenet_v2() (1.0, 1000 classes) has 3,504,872 parameters."""
    spec = load_spec(SPECS_DIR / "mobilenetv2.yaml")
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    # ... and the same per-kind layout: 52 convs (1 stem + 17 blocks' 2 or 3 + last 1x1), 1 fc.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 52
    assert sum(1 for m in model.modules() if isinstance(m, nn.Linear)) == 1
    assert sum(m.groups > 1 for m in convs) == 17  # one depthwise conv per bottleneck


@pytest.mark.parametrize(
    ("width", "last_conv"),
    [(0.35, 1280), (0.5, 1280), (0.75, 1280), (1.0, 1280), (1.3, 1664), (1.4, 1792)],
)
def test_mobilenetv2_last_conv_width_rule(width, last_conv, references):
    """Paper: the width multiplier applies to every layer except the last conv below 1;
    1.4 gives 1792 (TF-slim: make_divisible(1280 * 1.4))."""
    spec = apply_overrides(load_spec(SPECS_DIR / "mobilenetv2.yaml"), width=width)
    model = build_model(spec)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[-1].out_channels == last_conv
    if width > 1:
        assert last_conv == references.make_divisible(1280 * width, 8)
    # Every other layer follows TF-slim's rule (the first conv: 32 * width).
    assert convs[0].out_channels == references.make_divisible(32 * width, 8)
    fc = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert (fc.in_features, fc.out_features) == (last_conv, 1000)


@pytest.mark.parametrize("t", [1.5, 2.5, 3, 6])
def test_bottleneck_hidden_width_is_make_divisible(t, references):
    """archkit's documented rule for the hidden width: make_divisible(C_in * t, divisor)."""
    from archkit.spec import parse_spec

    spec = parse_spec(
        f"input: {{resolution: 16, channels: 10}}\nlayers: [{{op: bottleneck, t: {t}, c: 12}}]\n",
        source="hidden.yaml",
    )
    model = build_model(spec)
    expand = model.blocks[0].expand.conv
    assert expand.out_channels == references.make_divisible(10 * t, 8)
    assert model.blocks[0].depthwise.conv.groups == expand.out_channels
