"""The reference families as specs: the repository's YAML files and the variants the paper uses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from archkit._data import shipped_dir
from archkit.errors import SpecError
from archkit.spec import Spec, apply_overrides, load_spec

__all__ = [
    "FAMILY_GRIDS",
    "default_specs_dir",
    "family_spec",
    "shufflenet_g2",
    "shufflenet_unscaled_stem",
]

#: family name (spec file stem) -> (label, widths, resolutions) of its published models.
FAMILY_GRIDS: dict[str, tuple[str, tuple[float, ...], tuple[int, ...]]] = {
    "mobilenetv2": ("MobileNetV2", (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (96, 128, 160, 192, 224)),
    "mobilenetv1": ("MobileNetV1", (0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224)),
    "shufflenet_g3": ("ShuffleNet g=3", (1.0, 1.5, 2.0), (224,)),
}


def default_specs_dir() -> Path:
    """``specs/`` of the working directory if present, else the one next to the package."""
    here = Path("specs")
    if (here / "mobilenetv2.yaml").is_file():
        return here
    return shipped_dir("specs")


def family_spec(
    family: str,
    width: float | None = None,
    resolution: int | None = None,
    specs_dir: str | Path | None = None,
) -> Spec:
    """``specs/<family>.yaml`` with a width multiplier and resolution applied.

    Raises:
        SpecError: no such spec file, or the variant is not a valid network.
    """
    directory = Path(specs_dir) if specs_dir is not None else default_specs_dir()
    path = directory / f"{family}.yaml"
    if not path.is_file():
        raise SpecError(f"no spec file for family {family!r} (looked for {path})", source=str(path))
    return apply_overrides(load_spec(path), width=width, resolution=resolution)


def shufflenet_unscaled_stem(spec: Spec) -> Spec:
    """ShuffleNet with its first conv kept at the 1x width (24 channels) whatever the multiplier.

    The ShuffleNet authors' released 1.5x model keeps the 24-channel stem (megvii's
    ShuffleNet-Series: stage_out_channels ``[-1, 24, 360, 720, 1440]`` for 1.5x, g=3); the
    paper's 292 MFLOPs for 1.5x is that model's count.
    """
    rows = list(spec.rows)
    rows[0] = dataclasses.replace(rows[0], width_scaling="none")
    return dataclasses.replace(spec, rows=tuple(rows))


def shufflenet_g2(spec: Spec) -> Spec:
    """The g=2 ShuffleNet v1 from the g=3 spec: stage outputs 200/400/800 at 1x (ShuffleNet's
    Table 1), rounded to multiples of 4 so that c/4 divides by 2."""
    channels = iter((200, 400, 800))
    rows = tuple(
        dataclasses.replace(row, groups=2, out_channels=next(channels))
        if row.op == "shuffle"
        else row
        for row in spec.rows
    )
    variant = dataclasses.replace(spec, rows=rows, divisor=4, name=f"{spec.name}_as_g2")
    return apply_overrides(variant)  # validates the variant
