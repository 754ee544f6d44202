"""Head specs build to exact PyTorch models: fvcore and ``sum(p.numel())`` agree with the counter
on random head specs; the shipped specs export to ONNX (onnxruntime matches PyTorch) and compile
through TVM on the host."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FVCORE_MAC_OPS, calibrate, fvcore_analysis, fvcore_madds
from hypothesis import given, settings
from hypothesis import strategies as st

from archkit._data import shipped_dir
from archkit.cost import count, schedule_steps
from archkit.ops import OPERATORS, lower
from archkit.spec import apply_overrides, load_spec, parse_spec

torch = pytest.importorskip("torch")

from archkit.build import build_model, example_input, export_onnx  # noqa: E402

SPECS = shipped_dir("specs")


def _as_tuple(outputs):
    return outputs if isinstance(outputs, tuple) else (outputs,)


@st.composite
def head_specs(draw):
    """A small backbone with random named taps, then random SSD / DeepLab heads."""
    resolution = draw(st.integers(8, 40))
    rows = [
        {"op": "conv2d", "c": draw(st.integers(2, 12)), "s": 2, "name": "stem"},
        {
            "op": "bottleneck",
            "t": draw(st.sampled_from([1, 2, 6])),
            "c": draw(st.integers(2, 16)),
            "n": draw(st.integers(1, 2)),
            "s": draw(st.sampled_from([1, 2])),
            "name": "b",
        },
    ]
    taps = ["stem", "b", "b.0", "b.0.depthwise", "b.0.project"]
    if rows[1]["t"] != 1:
        taps.append("b.0.expand")
    output_stride = draw(st.sampled_from([None, 2]))
    # SSD heads export their maps; an ASPP head (last, as in DeepLab) ends the chain.
    kinds = ["ssd_head"] * draw(st.integers(0, 2)) + (["aspp"] if draw(st.booleans()) else [])
    for i, kind in enumerate(kinds or ["ssd_head"]):
        # The first head reads the backbone's last map, so that no backbone layer is dead.
        row = {"op": kind, "from": "b" if i == 0 else draw(st.sampled_from(taps))}
        if kind == "ssd_head":
            row.update(
                anchors=draw(st.integers(1, 6)),
                separable=draw(st.booleans()),
                kernel=draw(st.sampled_from([1, 3])),
                background=draw(st.booleans()),
            )
        else:
            row.update(
                c=draw(st.integers(1, 16)),
                rates=draw(st.lists(st.integers(2, 8), max_size=3, unique=True)),
                image_pooling=draw(st.booleans()),
                separable=draw(st.booleans()),
            )
        rows.append(row)
    if draw(st.booleans()):
        rows += [
            {
                "op": "conv2d",
                "c": "num_classes",
                "kernel": 1,
                "bn": False,
                "bias": True,
                "activation": "none",
            },
            {"op": "upsample"},
        ]
    spec = {
        "name": "random_heads",
        "input": {"resolution": resolution, "channels": 3},
        "num_classes": draw(st.integers(1, 7)),
        "layers": rows,
    }
    if output_stride:
        spec["output_stride"] = output_stride
    return spec


@settings(max_examples=25)
@given(spec_dict=head_specs())
def test_random_head_specs_count_exactly(spec_dict, peak_meter):
    import yaml

    spec = parse_spec(yaml.safe_dump(spec_dict, sort_keys=False), source="random.yaml")
    model = build_model(spec).eval()
    x = example_input(spec)
    by_op = fvcore_analysis(model, x).by_operator()
    costs = count(spec)
    assert costs.madds == fvcore_madds(by_op)
    assert set(by_op) & set(FVCORE_MAC_OPS) <= {"conv", "linear"}
    assert costs.params == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        outputs = _as_tuple(model(x))
    net = lower(spec)
    assert [tuple(t.shape[1:]) for t in outputs] == [
        (s.channels, s.height, s.width) for s in net.output_shapes
    ]
    # Peak memory: forward hooks on the built model (tests/conftest.py) see the same schedule.
    assert costs.peak_activation_elements == peak_meter(model, x)[0]
    assert schedule_steps(net, "fused")  # every source and output resolves


def _calibrated(name: str, resolution: int):
    spec = apply_overrides(load_spec(SPECS / f"{name}.yaml"), resolution=resolution)
    model = build_model(spec)
    calibrate(model, spec)
    return spec, model


@pytest.mark.parametrize(
    ("name", "resolution"),
    [("ssdlite_mobilenetv2", 96), ("ssd_mobilenetv2", 64), ("deeplabv3_mobilenetv2_os8_aspp", 65)],
)
def test_onnx_export_matches_pytorch(name, resolution, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec, model = _calibrated(name, resolution)
    path = export_onnx(spec, tmp_path / f"{name}.onnx", model=model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = example_input(spec)
    got = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in _as_tuple(model(x))]
    assert [o.name for o in session.get_outputs()] == list(model.output_names)
    assert len(got) == len(want) == len(lower(spec).output_ids)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        assert np.abs(w).max() > 1e-2  # calibrated: the comparison is not vacuous
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))


def test_export_takes_a_built_model_and_its_example_input(tmp_path):
    """What the device layer's host baselines do: any model, its own input, no spec."""
    ort = pytest.importorskip("onnxruntime")
    spec, model = _calibrated("ssdlite_mobilenetv2", 64)
    x = example_input(spec, batch=2, seed=5)
    path = export_onnx(None, tmp_path / "m.onnx", model=model, example=x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in _as_tuple(model(x))]
    assert [g.shape[0] for g in got] == [2] * len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))
    with pytest.raises(ValueError, match="a model and an example input"):
        export_onnx(None, tmp_path / "n.onnx", model=model)


def test_ssdlite_compiles_through_tvm_on_the_host():
    """The classifiers' TVM path (archkit.device): torch.export -> Relax -> host LLVM; the
    device checks every output against PyTorch before timing."""
    pytest.importorskip("tvm")
    device = pytest.importorskip("archkit.device")
    spec, model = _calibrated("ssdlite_mobilenetv2", 64)
    with torch.no_grad():
        largest = max(float(t.abs().max()) for t in _as_tuple(model(example_input(spec))))
    assert largest > 1.0  # calibrated BatchNorm: outputs are O(10), not ~1e-9
    # fp32 through ~60 layers with BatchNorm folded into the convolutions: relative 5e-4.
    atol = 5e-4 * largest
    result = device.measure_latency(
        model.eval(),
        example_input(spec),
        device.load_device("host"),
        repeats=2,
        number=1,
        progress=False,
        atol=atol,
    )
    assert result.max_abs_diff <= atol
    assert result.median_ms > 0


@pytest.mark.parametrize("op", [name for name, op in OPERATORS.items() if op.head])
@pytest.mark.parametrize("prefix", ["", "{op: conv2d, c: 8}, "])
def test_every_head_operator_with_defaults_counts_exactly(op, prefix):
    """Registered head operators, each with its defaults, on the input or after a conv."""
    spec = parse_spec(f"input: {{resolution: 16}}\nlayers: [{prefix}{{op: {op}}}]\n")
    model = build_model(spec).eval()
    x = example_input(spec)
    assert count(spec).madds == fvcore_madds(fvcore_analysis(model, x).by_operator())
    assert count(spec).params == sum(p.numel() for p in model.parameters())
