"""DeepLab's output stride: strides replaced by atrous (dilated) convolution, TF-slim's rule."""

from __future__ import annotations

import dataclasses

import pytest

from archkit._data import shipped_dir
from archkit.errors import SpecError
from archkit.ops import lower
from archkit.spec import load_spec, parse_spec

SPECS = shipped_dir("specs")

# MobileNetV2's layers as TF-slim's V2_DEF lists them (stem conv, then every bottleneck repeat):
# the stride each one is written with.
_V2_STRIDES = [2, 1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]


def tf_slim_strides_and_rates(strides: list[int], output_stride: int) -> list[tuple[int, int]]:
    """TF-slim's ``mobilenet_base`` loop (research/slim/nets/mobilenet/mobilenet.py), restated:

    if output_stride is not None and current_stride == output_stride:
        layer_stride = 1; layer_rate = rate; rate *= stride
    else:
        layer_stride = stride; layer_rate = 1; current_stride *= stride
    """
    current, rate, out = 1, 1, []
    for stride in strides:
        if current == output_stride:
            out.append((1, rate))
            rate *= stride
        else:
            out.append((stride, 1))
            current *= stride
    return out


def _spatial(spec_name: str, output_stride: int) -> list[tuple[int, int]]:
    spec = load_spec(SPECS / f"{spec_name}.yaml")
    spec = dataclasses.replace(spec, output_stride=output_stride)
    result = []
    for block in lower(spec).blocks[: len(_V2_STRIDES)]:
        conv = next(n for n in block.nodes if n.attrs.get("kernel", 1) > 1)
        result.append((conv.attr("stride"), conv.attr("dilation")))
    return result


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_backbone_strides_and_rates_follow_tf_slim(output_stride):
    expected = tf_slim_strides_and_rates(_V2_STRIDES, output_stride)
    assert _spatial("deeplabv3_mobilenetv2", output_stride) == expected


@pytest.mark.parametrize(
    ("spec_name", "side"), [("deeplabv3_mobilenetv2", 32), ("deeplabv3_mobilenetv2_os8", 64)]
)
def test_output_stride_sets_the_feature_map_size_not_the_parameters(spec_name, side):
    from archkit.cost import count

    spec = load_spec(SPECS / f"{spec_name}.yaml")
    aspp = next(b for b in lower(spec).blocks if b.row.op == "aspp")
    assert (aspp.in_shape.height, aspp.in_shape.channels) == (side, 320)
    assert lower(spec).output_shape.height == 512  # upsampled to the input
    no_os = dataclasses.replace(spec, output_stride=None)
    assert lower(no_os).blocks[len(_V2_STRIDES)].in_shape.height == 16
    # Dilation changes no weight: both networks have the built model's parameters.
    torch = pytest.importorskip("torch")
    from archkit.build import build_model

    with torch.device("meta"):
        built = sum(p.numel() for p in build_model(no_os).parameters())
    assert count(no_os).params == count(spec).params == built


def test_output_stride_must_be_a_power_of_two():
    text = (SPECS / "deeplabv3_mobilenetv2.yaml").read_text()
    with pytest.raises(SpecError, match="x.yaml: output_stride: must be a power of two"):
        parse_spec(text.replace("output_stride: 16", "output_stride: 12"), source="x.yaml")


def test_a_window_that_cannot_be_dilated_is_an_error():
    text = (SPECS / "shufflenet_g3.yaml").read_text() + "output_stride: 4\n"
    message = (
        r"shufflenet.yaml: row 2 \(shuffle\): s: output_stride replaces strides by "
        "dilation here, but a shuffle row cannot be dilated"
    )
    with pytest.raises(SpecError, match=message):
        parse_spec(text, source="shufflenet.yaml")
