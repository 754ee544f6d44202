"""A valid spec whose feature map collapses to 1x1 long before the head gets a SpecWarning.

The reference for where the map is 1x1 is PyTorch: the built model's blocks, run on an input of
the spec's resolution, record the spatial size each one receives.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import SHIPPED, SPECS_DIR

from archkit.errors import ArchkitWarning, SpecWarning
from archkit.search import load_search_space
from archkit.spec import apply_overrides, load_spec

MOBILENETV2 = SPECS_DIR / "mobilenetv2.yaml"


def _input_sizes(spec) -> list[tuple[int, int, int]]:
    """(row, repeat, height) of every block's input, from a forward pass of the built model."""
    import torch

    from archkit.build import build_model, example_input
    from archkit.ops import lower

    model = build_model(spec).eval()
    sizes: dict[int, int] = {}

    def record(index: int):
        def hook(module, args) -> None:
            sizes[index] = args[0].shape[-1]

        return hook

    hooks = [block.register_forward_pre_hook(record(i)) for i, block in enumerate(model.blocks)]
    with torch.no_grad():
        model(example_input(spec))
    for hook in hooks:
        hook.remove()
    blocks = lower(spec).blocks
    return [(b.row.index, b.repeat, sizes[b.index]) for b in blocks]


def test_mobilenetv2_at_resolution_32_warns_where_torch_sees_1x1():
    base = load_spec(MOBILENETV2)
    with pytest.warns(SpecWarning) as caught:
        spec = apply_overrides(base, resolution=32)
    assert len(caught) == 1
    message = str(caught[0].message)
    # PyTorch: the layers before global pooling (row 9) that receive a 1x1 map.
    head = next(row.index for row in spec.rows if row.op == "avgpool")
    on_1x1 = [(row, rep) for row, rep, size in _input_sizes(spec) if size == 1 and row < head]
    assert on_1x1 == [(6, 1), (6, 2), (7, 0), (8, 0)]
    assert message == (
        f"{MOBILENETV2}: row 6 (bottleneck): the feature map is 1x1 from here on (input "
        f"resolution 32), and {len(on_1x1)} more layers (rows 6-8) run on it before the head: a "
        "larger input resolution or fewer stride-2 rows gives them a map to work on"
    )
    assert caught[0].filename == __file__  # points at the caller


def test_a_stride_on_a_1x1_map_warns():
    with pytest.warns(SpecWarning, match=r"row 6 \(bottleneck\): a stride of 2 is applied to a "
                      r"1x1 feature map \(input resolution 16\)"):
        apply_overrides(load_spec(MOBILENETV2), resolution=16)


def test_one_layer_on_a_1x1_map_is_fine():
    # MobileNetV1 at 32: only its last depthwise separable layer (stride 1) sees the 1x1 map.
    spec = load_spec(SPECS_DIR / "mobilenetv1.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = apply_overrides(spec, resolution=32)
    head = next(row.index for row in small.rows if row.op == "avgpool")
    assert [r for r, _, size in _input_sizes(small) if size == 1 and r < head] == [head - 1]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_and_the_search_spaces_do_not_warn(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_spec(SPECS_DIR / f"{name}.yaml")


def test_search_candidates_do_not_warn():
    """A search draws its candidates; the user wrote none of them."""
    space = load_search_space(SPECS_DIR.parent / "search_spaces" / "mobilenetv2.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space.candidate({**space.smallest(), "resolution": 32})
    assert issubclass(SpecWarning, ArchkitWarning) and issubclass(SpecWarning, UserWarning)


def test_the_cli_prints_one_warning_line(tmp_path):
    archkit = Path(sys.executable).with_name("archkit")
    if not archkit.exists():
        pytest.skip(f"{archkit} is not installed")
    proc = subprocess.run(
        [str(archkit), "profile", str(MOBILENETV2), "--resolution", "32", "--format", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == [line for line in lines if line.startswith("archkit: warning: ")]
    assert len(lines) == 1 and "row 6 (bottleneck): the feature map is 1x1" in lines[0]
    assert "SpecWarning" not in proc.stderr and "Traceback" not in proc.stderr
